"""Applies batches of validated events to the inbox store: dedup, aggregation, inbox upsert and outbox.

This is the domain object an aggregator actor holds. It folds each user's events in offset order on a snapshot
read from the store, then commits one atomic change per user. A commit refused because another writer got there
first (a replay racing the original batch) is folded again on fresh state, so the outcome is the same as if the
events had been applied once, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from herald.aggregation import (
    DEFAULT_RULES,
    ActorInfo,
    AggregationRule,
    GroupState,
    Occurrence,
    add,
    initialize,
    render_group,
    render_single,
    window_accepts,
)
from herald.errors import StoreError
from herald.events import NotificationEvent
from herald.store import InboxStore, OutboxEntry, UserChange, UserQuery, UserSnapshot, group_key

MAX_COMMIT_ATTEMPTS = 8


@dataclass
class ApplyReport:
    applied: int = 0
    duplicates: int = 0
    notifications_changed: int = 0
    conflicts_retried: int = 0
    # Deliveries asked for on channels this deployment has no provider for (counted, not silently skipped).
    channels_without_provider: int = 0
    rejected: list[tuple[PreparedEvent, str]] = field(default_factory=list)

    def merge(self, other: ApplyReport) -> None:
        self.applied += other.applied
        self.channels_without_provider += other.channels_without_provider
        self.duplicates += other.duplicates
        self.notifications_changed += other.notifications_changed
        self.conflicts_retried += other.conflicts_retried
        self.rejected.extend(other.rejected)


def iso_ms(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """What applying needs of one validated event, in plain Python types.

    This is what crosses the reader -> aggregator boundary: it pickles several times faster than the pydantic
    model, and building it once at the reader spares the aggregator a second parse.
    """

    event_id: str
    user_id: str
    type: str
    priority: str
    channels: tuple[str, ...]
    occurrence: Occurrence | None = None  # NOTIFICATION_CREATED
    notification_ids: list[str] | None = None  # NOTIFICATION_READ / NOTIFICATION_DELETED, when well formed
    preferences: dict[str, Any] | None = None  # PREFERENCES_UPDATED, when well formed
    wire_id: str | None = None  # the id the reader knows the Kafka record by (for dead-lettering)


def _occurrence(event: NotificationEvent, event_id: str) -> Occurrence | None:
    body = event.notification
    if body is None:
        return None
    actor = ActorInfo(body.actor.id, body.actor.name, body.actor.avatar_url) if body.actor else None
    target = None
    if body.target is not None:
        # Built by hand: model_dump is the slowest step of preparing an event, and a target is three fields.
        target = {**(body.target.model_extra or {}), "type": body.target.type, "id": body.target.id}
        if body.target.title is not None:
            target["title"] = body.target.title
    return Occurrence(
        event_id=event_id,
        user_id=event.user_id,
        notification_type=body.type,
        target=target,
        actor=actor,
        event_ms=event.timestamp_ms,
        title=body.title,
        message=body.message,
        data=dict(body.data),
    )


def _extra_field(event: NotificationEvent, name: str) -> Any:
    """A field of READ/DELETED/PREFERENCES events: at the top level, or in notification.data."""
    value = (event.model_extra or {}).get(name)
    if value is None and event.notification is not None:
        value = event.notification.data.get(name)
    return value


def prepare(event: NotificationEvent, *, wire_id: str | None = None) -> PreparedEvent:
    """Reduce a validated event (with an event id) to what applying it needs."""
    if event.event_id is None:
        raise ValueError("an event needs an eventId (or Kafka coordinates to derive one) before it is applied")
    ids = _extra_field(event, "notificationIds")
    preferences = _extra_field(event, "preferences")
    return PreparedEvent(
        event_id=event.event_id,
        user_id=event.user_id,
        type=str(event.type),
        priority=str(event.priority),
        channels=tuple(str(c) for c in event.channels),
        occurrence=_occurrence(event, event.event_id) if event.type == "NOTIFICATION_CREATED" else None,
        notification_ids=ids if isinstance(ids, list) and ids and all(isinstance(i, str) for i in ids) else None,
        preferences=preferences if isinstance(preferences, dict) else None,
        wire_id=wire_id,
    )


def _referenced_ids(event: PreparedEvent) -> list[str]:
    if event.notification_ids is None:
        raise ValueError("needs a non-empty list of strings `notificationIds`")
    return event.notification_ids


@dataclass
class _UserFold:
    """The working state while folding one user's events of one batch."""

    snapshot: UserSnapshot
    seen_now: list[str] = field(default_factory=list)
    groups: dict[str, GroupState] = field(default_factory=dict)
    changed_groups: set[str] = field(default_factory=set)
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)  # notification id -> body, last touch order
    channels: dict[str, set[str]] = field(default_factory=dict)
    priorities: dict[str, str] = field(default_factory=dict)
    read_ids: list[str] = field(default_factory=list)
    deleted_ids: list[str] = field(default_factory=list)
    preferences: dict[str, Any] | None = None
    duplicates: int = 0
    rejected: list[tuple[PreparedEvent, str]] = field(default_factory=list)

    def touch(self, body: dict[str, Any], event: PreparedEvent) -> None:
        notification_id = body["id"]
        self.bodies.pop(notification_id, None)  # re-insert so dict order is the order of last change
        self.bodies[notification_id] = body
        self.channels.setdefault(notification_id, set()).update(event.channels)
        self.priorities[notification_id] = event.priority


