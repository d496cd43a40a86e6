"""Applies batches of validated events to the inbox store: dedup, aggregation, inbox upsert and outbox.

This is the domain object an aggregator actor holds. It folds each user's events in offset order on a snapshot
read from the store, then commits one atomic change per user. A commit refused because another writer got there
first (a replay racing the original batch) is folded again on fresh state, so the outcome is the same as if the
events had been applied once, in order.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, cast

from herald.contracts import InboxNotification
from herald.directory import UserDirectory, UserProfile
from herald.errors import StoreError
from herald.events import UNGROUPED_PRIORITIES, NotificationEvent
from herald.grouping import (
    DEFAULT_RULES,
    ActorInfo,
    AggregationRule,
    GroupState,
    Occurrence,
    add,
    initialize,
    owned,
    render_group,
    render_single,
    window_accepts,
    with_names,
)
from herald.prepared import PreparedEvent, prepare
from herald.store import INBOX_CHANGE, InboxStore, OutboxEntry, UserChange, UserQuery, UserSnapshot, group_key
from herald.user_cache import UserCache

__all__ = ["ApplyReport", "InboxApplier", "PreparedEvent", "iso_ms", "prepare"]

MAX_COMMIT_ATTEMPTS = 8
IN_APP = "IN_APP"
# Profiles this aggregator remembers having written (~250 bytes each): enough for the actors active right now;
# a forgotten one costs a directory write in a batch that writes anyway. Actors are an open set (every new fan
# of a viral post is one), so a larger cap only holds more memory that is never hit (the 100,000 of before took
# ~30 MiB per aggregator and an hour of soak to fill).
WRITTEN_PROFILES_CAP = 10_000


@dataclass
class ApplyReport:
    applied: int = 0
    duplicates: int = 0
    notifications_changed: int = 0
    conflicts_retried: int = 0
    # Deliveries asked for on channels this deployment has no provider for (counted, not silently skipped).
    channels_without_provider: int = 0
    # Events whose recipient is their own actor ("you liked your post"): applied as seen, shown to no one.
    self_skipped: int = 0
    rejected: list[tuple[PreparedEvent, str]] = field(default_factory=list)

    def merge(self, other: ApplyReport) -> None:
        self.applied += other.applied
        self.self_skipped += other.self_skipped
        self.channels_without_provider += other.channels_without_provider
        self.duplicates += other.duplicates
        self.notifications_changed += other.notifications_changed
        self.conflicts_retried += other.conflicts_retried
        self.rejected.extend(other.rejected)


def iso_ms(epoch_ms: int) -> str:
    """`2026-11-26T10:00:00.000Z`. Two per notification version: time.strftime is several times cheaper than
    formatting a datetime."""
    seconds, millis = divmod(int(epoch_ms), 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"


def _iso_cutoff(value: str) -> str:
    """An ISO-8601 time as iso_ms writes it, so the store compares it with `createdAt` as plain strings."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"`before` is not an ISO-8601 date-time: {value[:64]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return iso_ms(int(parsed.timestamp() * 1000))


def _referenced_ids(event: PreparedEvent) -> list[str]:
    if event.notification_ids is None:
        raise ValueError("needs `notificationId` or a non-empty list of strings `notificationIds`")
    return event.notification_ids


@dataclass
class _UserFold:
    """The working state while folding one user's events of one batch."""

    snapshot: UserSnapshot
    names: dict[str, ActorInfo]  # the user directory's answer for the actors of this batch
    group_keys: list[str] = field(default_factory=list)  # the groups this batch's events may touch
    from_memory: bool = False  # the snapshot came from the UserCache, not from a load
    seen_now: list[str] = field(default_factory=list)  # in event order, as the store records them
    seen_now_set: set[str] = field(default_factory=set)  # the same ids, for O(1) duplicate checks
    groups: dict[str, GroupState] = field(default_factory=dict)
    owned_groups: set[str] = field(default_factory=set)  # groups whose actor set this fold may grow in place
    changed_groups: set[str] = field(default_factory=set)
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)  # notification id -> body, last touch order
    # Per body: still unread after this batch? A read later in the batch clears it, a new version sets it again.
    unread: dict[str, bool] = field(default_factory=dict)
    channels: dict[str, set[str]] = field(default_factory=dict)
    priorities: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # application id -> notification id, new this batch
    read_ids: list[str] = field(default_factory=list)
    deleted_ids: list[str] = field(default_factory=list)
    read_all_before: str | None = None  # "" = everything; an ISO time = created up to then
    inbox_changed: list[dict[str, Any]] = field(default_factory=list)  # what connected clients are told
    preferences: dict[str, Any] | None = None
    duplicates: int = 0
    self_skipped: int = 0
    rejected: list[tuple[PreparedEvent, str]] = field(default_factory=list)

    def touch(self, body: dict[str, Any], event: PreparedEvent) -> None:
        notification_id = body["id"]
        self.bodies.pop(notification_id, None)  # re-insert so dict order is the order of last change
        self.bodies[notification_id] = body
        self.unread[notification_id] = True
        self.channels.setdefault(notification_id, set()).update(event.channels)
        self.priorities[notification_id] = event.priority

    def resolve(self, notification_id: str) -> str:
        """The notification that holds an id: a group an application notification was folded into, or the
        id itself."""
        return self.aliases.get(notification_id) or self.snapshot.aliases.get(notification_id) or notification_id


