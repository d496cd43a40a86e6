"""The channel provider template: the base owns retries with backoff, serialization and the outcome record;
a provider implements `send` (and `start`/`close` when it holds a connection)."""

from __future__ import annotations

import asyncio
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, ClassVar

from herald.channels.breaker import CircuitBreaker
from herald.channels.policy_errors import Skipped
from herald.errors import DeliveryError


@dataclass(frozen=True)
class Recipient:
    """Where a user is reached outside the app (the user directory's contact fields, `herald users import`)."""

    user_id: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None  # E.164, "+4915112345678"
    locale: str | None = None
    timezone: str | None = None  # IANA, "Europe/Berlin"
    webhook_url: str | None = None
    push_subscriptions: tuple[dict[str, Any], ...] = ()  # Web Push subscriptions as the browser gives them


@dataclass(frozen=True)
class DeliveryJob:
    """One outbox entry: deliver `payload` to `user_id` over the provider's channel.

    `payload` is a notification body (herald/contracts.py), or for a digest {"digest": {"count": N, "items":
    [bodies]}}. `delivery_id` is stable across retries and restarts: providers send it as the request's
    idempotency key so a receiver can discard the rare repeat of a crash between send and acknowledgement.
    """

    delivery_id: str
    user_id: str
    payload: dict[str, Any]
    attempts_before: int = 0  # deliveries tried by earlier owners of this entry (a reclaimed entry)
    recipient: Recipient | None = None
    # The Kafka timestamp of the newest event behind the commit that wrote the entry (metrics: produce ->
    # delivery); None for entries released later from the schedule (quiet hours, digests).
    produced_ms: int | None = None

    @property
    def is_digest(self) -> bool:
        return isinstance(self.payload.get("digest"), dict)

    def digest_items(self) -> list[dict[str, Any]]:
        digest = self.payload.get("digest")
        return list(digest.get("items", [])) if isinstance(digest, dict) else []


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 0.2
    max_delay_s: float = 10.0

    def delay_s(self, attempt: int, retry_after_s: float | None, rng: Callable[[], float]) -> float:
        """Exponential backoff with full jitter; a provider's retry-after wins when it asks for longer."""
        backoff: float = min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempt - 1)) * rng()
        return max(backoff, retry_after_s or 0.0)


@dataclass(frozen=True)
class Outcome:
    delivery_id: str
    user_id: str
    channel: str
    delivered: bool
    attempts: int
    latency_ms: float
    error: str | None = None
    notification_id: str | None = None  # None for deliveries that are not a notification (inbox changes)
    suppressed: str | None = None  # why the user's preferences kept it from being sent (not a failure)
    finished_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def status(self) -> str:
        if self.suppressed is not None:
            return "SUPPRESSED"
        return "DELIVERED" if self.delivered else "FAILED"

    @property
    def failed(self) -> bool:
        return not self.delivered and self.suppressed is None

    def receipt(self) -> dict[str, Any]:
        """Herald's fields and, as a superset, those the existing application's consumers read
        (`notificationId`, `deliveryChannel`, `status`, `timestamp`)."""
        return {
            "deliveryId": self.delivery_id,
            "notificationId": self.notification_id,
            "userId": self.user_id,
            "channel": self.channel,
            "deliveryChannel": self.channel,
            "status": self.status,
            "attempts": self.attempts,
            "latencyMs": round(self.latency_ms, 3),
            "error": self.error if self.suppressed is None else self.suppressed,
            "timestamp": self.finished_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }


class ChannelProvider(ABC):
    channel: ClassVar[str]

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], Any] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._rng = rng
        # Set by the delivery actor (herald/channels/breaker.py); None sends without one (tests, tools).
        self.breaker: CircuitBreaker | None = None

    async def start(self) -> None:
        """Open connections; the default provider holds none."""
        return

    async def close(self) -> None:
        """Release connections."""
        return

    @abstractmethod
    async def send(self, job: DeliveryJob) -> None:
        """Deliver once; raise DeliveryError(retriable=...) on failure."""

    async def deliver(self, job: DeliveryJob) -> Outcome:
        """Send with the retry policy; never raises for delivery failures, it reports them."""
        started = time.perf_counter()
        attempt = job.attempts_before
        while True:
            if self.breaker is not None:
                await self.breaker.acquire(self._sleep)  # an open circuit waits; it spends no attempt
            attempt += 1
            try:
                await self._send_watched(job)
            except DeliveryError as exc:
                if self._tell_breaker(exc):
                    attempt -= 1  # the provider is down, not this delivery: the open circuit makes it wait
                    continue
                if isinstance(exc, Skipped):
                    # The provider's own rule (SMS only for HIGH and above, say): recorded, not a failure.
                    return self.suppressed(job, exc.reason)
                if not exc.retriable or attempt >= self.policy.max_attempts:
                    return self._outcome(job, started, attempt, error=exc.reason)
                await self._sleep(self.policy.delay_s(attempt, exc.retry_after_s, self._rng))
            else:
                return self._outcome(job, started, attempt)

    async def _send_watched(self, job: DeliveryJob) -> None:
        """send(), telling the breaker of a success or of an end that says nothing about the provider."""
        try:
            await self.send(job)
        except DeliveryError:
            raise  # the caller tells the breaker
        except BaseException:
            if self.breaker is not None:
                self.breaker.released()
            raise
        if self.breaker is not None:
            self.breaker.succeeded()

    def _tell_breaker(self, exc: DeliveryError) -> bool:
        """True when the failure left the circuit open."""
        if self.breaker is None:
            return False
        if exc.retriable:
            return self.breaker.failed()
        self.breaker.released()
        return False

    def suppressed(self, job: DeliveryJob, reason: str) -> Outcome:
        """The outcome of a delivery the user's preferences hold back: recorded, never sent."""
        return replace(self._outcome(job, time.perf_counter(), 0), delivered=False, suppressed=reason)

    def _outcome(self, job: DeliveryJob, started: float, attempts: int, error: str | None = None) -> Outcome:
        return Outcome(
            delivery_id=job.delivery_id,
            user_id=job.user_id,
            channel=self.channel,
            delivered=error is None,
            attempts=attempts,
            latency_ms=(time.perf_counter() - started) * 1000,
            error=error,
            notification_id=job.payload.get("id") if isinstance(job.payload.get("id"), str) else None,
        )