class Aggregator:
    """Folds batches of events into the store. `clock_ms` is injected so tests control TTLs."""

    def __init__(
        self,
        store: InboxStore,
        *,
        clock_ms: Callable[[], int],
        rules: Mapping[str, AggregationRule] = DEFAULT_RULES,
        late_allowance_ms: int = 60_000,
        delivery_channels: Iterable[str] = ("IN_APP",),
    ) -> None:
        self._store = store
        self._clock_ms = clock_ms
        self._rules = rules
        self._late_allowance_ms = late_allowance_ms
        self._delivery_channels = frozenset(delivery_channels)
        self._handlers: dict[str, Callable[[_UserFold, PreparedEvent], None]] = {
            "NOTIFICATION_CREATED": self._on_created,
            "NOTIFICATION_READ": self._on_read,
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
            to_commit = [c for c in changes if not c.is_empty]
            results = iter(await self._store.commit(to_commit, now_ms=now_ms)) if to_commit else iter(())
            retry: dict[str, list[PreparedEvent]] = {}
            for fold, change in zip(folds, changes, strict=True):
                if not change.is_empty and not next(results):
                    retry[change.user_id] = pending[change.user_id]
                    continue
                report.applied += len(fold.seen_now) - len(fold.rejected)
                report.duplicates += fold.duplicates
                report.notifications_changed += len(fold.bodies)
                report.channels_without_provider += sum(
                    len(channels - self._delivery_channels) for channels in fold.channels.values()
                )
                report.rejected.extend(fold.rejected)
            if not retry:
                return report
            report.conflicts_retried += len(retry)
            pending = retry
        raise StoreError(f"gave up after {MAX_COMMIT_ATTEMPTS} conflicting commits for {len(pending)} users")

    async def _fold_all(self, by_user: Mapping[str, list[PreparedEvent]]) -> list[_UserFold]:
        queries = [
            UserQuery(user_id, [e.event_id for e in evs], self._group_keys(evs)) for user_id, evs in by_user.items()
        ]
        snapshots = await self._store.load(queries)
        folds = []
        for snapshot in snapshots:
            fold = _UserFold(snapshot=snapshot, groups=dict(snapshot.groups))
            for event in by_user[snapshot.user_id]:
                self._fold_one(fold, event)
            folds.append(fold)
        return folds

    def _group_keys(self, events: Iterable[PreparedEvent]) -> list[str]:
        keys = {
            group_key(e.occurrence.notification_type, e.occurrence.target_id)
            for e in events
            if e.occurrence is not None and e.occurrence.notification_type in self._rules
        }
        return sorted(keys)

    def _fold_one(self, fold: _UserFold, event: PreparedEvent) -> None:
        event_id = event.event_id
        if event_id in fold.snapshot.seen or event_id in fold.seen_now:
            fold.duplicates += 1
            return
        # Rejected events are marked seen too: a replay must not dead-letter them a second time.
        fold.seen_now.append(event_id)
        try:
            self._handlers[event.type](fold, event)
        except ValueError as exc:
            fold.rejected.append((event, f"{event.type}: {exc}"))

    def _on_created(self, fold: _UserFold, event: PreparedEvent) -> None:
        occurrence = event.occurrence
        if occurrence is None:
            raise ValueError("needs a `notification`")
        rule = self._rules.get(occurrence.notification_type)
        if rule is None or event.priority == "URGENT":
            fold.touch(render_single(occurrence), event)
            return
        key = group_key(occurrence.notification_type, occurrence.target_id)
        current = fold.groups.get(key)
        if current is not None and window_accepts(
            window_start_ms=current.window_start_ms,
            window_ms=rule.window_ms,
            event_ms=occurrence.event_ms,
            late_allowance_ms=self._late_allowance_ms,
        ):
            grown = add(rule, current, occurrence)
            if grown is None:
                return
            state = grown
        else:
            state = initialize(rule, occurrence)
        fold.groups[key] = state
        fold.changed_groups.add(key)
        fold.touch(render_group(rule, state), event)

    def _on_read(self, fold: _UserFold, event: PreparedEvent) -> None:
        fold.read_ids.extend(_referenced_ids(event))

    def _on_deleted(self, fold: _UserFold, event: PreparedEvent) -> None:
        ids = _referenced_ids(event)
        fold.deleted_ids.extend(ids)
        for notification_id in ids:
            fold.bodies.pop(notification_id, None)

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
            preferences=fold.preferences,
        )
        for key in fold.changed_groups:
            state = fold.groups[key]
            ttl_ms = max(state.window_end_ms - now_ms, 0) + self._late_allowance_ms
            change.groups[key] = (state, ttl_ms)
        for notification_id, rendered in fold.bodies.items():
            change.new_seq += 1
            body = rendered | {
                "userId": snapshot.user_id,
                "cursor": change.new_seq,
                "priority": fold.priorities[notification_id],
                "createdAt": iso_ms(rendered["createdAt"]),
                "updatedAt": iso_ms(rendered["updatedAt"]),
            }
            change.notifications.append(body)
            for channel in sorted(fold.channels[notification_id] & self._delivery_channels):
                delivery_id = f"{notification_id}:{body['version']}:{channel}"
                change.outbox.append(OutboxEntry(channel, delivery_id, body))
        # Every commit moves the sequence, even one that only records seen ids: a concurrent writer that
        # folded on the same snapshot must be refused, since its decisions may depend on what this one wrote.
        change.new_seq += 1
        return change
