"""Per-connection limits of the gateway: a token bucket for client events and the bounded record of what a
connection was sent, so a replay racing live emits never shows a client a duplicate or an older version."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from herald.config import Settings
from herald.live import INBOX_EVENT, PRESENCE_TTL_MS


@dataclass(frozen=True)
class GatewayLimits:
    """Bounds on what one client may send and how much the gateway remembers per connection."""

    events_per_s: float = 20.0
    burst: int = 40
    max_payload_bytes: int = 64 * 1024
    fetch_max_limit: int = 100
    mark_read_max_ids: int = 500
    replay_page_size: int = 100
    # Enough for a whole inbox (inbox_capacity defaults to 500); beyond it the oldest ids are forgotten, which
    # at worst lets a very old duplicate through, never drops a new notification.
    remembered_versions: int = 2048
    connect_timeout_s: float = 10.0
    # Unread counts read from the store are coalesced per user over this window: a burst of notifications to
    # compat clients costs a few reads, not one each.
    count_coalesce_s: float = 0.05
    # How long the gateway's claim on a user (presence) lives without a refresh; refreshed at a third of it.
    presence_ttl_ms: int = PRESENCE_TTL_MS

    @classmethod
    def from_settings(cls, settings: Settings) -> GatewayLimits:
        return cls(
            events_per_s=settings.gateway_client_events_per_s,
            burst=settings.gateway_client_burst,
            max_payload_bytes=settings.gateway_max_payload_bytes,
            remembered_versions=max(2048, 2 * settings.inbox_capacity),
            connect_timeout_s=settings.connect_timeout_s,
        )


class TokenBucket:
    """Classic token bucket; `clock_s` is injected so tests need not wait for refills."""

    def __init__(self, rate_per_s: float, burst: int, clock_s: Callable[[], float]) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock_s = clock_s
        self._tokens = float(burst)
        self._updated_s = clock_s()

    def take(self) -> bool:
        now_s = self._clock_s()
        self._tokens = min(self._burst, self._tokens + (now_s - self._updated_s) * self._rate)
        self._updated_s = now_s
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


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
