"""The circuit breaker alone and inside a provider's retry loop, with a clock the test moves."""

from __future__ import annotations

from dataclasses import dataclass

from herald.channels.base import ChannelProvider, DeliveryJob, RetryPolicy
from herald.channels.breaker import BreakerState, CircuitBreaker
from herald.errors import DeliveryError

JOB = DeliveryJob(delivery_id="n1:1:TEST", user_id="u1", payload={"id": "n1", "version": 1})


def state_of(breaker: CircuitBreaker) -> BreakerState:
    return breaker.state  # read afresh: the state moves with the clock


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_half_opens_for_one_trial() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, reset_after_s=30, clock=clock)
    for _ in range(2):
        breaker.failed()
    assert state_of(breaker) is BreakerState.CLOSED
    breaker.succeeded()  # a success in between resets the count
    for _ in range(3):
        breaker.failed()
    assert state_of(breaker) is BreakerState.OPEN
    assert not breaker.try_acquire()
    clock.now += 30
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert breaker.try_acquire(), "the trial was refused"
    assert not breaker.try_acquire(), "a second send went through during the trial"
    breaker.failed()
    assert state_of(breaker) is BreakerState.OPEN, "a failed trial did not reopen the circuit"
    clock.now += 30
    assert breaker.try_acquire()
    breaker.succeeded()
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.opened_count == 2


class FlakyProvider(ChannelProvider):
    channel = "TEST"

    def __init__(self, clock: Clock, down_until: float) -> None:
        async def sleep(seconds: float) -> None:
            clock.now += seconds  # time passes only when someone waits

        super().__init__(RetryPolicy(max_attempts=3, base_delay_s=1, max_delay_s=1), sleep=sleep, rng=lambda: 1.0)
        self._clock = clock
        self._down_until = down_until
        self.sends: list[float] = []

    async def send(self, job: DeliveryJob) -> None:
        self.sends.append(self._clock.now)
        if self._clock.now < self._down_until:
            raise DeliveryError("503 from the relay", retriable=True)


async def test_an_outage_longer_than_the_retries_costs_waiting_not_a_dead_letter() -> None:
    clock = Clock()
    provider = FlakyProvider(clock, down_until=clock.now + 100)
    provider.breaker = CircuitBreaker(threshold=2, reset_after_s=30, clock=clock)
    outcome = await provider.deliver(JOB)
    assert outcome.delivered, "the delivery was given up while the circuit kept it waiting"
    # Two real attempts opened the circuit; after that only one trial per 30 s reached the provider.
    assert len(provider.sends) <= 2 + 100 // 30 + 1
    assert outcome.attempts < provider.policy.max_attempts, "attempts were spent while the circuit was open"
    assert state_of(provider.breaker) is BreakerState.CLOSED


async def test_permanent_failures_do_not_open_the_circuit() -> None:
    clock = Clock()

    class Refusing(ChannelProvider):
        channel = "TEST"

        async def send(self, job: DeliveryJob) -> None:
            raise DeliveryError("no such address", retriable=False)

    provider = Refusing(RetryPolicy(max_attempts=3))
    provider.breaker = CircuitBreaker(threshold=2, clock=clock)
    for _ in range(5):
        assert not (await provider.deliver(JOB)).delivered
    assert state_of(provider.breaker) is BreakerState.CLOSED
