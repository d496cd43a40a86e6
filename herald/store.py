"""The inbox store contract: what the aggregator reads and writes per user, behind a Protocol.

`herald.store_memory` serves unit tests; `herald.store_redis` serves the actors. A commit is a compare-and-set
on the user's sequence number, so a writer that read stale state (a restarted shard, a replayed batch racing
the original) is refused and folds again on fresh state instead of overwriting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from herald.contracts import InboxNotification
from herald.grouping import GroupState

# The `kind` of a payload that is not a notification but a change of the inbox (reads, deletes).
INBOX_CHANGE = "inbox"


@dataclass(frozen=True)
class UserQuery:
    """What folding one user's events needs to know: which events were seen and which groups are open."""

    user_id: str
    event_ids: Sequence[str]
    group_keys: Sequence[str]
    referenced_ids: Sequence[str] = ()  # ids named by reads and deletes: resolve the application's own ids


@dataclass(frozen=True)
class UserSnapshot:
    user_id: str
    seq: int
    seen: frozenset[str]
    groups: dict[str, GroupState]
    aliases: dict[str, str] = field(default_factory=dict)  # application id -> the notification holding it


@dataclass(frozen=True)
class OutboxEntry:
    """One delivery owed to one channel; `delivery_id` is stable across retries and replays."""

    channel: str
    delivery_id: str
    payload: Mapping[str, Any]  # an InboxNotification, or an inbox change (`kind` INBOX_CHANGE)


@dataclass
class UserChange:
    """Everything one batch does to one user, committed atomically or not at all."""

    user_id: str
    expected_seq: int
    new_seq: int
    seen_event_ids: list[str] = field(default_factory=list)
    groups: dict[str, tuple[GroupState, int]] = field(default_factory=dict)  # key -> (state, ttl_ms)
    notifications: list[InboxNotification] = field(default_factory=list)  # bodies, each with its cursor
    read_ids: list[str] = field(default_factory=list)
    deleted_ids: list[str] = field(default_factory=list)
    # Everything read ("") or everything created up to this ISO time; applied before this batch's new versions.
    read_all_before: str | None = None
    read_in_batch: list[str] = field(default_factory=list)  # new versions that a later read of the batch read
    aliases: dict[str, str] = field(default_factory=dict)  # application id -> notification id, new ones
    preferences: dict[str, Any] | None = None
    outbox: list[OutboxEntry] = field(default_factory=list)  # external channels only (IN_APP goes live)
    # IN_APP: ids of this change's notifications to push to the user's connected clients, and the reads and
    # deletes to tell them about; the store publishes them to the gateways holding the user, with the commit.
    live_ids: list[str] = field(default_factory=list)
    live_inbox: dict[str, Any] | None = None
    # The Kafka timestamp of the newest event behind this change; rides along with the live entry and the outbox
    # entries (never in the body clients see) so that delivery can measure produce -> delivery.
    produced_ms: int | None = None

    @property
    def is_empty(self) -> bool:
        return (
            not (self.seen_event_ids or self.groups or self.notifications or self.read_ids or self.deleted_ids)
            and self.preferences is None
            and self.read_all_before is None
            and not self.aliases
        )


class InboxStore(Protocol):
    async def load(self, queries: Sequence[UserQuery]) -> list[UserSnapshot]: ...

    async def commit(self, changes: Sequence[UserChange], *, now_ms: int) -> list[bool]:
        """Apply each change atomically; False for a change whose expected_seq no longer matches or that would
        apply an event id the user already has (the writer folded on stale or cached state)."""
        ...

    async def notifications_after(self, user_id: str, cursor: int, limit: int) -> list[dict[str, Any]]:
        """Newest version of every notification changed after `cursor`, oldest change first."""
        ...

    async def notifications_before(self, user_id: str, cursor: int | None, limit: int) -> list[dict[str, Any]]:
        """A page of the inbox older than `cursor` (or the newest page), newest first."""
        ...

    async def unread_count(self, user_id: str) -> int: ...

    async def mark_read(self, user_id: str, ids: Sequence[str] | None) -> int:
        """Mark these notifications (all when None) read; returns the new unread count. An id may be the
        application's own id of a notification that was folded into a group: the group is marked."""
        ...


def group_key(notification_type: str, target_key: str) -> str:
    return f"{notification_type}:{target_key}"
