"""Per-connection limits of the gateway: what one client may send (a token bucket for client events, payload
and id caps) and how much the gateway remembers per connection."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from herald.config import Settings
from herald.live import PRESENCE_TTL_MS


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
