"""What the gateway knows about one connection: its user, protocol and limits, and the bounded record of what
it was sent, so a replay racing live entries never shows a client a duplicate or an older version."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from herald.gateway.limits import TokenBucket
from herald.live import INBOX_EVENT


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
    sent_versions: OrderedDict[str, int] = field(default_factory=OrderedDict)
    dropped_stale: int = 0

    def admit(self, payload: Any) -> bool:
        """True when this notification version is news to the client (and records it as sent)."""
        key = version_of(payload)
        if key is None:
            return True
        notification_id, version = key
        if self.sent_versions.get(notification_id, -1) >= version:
            self.dropped_stale += 1
            return False
        self.sent_versions[notification_id] = version
        self.sent_versions.move_to_end(notification_id)
        while len(self.sent_versions) > self.max_remembered:
            self.sent_versions.popitem(last=False)
        return True

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
