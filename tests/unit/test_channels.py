"""The provider template: retries with backoff, retry-after, permanent failures, attempts across owners."""

from __future__ import annotations

import pytest

from herald.channels.base import ChannelProvider, DeliveryJob, RetryPolicy
from herald.errors import DeliveryError


class ScriptedProvider(ChannelProvider):
    channel = "TEST"

    def __init__(self, failures: list[DeliveryError], policy: RetryPolicy) -> None:
        self.sleeps: list[float] = []

        async def record_sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        super().__init__(policy, sleep=record_sleep, rng=lambda: 1.0)
        self._failures = failures
        self.sent = 0

    async def send(self, job: DeliveryJob) -> None:
        self.sent += 1
        if self._failures:
            raise self._failures.pop(0)


JOB = DeliveryJob(delivery_id="n1:1:TEST", user_id="u1", payload={"id": "n1", "version": 1})


async def test_retriable_failures_back_off_then_deliver() -> None:
    provider = ScriptedProvider(
        [DeliveryError("busy", retriable=True), DeliveryError("busy", retriable=True)],
        RetryPolicy(max_attempts=5, base_delay_s=0.1, max_delay_s=10),
    )
    outcome = await provider.deliver(JOB)
    assert outcome.delivered
    assert outcome.attempts == 3
    assert provider.sleeps == [pytest.approx(0.1), pytest.approx(0.2)]
    assert outcome.receipt()["status"] == "DELIVERED"


async def test_retry_after_wins_when_longer() -> None:
    provider = ScriptedProvider([DeliveryError("429", retriable=True, retry_after_s=7)], RetryPolicy(base_delay_s=0.1))
    assert (await provider.deliver(JOB)).delivered
    assert provider.sleeps == [7]


async def test_permanent_failure_stops_at_once() -> None:
    provider = ScriptedProvider([DeliveryError("no such user", retriable=False)], RetryPolicy(max_attempts=5))
    outcome = await provider.deliver(JOB)
    assert not outcome.delivered
    assert (outcome.attempts, outcome.error, provider.sent) == (1, "no such user", 1)
    assert outcome.receipt()["status"] == "FAILED"


async def test_gives_up_after_max_attempts_counting_earlier_owners() -> None:
    provider = ScriptedProvider([DeliveryError("down", retriable=True)] * 10, RetryPolicy(max_attempts=4))
    reclaimed = DeliveryJob(JOB.delivery_id, JOB.user_id, JOB.payload, attempts_before=2)
    outcome = await provider.deliver(reclaimed)
    assert not outcome.delivered
    assert outcome.attempts == 4
    assert provider.sent == 2


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(base_delay_s=1, max_delay_s=5)
    assert policy.delay_s(10, None, lambda: 1.0) == 5
    assert policy.delay_s(1, None, lambda: 0.5) == 0.5
