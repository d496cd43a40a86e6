"""A circuit breaker per provider: after `threshold` consecutive retriable failures (the SMTP relay is down, the
push service answers 503) the provider stops sending for `reset_after_s`, then lets one trial through; its
success closes the circuit, its failure opens it again.

While the circuit is open deliveries wait instead of failing: their attempts are not spent and the outbox keeps
them, so an outage of minutes costs latency, not dead letters. Permanent failures (a bad address) say nothing
about the provider's health and do not count.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from enum import StrEnum

POLL_S = 0.5  # how often a waiting delivery looks again while the circuit is open


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    def __init__(
        self, *, threshold: int = 5, reset_after_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self._threshold = threshold
        self._reset_after_s = reset_after_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False
        self.opened_count = 0

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self._reset_after_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def try_acquire(self) -> bool:
        """True when a send may go now (closed, or the one trial of a half-open circuit)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial_running:
            self._trial_running = True
            return True
        return False

    async def acquire(self, sleep: Callable[[float], Awaitable[None]]) -> None:
        """Wait until a send may go."""
        while not self.try_acquire():
            opened_at = self._opened_at if self._opened_at is not None else self._clock()
            remaining = opened_at + self._reset_after_s - self._clock()
            await sleep(min(POLL_S, remaining) if remaining > 0 else POLL_S)

    def succeeded(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def failed(self) -> bool:
        """A retriable failure; a failed trial reopens at once. True when the circuit is open now."""
        self._failures += 1
        trial = self._trial_running
        self._trial_running = False
        if trial or self._failures >= self._threshold:
            if self._opened_at is None or trial:
                self.opened_count += 1
            self._opened_at = self._clock()
        return self._opened_at is not None

    def released(self) -> None:
        """A send that ended without saying anything about the provider (a permanent error) frees the trial."""
        self._trial_running = False
