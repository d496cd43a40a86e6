"""An in-memory InboxStore with an injected clock, for unit tests of the aggregation without Redis."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from herald.contracts import InboxNotification
from herald.grouping import GroupState
from herald.live import encode_entry
from herald.store import OutboxEntry, UserChange, UserQuery, UserSnapshot


@dataclass
class _User:
    seq: int = 0
    seen: set[str] = field(default_factory=set)
    groups: dict[str, tuple[GroupState, int]] = field(default_factory=dict)  # key -> (state, expires_at_ms)
    bodies: dict[str, InboxNotification] = field(default_factory=dict)
    cursors: dict[str, int] = field(default_factory=dict)
    unread: set[str] = field(default_factory=set)
    aliases: dict[str, str] = field(default_factory=dict)
    preferences: dict[str, Any] | None = None


class MemoryStore:
    def __init__(self, clock_ms: Callable[[], int], inbox_capacity: int = 500) -> None:
        self._clock_ms = clock_ms
        self._capacity = inbox_capacity
        self._users: dict[str, _User] = {}
        self.outbox: list[tuple[str, OutboxEntry]] = []
        # What the Redis store would publish to the gateways of connected users (this store has no presence:
        # every commit's entry is recorded), in commit order.
        self.live: list[dict[str, Any]] = []

    def _user(self, user_id: str) -> _User:
        return self._users.setdefault(user_id, _User())

    async def load(self, queries: Sequence[UserQuery]) -> list[UserSnapshot]:
        now = self._clock_ms()
        snapshots = []
        for query in queries:
            user = self._user(query.user_id)
            groups = {
                key: user.groups[key][0] for key in query.group_keys if key in user.groups and user.groups[key][1] > now
            }
            seen = frozenset(e for e in query.event_ids if e in user.seen)
            aliases = {i: user.aliases[i] for i in query.referenced_ids if i in user.aliases}
            snapshots.append(UserSnapshot(query.user_id, user.seq, seen, groups, aliases))
        return snapshots

    async def commit(self, changes: Sequence[UserChange], *, now_ms: int) -> list[bool]:
        results = []
        for change in changes:
            user = self._user(change.user_id)
            if user.seq != change.expected_seq or not user.seen.isdisjoint(change.seen_event_ids):
                results.append(False)
                continue
            self._apply(user, change, now_ms)
            results.append(True)
        return results

    def _apply(self, user: _User, change: UserChange, now_ms: int) -> None:
        previous_seq = user.seq
        user.seq = change.new_seq
        user.seen.update(change.seen_event_ids)
        for key, (state, ttl_ms) in change.groups.items():
            user.groups[key] = (state, now_ms + ttl_ms)
        # Same order as the Redis commit script: reads and deletes first, then the batch's new versions.
        if change.read_all_before is not None:
            before = change.read_all_before
            user.unread = {i for i in user.unread if before and user.bodies[i]["createdAt"] > before}
        user.unread.difference_update(change.read_ids)
        for notification_id in change.deleted_ids:
            user.bodies.pop(notification_id, None)
            user.cursors.pop(notification_id, None)
            user.unread.discard(notification_id)
        read_now = set(change.read_in_batch)
        for body in change.notifications:
            user.bodies[body["id"]] = body
            user.cursors[body["id"]] = int(body["cursor"])
            if body["id"] in read_now:
                user.unread.discard(body["id"])
            else:
                user.unread.add(body["id"])
        user.aliases.update(change.aliases)
        if change.preferences is not None:
            user.preferences = change.preferences
        excess = len(user.cursors) - self._capacity
        for stale in sorted(user.cursors, key=user.cursors.__getitem__)[: max(excess, 0)]:
            user.bodies.pop(stale)
            user.cursors.pop(stale)
            user.unread.discard(stale)
        self.outbox.extend((change.user_id, entry) for entry in change.outbox)
        live = set(change.live_ids)
        live_notes = [body for body in change.notifications if body["id"] in live]
        self.live.append(
            encode_entry(
                change.user_id,
                notes=live_notes,
                inbox=change.live_inbox,
                unread=len(user.unread),
                from_seq=previous_seq,
                to_seq=user.seq,
                produced_ms=change.produced_ms,
            )
        )

    def _view(self, user: _User, notification_id: str) -> dict[str, Any]:
        # The read side of the InboxStore protocol is still untyped dicts (as Redis returns them).
        view: dict[str, Any] = {**user.bodies[notification_id], "read": notification_id not in user.unread}
        return view

    async def notifications_after(self, user_id: str, cursor: int, limit: int) -> list[dict[str, Any]]:
        user = self._user(user_id)
        ids = sorted((c, i) for i, c in user.cursors.items() if c > cursor)[:limit]
        return [self._view(user, i) for _, i in ids]

    async def notifications_before(self, user_id: str, cursor: int | None, limit: int) -> list[dict[str, Any]]:
        user = self._user(user_id)
        ids = sorted(((c, i) for i, c in user.cursors.items() if cursor is None or c < cursor), reverse=True)
        return [self._view(user, i) for _, i in ids[:limit]]

    async def unread_count(self, user_id: str) -> int:
        return len(self._user(user_id).unread)

    async def mark_read(self, user_id: str, ids: Sequence[str] | None) -> int:
        user = self._user(user_id)
        if ids is None:
            user.unread.clear()
        else:
            user.unread.difference_update({*ids, *(user.aliases[i] for i in ids if i in user.aliases)})
        return len(user.unread)

    def snapshot_of(self, user_id: str) -> list[dict[str, Any]]:
        """Every notification of a user, oldest change first (for assertions)."""
        user = self._user(user_id)
        return [self._view(user, i) for _, i in sorted((c, i) for i, c in user.cursors.items())]
