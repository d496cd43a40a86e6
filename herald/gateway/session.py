"""What the gateway knows about one connection: its user, protocol and limits, and the bounded record of what
it was sent, so a replay racing live entries never shows a client a duplicate or an older version.

The record only has to cover what can still arrive twice. Every version carries the user's `cursor` (the
sequence number of the commit that wrote it). Once the gateway has heard every commit up to a sequence number
and no replay or gap read of the user is running, whatever reaches the connection later has a higher cursor
(live entries follow the last commit heard; gap reads start after it), so versions sent at or below it are
forgotten (`forget_settled`), and a version at or below it that is not remembered is one the client has, or
has a newer version of (or history before its `since` it did not ask for): it is dropped as stale. In steady
state a connection remembers only the versions in flight, not one entry per notification it was ever sent."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from herald.gateway.limits import TokenBucket
from herald.live import INBOX_EVENT


def cursor_of(payload: Any) -> int | None:
    """The `cursor` of a notification body (None when it has none)."""
    cursor = payload.get("cursor") if isinstance(payload, dict) else None
    return cursor if isinstance(cursor, int) and not isinstance(cursor, bool) else None


def version_of(payload: Any) -> tuple[str, int] | None:
    """(id, version) of a notification body, or None when the payload does not look like one."""
    if not isinstance(payload, dict):
        return None
    notification_id, version = payload.get("id"), payload.get("version")
    if isinstance(notification_id, str) and isinstance(version, int) and not isinstance(version, bool):
        return notification_id, version
    return None


@dataclass
class ClientSession:
    """What the gateway knows about one connected client.

    While `replaying` is true, live events for this client are held in `pending` rather than sent: the replay
    task sends the stored backlog first and then flushes them, so the client sees stored items in cursor order
    followed by live ones. Every notification goes through `admit`, which drops a version the client already
    has or an older one.
    """

    user_id: str
    bucket: TokenBucket
    max_remembered: int
    protocol: str = "herald"  # protocol.HERALD or protocol.COMPAT: the event names this client speaks
    replaying: bool = True
    pending: list[tuple[str, Any]] = field(default_factory=list)
    # id -> (highest version sent, that version's cursor or None), in the order sent; `max_remembered` is a hard
    # cap behind forget_settled.
    sent_versions: OrderedDict[str, tuple[int, int | None]] = field(default_factory=OrderedDict)
    settled_seq: int = -1  # everything at or below it is sent or superseded; only what is above is remembered
    dropped_stale: int = 0

    def admit(self, payload: Any) -> bool:
        """True when this notification version is news to the client (and records it as sent)."""
        key = version_of(payload)
        if key is None:
            return True
        notification_id, version = key
        sent = self.sent_versions.get(notification_id)
        cursor = cursor_of(payload)
        if sent[0] >= version if sent is not None else cursor is not None and cursor <= self.settled_seq:
            self.dropped_stale += 1
            return False
        self.sent_versions[notification_id] = (version, cursor)
        self.sent_versions.move_to_end(notification_id)
        while len(self.sent_versions) > self.max_remembered:
            self.sent_versions.popitem(last=False)
        return True

    def forget_settled(self, settled_seq: int) -> None:
        """Forget the versions sent with a cursor at or below `settled_seq`: nothing at or below it can reach
        this connection again (the caller's promise, see the module docstring).

        Versions are sent in nearly cursor order, so this stops at the first one above: O(1) per version over
        the connection's life. One sent out of order waits for a later call."""
        if self.replaying:
            return  # the replay and the entries held meanwhile still overlap
        self.settled_seq = max(self.settled_seq, settled_seq)
        record = self.sent_versions
        while record:
            cursor = next(iter(record.values()))[1]
            if cursor is None or cursor > settled_seq:
                return
            record.popitem(last=False)

    def accept_live(self, event: str, payload: Any) -> bool:
        """Decide for a live emit: hold it during the replay, else send it if it is not stale."""
        if event == INBOX_EVENT and not self.owns(payload):
            return False
        if self.replaying:
            self.pending.append((event, payload))
            return False
        if event == "notification":
            return self.admit(payload)
        return True

    def owns(self, change: Any) -> bool:
        """Rooms already keep users apart; an inbox change naming another user is refused all the same."""
        return isinstance(change, dict) and change.get("userId") == self.user_id