class InboxApplier:
    """Folds batches of events into the store. `clock_ms` is injected so tests control TTLs."""

    def __init__(
        self,
        store: InboxStore,
        *,
        clock_ms: Callable[[], int],
        rules: Mapping[str, AggregationRule] = DEFAULT_RULES,
        late_allowance_ms: int = 60_000,
        delivery_channels: Iterable[str] = ("IN_APP",),
        directory: UserDirectory | None = None,
        cache_users: int = 10_000,
    ) -> None:
        self._store = store
        # Single writer per shard: what this aggregator committed, so its users' next batches need no load.
        self.cache = UserCache(cache_users)
        self._clock_ms = clock_ms
        self._rules = rules
        self._late_allowance_ms = late_allowance_ms
        self._delivery_channels = frozenset(delivery_channels)
        self._directory = directory
        self._written_profiles: OrderedDict[str, UserProfile] = OrderedDict()  # LRU of what the directory has
        self._handlers: dict[str, Callable[[_UserFold, PreparedEvent], None]] = {
            "NOTIFICATION_CREATED": self._on_created,
            "NOTIFICATION_READ": self._on_read,
            "BULK_NOTIFICATIONS_READ": self._on_bulk_read,
            "NOTIFICATION_DELETED": self._on_deleted,
            "PREFERENCES_UPDATED": self._on_preferences,
        }

    async def apply(self, events: Sequence[NotificationEvent]) -> ApplyReport:
        """Apply validated events (each with an event_id) in order; per-user order is preserved."""
        return await self.apply_prepared([prepare(event) for event in events])

    async def apply_prepared(self, events: Sequence[PreparedEvent]) -> ApplyReport:
        """apply() for events already reduced by prepare() (what the reader sends the aggregator actors)."""
        by_user: dict[str, list[PreparedEvent]] = {}
        for event in events:
            by_user.setdefault(event.user_id, []).append(event)
        report = ApplyReport()
        pending = by_user
        for _attempt in range(MAX_COMMIT_ATTEMPTS):
            folds = await self._fold_all(pending)
            now_ms = self._clock_ms()
            changes = [self._change_of(fold, now_ms) for fold in folds]
            for change in changes:
                change.produced_ms = _newest_produced(pending[change.user_id])
            to_commit = [c for c in changes if not c.is_empty]
            try:
                results = iter(await self._store.commit(to_commit, now_ms=now_ms)) if to_commit else iter(())
            except StoreError:
                # Applied or not, the store now knows better than this memory.
                self.cache.forget(list(pending))
                raise
            retry: dict[str, list[PreparedEvent]] = {}
            for fold, change in zip(folds, changes, strict=True):
                if not change.is_empty and not next(results):
                    # Another writer got there first, or an event was applied already: load and fold again.
                    self.cache.forget([change.user_id])
                    retry[change.user_id] = pending[change.user_id]
                    continue
                if not change.is_empty:
                    self.cache.committed(
                        fold.snapshot, fold.group_keys, change, from_memory=fold.from_memory, now_ms=now_ms
                    )
                report.applied += len(fold.seen_now) - len(fold.rejected)
                report.duplicates += fold.duplicates
                report.self_skipped += fold.self_skipped
                report.notifications_changed += len(fold.bodies)
                report.channels_without_provider += sum(
                    len(channels - self._delivery_channels) for channels in fold.channels.values()
                )
                report.rejected.extend(fold.rejected)
            if not retry:
                await self._remember_names(events)
                return report
            report.conflicts_retried += len(retry)
            pending = retry
        raise StoreError(f"gave up after {MAX_COMMIT_ATTEMPTS} conflicting commits for {len(pending)} users")

    async def _fold_all(self, by_user: Mapping[str, list[PreparedEvent]]) -> list[_UserFold]:
        now_ms = self._clock_ms()
        group_keys = {user_id: self._group_keys(evs) for user_id, evs in by_user.items()}
        remembered: dict[str, UserSnapshot] = {}
        queries = []
        for user_id, evs in by_user.items():
            referenced = _referenced(evs)
            snapshot = None if referenced else self.cache.snapshot(user_id, group_keys[user_id], now_ms)
            if snapshot is not None:
                remembered[user_id] = snapshot
            else:
                queries.append(UserQuery(user_id, [e.event_id for e in evs], group_keys[user_id], referenced))
        loaded = {s.user_id: s for s in await self._store.load(queries)} if queries else {}
        snapshots = [remembered.get(user_id) or loaded[user_id] for user_id in by_user]
        names = await self._names(by_user, snapshots)
        folds = []
        for snapshot in snapshots:
            user_id = snapshot.user_id
            fold = _UserFold(
                snapshot=snapshot,
                names=names,
                groups=dict(snapshot.groups),
                group_keys=group_keys[user_id],
                from_memory=user_id in remembered,
            )
            for event in by_user[user_id]:
                self._fold_one(fold, event)
            folds.append(fold)
        return folds

    async def _names(
        self, by_user: Mapping[str, list[PreparedEvent]], snapshots: Sequence[UserSnapshot]
    ) -> dict[str, ActorInfo]:
        """Directory entries of every actor this batch may show without a name: one lookup per batch."""
        if self._directory is None:
            return {}
        wanted = {
            e.occurrence.actor.id
            for evs in by_user.values()
            for e in evs
            if e.occurrence is not None and e.occurrence.actor is not None and not e.occurrence.actor.name
        }
        for snapshot in snapshots:
            for state in snapshot.groups.values():
                wanted.update(a.id for a in (*state.leading_actors, *state.recent_actors) if not a.name)
        if not wanted:
            return {}
        found = await self._directory.lookup(sorted(wanted))
        return {
            user_id: ActorInfo(user_id, profile.name, profile.avatar_url)
            for user_id, profile in found.items()
            if profile.name
        }

    async def _remember_names(self, events: Sequence[PreparedEvent]) -> None:
        """Events that carry an actor's name teach the directory, for later events that carry only the id.

        Most events of a named actor repeat what the directory already has: only profiles this aggregator has
        not written yet (or that changed) cost a Redis call, so the hot path pays nothing for them."""
        if self._directory is None:
            return
        profiles = {
            actor.id: UserProfile(actor.id, actor.name, actor.avatar_url)
            for e in events
            if e.occurrence is not None and (actor := e.occurrence.actor) is not None and actor.name
        }
        fresh = [p for p in profiles.values() if self._written_profiles.get(p.id) != p]
        if not fresh:
            return
        await self._directory.remember(fresh)
        for profile in fresh:
            self._written_profiles[profile.id] = profile
            self._written_profiles.move_to_end(profile.id)
        while len(self._written_profiles) > WRITTEN_PROFILES_CAP:
            self._written_profiles.popitem(last=False)

    def _group_keys(self, events: Iterable[PreparedEvent]) -> list[str]:
        keys = {
            group_key(e.occurrence.notification_type, e.occurrence.target_key)
            for e in events
            if e.occurrence is not None and e.occurrence.notification_type in self._rules
        }
        return sorted(keys)

    def _fold_one(self, fold: _UserFold, event: PreparedEvent) -> None:
        event_id = event.event_id
        if event_id in fold.snapshot.seen or event_id in fold.seen_now_set:
            fold.duplicates += 1
            return
        # Rejected events are marked seen too: a replay must not dead-letter them a second time.
        fold.seen_now.append(event_id)
        fold.seen_now_set.add(event_id)
        try:
            self._handlers[event.type](fold, event)
        except ValueError as exc:
            fold.rejected.append((event, f"{event.type}: {exc}"))

    def _on_created(self, fold: _UserFold, event: PreparedEvent) -> None:
        occurrence = event.occurrence
        if occurrence is None:
            raise ValueError("needs a `notification`")
        actor = occurrence.actor
        if actor is not None and actor.id == occurrence.user_id:
            fold.self_skipped += 1
            return
        if actor is not None and not actor.name and actor.id in fold.names:
            occurrence = replace(occurrence, actor=fold.names[actor.id])
        rule = self._rules.get(occurrence.notification_type)
        # Without an actor an event cannot be told from another like it: folding it would merge it silently.
        if rule is None or actor is None or event.priority in UNGROUPED_PRIORITIES:
            fold.touch(render_single(occurrence), event)
            return
        key = group_key(occurrence.notification_type, occurrence.target_key)
        current = fold.groups.get(key)
        if current is not None and window_accepts(
            window_start_ms=current.window_start_ms,
            window_ms=rule.window_ms,
            event_ms=occurrence.event_ms,
            late_allowance_ms=self._late_allowance_ms,
        ):
            if key not in fold.owned_groups:
                # Once per group per fold: the snapshot stays intact for a re-fold after a refused commit.
                current = fold.groups[key] = owned(current)
                fold.owned_groups.add(key)
            grown = add(rule, with_names(current, fold.names), occurrence)
            if grown is None:
                self._alias(fold, occurrence, current.notification_id)
                return
            state = grown
        else:
            state = initialize(rule, occurrence)
            fold.owned_groups.add(key)
        self._alias(fold, occurrence, state.notification_id)
        fold.groups[key] = state
        fold.changed_groups.add(key)
        fold.touch(render_group(rule, state, key), event)

    @staticmethod
    def _alias(fold: _UserFold, occurrence: Occurrence, notification_id: str) -> None:
        if occurrence.app_id is not None and occurrence.app_id != notification_id:
            fold.aliases[occurrence.app_id] = notification_id

    def _on_read(self, fold: _UserFold, event: PreparedEvent) -> None:
        ids = list(dict.fromkeys(fold.resolve(i) for i in _referenced_ids(event)))
        fold.read_ids.extend(ids)
        for notification_id in ids:
            if notification_id in fold.unread:
                fold.unread[notification_id] = False
        fold.inbox_changed.append({"read": ids})

    def _on_bulk_read(self, fold: _UserFold, event: PreparedEvent) -> None:
        if event.notification_ids is not None:
            self._on_read(fold, event)
            return
        before = _iso_cutoff(event.read_before) if event.read_before else ""
        # Two bulk reads in one batch: everything up to the later cutoff ("" = no cutoff, the latest of all).
        if fold.read_all_before is None or before == "" or (fold.read_all_before and before > fold.read_all_before):
            fold.read_all_before = before
        for notification_id, body in fold.bodies.items():
            if not before or iso_ms(body["createdAt"]) <= before:
                fold.unread[notification_id] = False
        fold.inbox_changed.append({"all": True, "before": before or None})

    def _on_deleted(self, fold: _UserFold, event: PreparedEvent) -> None:
        ids = list(dict.fromkeys(fold.resolve(i) for i in _referenced_ids(event)))
        fold.deleted_ids.extend(ids)
        for notification_id in ids:
            fold.bodies.pop(notification_id, None)
        fold.inbox_changed.append({"deleted": ids})

    def _on_preferences(self, fold: _UserFold, event: PreparedEvent) -> None:
        if event.preferences is None:
            raise ValueError("needs an object `preferences`")
        fold.preferences = event.preferences

    def _change_of(self, fold: _UserFold, now_ms: int) -> UserChange:
        snapshot = fold.snapshot
        change = UserChange(
            user_id=snapshot.user_id,
            expected_seq=snapshot.seq,
            new_seq=snapshot.seq,
            seen_event_ids=fold.seen_now,
            read_ids=fold.read_ids,
            deleted_ids=fold.deleted_ids,
            read_all_before=fold.read_all_before,
            aliases=fold.aliases,
            preferences=fold.preferences,
        )
        for key in fold.changed_groups:
            state = fold.groups[key]
            ttl_ms = max(state.window_end_ms - now_ms, 0) + self._late_allowance_ms
            change.groups[key] = (state, ttl_ms)
        for notification_id, rendered in fold.bodies.items():
            change.new_seq += 1
            body = cast(
                InboxNotification,
                rendered
                | {
                    "userId": snapshot.user_id,
                    "cursor": change.new_seq,
                    "priority": fold.priorities[notification_id],
                    "createdAt": iso_ms(rendered["createdAt"]),
                    "updatedAt": iso_ms(rendered["updatedAt"]),
                },
            )
            change.notifications.append(body)
            if not fold.unread[notification_id]:
                change.read_in_batch.append(notification_id)
            channels = fold.channels[notification_id]
            if IN_APP in channels:
                # IN_APP needs no outbox: the inbox is its durable record and the commit pushes it live.
                change.live_ids.append(notification_id)
            for channel in sorted((channels & self._delivery_channels) - {IN_APP}):
                delivery_id = f"{notification_id}:{body['version']}:{channel}"
                change.outbox.append(OutboxEntry(channel, delivery_id, body))
        if fold.inbox_changed:
            # Reads and deletes from Kafka reach connected clients too (new unread count, the deletion).
            change.live_inbox = _inbox_change(fold.inbox_changed)
        # Every commit moves the sequence, even one that only records seen ids: a concurrent writer that
        # folded on the same snapshot must be refused, since its decisions may depend on what this one wrote.
        change.new_seq += 1
        return change


def _newest_produced(events: Iterable[PreparedEvent]) -> int | None:
    """The Kafka timestamp of the newest event behind a commit: where its produce -> delivery latency starts."""
    produced = [e.produced_ms for e in events if e.produced_ms is not None]
    return max(produced) if produced else None


def _referenced(events: Iterable[PreparedEvent]) -> list[str]:
    """Ids named by this user's reads and deletes: those the store must resolve (application ids)."""
    return sorted({i for e in events if e.notification_ids for i in e.notification_ids})


def _inbox_change(changes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One message for a batch's reads and deletes of one user."""
    read: list[str] = []
    deleted: list[str] = []
    read_all, before = False, None
    for item in changes:
        read.extend(item.get("read", ()))
        deleted.extend(item.get("deleted", ()))
        if item.get("all"):
            read_all, before = True, item.get("before")
    return {
        "kind": INBOX_CHANGE,
        "read": list(dict.fromkeys(read)),
        "deleted": list(dict.fromkeys(deleted)),
        "all": read_all,
        "before": before,
    }
