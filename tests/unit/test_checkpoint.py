"""BatchCheckpoint: per-aggregator order, commit order, backpressure, revoke and drain, and the failure policy,
with gated fake aggregators and no broker, no Ray and no sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from herald.checkpoint import (
    ApplyFault,
    ApplyOutcome,
    BatchCheckpoint,
    CheckpointCounters,
    CheckpointPolicy,
    Classifier,
)
from herald.prepared import PreparedEvent
from herald.routing import Rejected, RoutedBatch

TOPIC = "events"


class Unavailable(Exception):
    """Stands for Ray's actor errors: the aggregator is restarting."""


def classify(exc: Exception) -> ApplyFault:
    return ApplyFault(isinstance(exc, Unavailable), f"{type(exc).__name__}: {exc}")


def make_batch(
    parts: dict[int, list[int]], *, partition: int = 0, rejected: tuple[int, ...] = (), users: int = 1
) -> RoutedBatch:
    """A routed batch of one partition: aggregator index -> the offsets of its events (in order)."""
    batch = RoutedBatch()
    for actor, offsets in parts.items():
        for offset in offsets:
            wire_id = f"kafka:{TOPIC}:{partition}:{offset}"
            item = PreparedEvent(wire_id, f"u{offset % users}", "NOTIFICATION_CREATED", "NORMAL", (), wire_id=wire_id)
            batch.per_actor.setdefault(actor, []).append(item)
            batch.coordinates[wire_id] = (TOPIC, partition, offset, b"k", f"v{offset}".encode())
    for offset in rejected:
        batch.rejected.append(Rejected(TOPIC, partition, offset, b"k", b"bad", "not valid JSON"))
    every = [o for offsets in parts.values() for o in offsets] + list(rejected)
    batch.commit_offsets[(TOPIC, partition)] = max(every) + 1
    return batch


def offsets_of(items: list[PreparedEvent]) -> list[int]:
    return [int((item.wire_id or "").rsplit(":", 1)[1]) for item in items]


@dataclass
class FakeAggregators:
    """Records every call; a gate holds the call whose first offset it names; scripted failures come first."""

    calls: list[tuple[int, list[int]]] = field(default_factory=list)  # in the order calls were made
    applied: list[tuple[int, list[int]]] = field(default_factory=list)  # in the order they were acknowledged
    gates: dict[tuple[int, int], asyncio.Event] = field(default_factory=dict)
    failures: dict[int, list[Exception]] = field(default_factory=dict)
    always_failing: dict[int, Exception] = field(default_factory=dict)
    refuse: dict[int, str] = field(default_factory=dict)  # offset -> reason the domain rejects it with
    poison: set[int] = field(default_factory=set)  # offsets that fail every call that carries them

    def gate(self, actor: int, first_offset: int) -> asyncio.Event:
        return self.gates.setdefault((actor, first_offset), asyncio.Event())

    async def apply(self, actor: int, items: list[PreparedEvent]) -> ApplyOutcome:
        offsets = offsets_of(items)
        self.calls.append((actor, offsets))
        if actor in self.always_failing:
            raise self.always_failing[actor]
        if self.failures.get(actor):
            raise self.failures[actor].pop(0)
        if self.poison & set(offsets):
            raise ValueError(f"cannot fold offset {min(self.poison & set(offsets))}")
        gate = self.gates.get((actor, offsets[0]))
        if gate is not None:
            await gate.wait()
        self.applied.append((actor, offsets))
        refused = [(item, offset) for item, offset in zip(items, offsets, strict=True) if offset in self.refuse]
        rejected = tuple((item.wire_id or "", self.refuse[offset]) for item, offset in refused)
        return ApplyOutcome(duplicates=1, self_skipped=0, rejected=rejected)

    def applied_to(self, actor: int) -> list[list[int]]:
        return [offsets for a, offsets in self.applied if a == actor]

    def calls_to(self, actor: int) -> list[list[int]]:
        return [offsets for a, offsets in self.calls if a == actor]


@dataclass
class FakeDlq:
    sent: list[tuple[str, int, str]] = field(default_factory=list)  # (stage, offset, reason)
    broken: Exception | None = None

    async def send(self, rejected: list[Rejected], stage: str) -> None:
        await asyncio.sleep(0)
        if self.broken is not None:
            raise self.broken
        self.sent += [(stage, r.offset, r.reason) for r in rejected]


@dataclass
class FakeKafka:
    commits: list[dict[tuple[str, int], int]] = field(default_factory=list)
    now_s: float = 100.0

    async def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        self.commits.append(dict(offsets))

    def clock(self) -> float:
        return self.now_s


@dataclass
class Harness:
    aggregators: FakeAggregators
    dlq: FakeDlq
    kafka: FakeKafka
    sleeps: list[float]
    checkpoint: BatchCheckpoint


def harness(classify_with: Classifier = classify, **policy: float) -> Harness:
    """By default every part is its own call (max_call_items=1), so order and failure rules are seen part by
    part; the merging tests raise the bound."""
    policy.setdefault("max_call_items", 1)
    aggregators, dlq, kafka, sleeps = FakeAggregators(), FakeDlq(), FakeKafka(), []

    async def sleep(delay_s: float) -> None:
        sleeps.append(delay_s)
        await asyncio.sleep(0)  # a yield, never a wait

    checkpoint = BatchCheckpoint(
        apply=aggregators.apply,
        dead_letter=dlq.send,
        commit=kafka.commit,
        classify=classify_with,
        policy=CheckpointPolicy(**policy),  # type: ignore[arg-type]
        sleep=sleep,
        clock=kafka.clock,
        counters=CheckpointCounters(),
        name="reader-test",
    )
    return Harness(aggregators, dlq, kafka, sleeps, checkpoint)


async def until(condition: Callable[[], bool], what: str = "condition") -> None:
    """Let the event loop run until `condition` holds: progress is counted in loop turns, not seconds."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{what} never held")


async def turns(n: int = 50) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def settled(awaitable: Awaitable[None]) -> None:
    await asyncio.wait_for(awaitable, timeout=5)  # a guard against a hang, never reached when the test passes


async def test_each_aggregator_gets_its_parts_in_batch_order_when_parts_complete_out_of_order() -> None:
    h = harness()
    slow = h.aggregators.gate(0, 0)
    await h.checkpoint.admit(make_batch({0: [0], 1: [1]}))
    await h.checkpoint.admit(make_batch({0: [2], 1: [3]}))
    await h.checkpoint.admit(make_batch({1: [4], 0: [5]}))

    # Aggregator 1 runs ahead through all three batches; aggregator 0 is still on its first part.
    await until(lambda: h.aggregators.applied_to(1) == [[1], [3], [4]], "aggregator 1 caught up")
    await turns()
    assert h.aggregators.calls_to(0) == [[0]], "batch 2 was sent before aggregator 0 acknowledged batch 1"
    assert h.checkpoint.committable() == {}

    slow.set()
    await settled(h.checkpoint.finish_inflight())
    assert h.aggregators.applied_to(0) == [[0], [2], [5]]
    assert h.kafka.commits == [{(TOPIC, 0): 6}]
    assert h.checkpoint.counters.batches == 3
    assert h.checkpoint.counters.events == 6
    assert h.checkpoint.counters.duplicates == 6


async def test_offsets_become_committable_only_in_batch_order() -> None:
    h = harness()
    first = h.aggregators.gate(0, 10)
    await h.checkpoint.admit(make_batch({0: [10, 11]}, partition=0))
    await h.checkpoint.admit(make_batch({1: [20]}, partition=1))
    await h.checkpoint.admit(make_batch({1: [12]}, partition=0))

    await until(lambda: h.aggregators.applied_to(1) == [[20], [12]], "later batches applied")
    await turns()
    await h.checkpoint.commit()
    assert h.checkpoint.committable() == {}
    assert h.kafka.commits == [], "a later batch was committed while an earlier one was still being applied"

    first.set()
    await until(lambda: h.checkpoint.committable() == {(TOPIC, 0): 13, (TOPIC, 1): 21}, "all committable")
    await settled(h.checkpoint.finish_inflight())
    assert h.kafka.commits == [{(TOPIC, 0): 13, (TOPIC, 1): 21}]


async def test_admission_waits_at_the_in_flight_bound() -> None:
    h = harness(max_inflight_batches=2)
    gates = [h.aggregators.gate(0, offset) for offset in (0, 1, 2)]
    await h.checkpoint.admit(make_batch({0: [0]}))
    await h.checkpoint.admit(make_batch({0: [1]}))
    third = asyncio.create_task(h.checkpoint.admit(make_batch({0: [2]})))
    await turns()
    assert not third.done(), "a third batch was admitted beyond the bound of two"
    assert h.checkpoint.inflight == 2

    gates[0].set()
    await settled(third)
    assert h.checkpoint.inflight == 2
    for gate in gates[1:]:
        gate.set()
    await settled(h.checkpoint.finish_inflight())
    assert h.aggregators.applied_to(0) == [[0], [1], [2]]


async def test_finish_inflight_on_revoke_waits_for_pending_parts_then_commits() -> None:
    h = harness()
    gate_a, gate_b = h.aggregators.gate(0, 0), h.aggregators.gate(1, 3)
    await h.checkpoint.admit(make_batch({0: [0, 1], 1: [2]}))
    await h.checkpoint.admit(make_batch({1: [3], 0: [4]}))

    revoke = asyncio.create_task(h.checkpoint.finish_inflight())
    await turns()
    assert not revoke.done()
    assert h.kafka.commits == []

    gate_a.set()
    await until(lambda: h.aggregators.applied_to(0) == [[0, 1], [4]])
    await turns()
    assert not revoke.done(), "the revoke returned while aggregator 1 still had a part in flight"
    gate_b.set()
    await settled(revoke)
    assert h.kafka.commits == [{(TOPIC, 0): 5}]
    assert h.checkpoint.inflight == 0

    # The reader goes on after the rebalance with the same checkpoint.
    await h.checkpoint.admit(make_batch({0: [5]}))
    await settled(h.checkpoint.finish_inflight())
    assert h.kafka.commits[-1] == {(TOPIC, 0): 6}


async def test_drain_applies_everything_in_flight_and_commits_once() -> None:
    h = harness()
    for start in range(0, 9, 3):
        await h.checkpoint.admit(make_batch({0: [start], 1: [start + 1]}, rejected=(start + 2,)))
    h.checkpoint.stop()
    await settled(h.checkpoint.finish_inflight())
    assert h.kafka.commits == [{(TOPIC, 0): 9}]
    assert [(stage, offset) for stage, offset, _ in h.dlq.sent] == [("reader", 2), ("reader", 5), ("reader", 8)]
    assert h.checkpoint.counters.dead_lettered == 3
    assert h.checkpoint.counters.events == 9


async def test_drain_with_an_aggregator_down_commits_what_finished_and_raises() -> None:
    h = harness()
    h.aggregators.always_failing[1] = Unavailable("actor died")
    await h.checkpoint.admit(make_batch({0: [0]}))
    await until(lambda: h.aggregators.applied_to(0) == [[0]])
    await h.checkpoint.admit(make_batch({1: [1]}))
    await h.checkpoint.admit(make_batch({0: [2]}))
    await until(lambda: len(h.aggregators.calls_to(1)) >= 2, "retrying the dead aggregator")

    h.checkpoint.stop()
    with pytest.raises(Unavailable):
        await settled(h.checkpoint.finish_inflight())
    assert h.kafka.commits == [{(TOPIC, 0): 1}], "offsets past the failed batch were committed"
    with pytest.raises(Unavailable):
        await h.checkpoint.admit(make_batch({0: [3]}))


async def test_transient_failures_are_retried_with_capped_backoff_until_the_aggregator_answers() -> None:
    h = harness(retry_initial_delay_s=0.1, retry_max_delay_s=0.5, application_retries=0)
    h.aggregators.failures[0] = [Unavailable("restarting")] * 6
    await h.checkpoint.admit(make_batch({0: [0, 1]}))
    await h.checkpoint.admit(make_batch({0: [2]}))
    await settled(h.checkpoint.finish_inflight())

    assert h.checkpoint.counters.apply_retries == 6
    assert h.checkpoint.counters.application_errors == 0
    assert h.sleeps == [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]
    assert h.aggregators.calls_to(0) == [[0, 1]] * 7 + [[2]]
    assert h.dlq.sent == []
    assert h.kafka.commits == [{(TOPIC, 0): 3}]


async def test_an_application_error_is_retried_a_bounded_number_of_times_then_dead_lettered() -> None:
    h = harness(application_retries=3)
    h.aggregators.failures[0] = [ValueError("bad occurrence")] * 4
    await h.checkpoint.admit(make_batch({0: [0, 2], 1: [1]}))
    await h.checkpoint.admit(make_batch({0: [3]}))
    await settled(h.checkpoint.finish_inflight())

    assert h.aggregators.calls_to(0) == [[0, 2]] * 4 + [[3]], "the aggregator stalled after the bad part"
    assert [(stage, offset) for stage, offset, _ in h.dlq.sent] == [("apply", 0), ("apply", 2)]
    reason = h.dlq.sent[0][2]
    assert "aggregator-0" in reason
    assert "ValueError: bad occurrence" in reason
    assert h.aggregators.applied_to(1) == [[1]]
    assert h.kafka.commits == [{(TOPIC, 0): 4}], "offsets did not advance past the dead-lettered part"
    counters = h.checkpoint.counters
    assert (counters.application_errors, counters.apply_retries) == (4, 3)
    assert (counters.dead_lettered, counters.dead_lettered_after_errors) == (2, 2)
    assert len(h.sleeps) == 3


async def test_an_application_error_that_clears_within_the_budget_is_applied() -> None:
    h = harness(application_retries=3)
    h.aggregators.failures[0] = [ValueError("conflict"), Unavailable("restarting"), ValueError("conflict")]
    await h.checkpoint.admit(make_batch({0: [0]}))
    await settled(h.checkpoint.finish_inflight())
    assert h.aggregators.applied_to(0) == [[0]]
    assert h.dlq.sent == []
    assert (h.checkpoint.counters.application_errors, h.checkpoint.counters.apply_retries) == (2, 3)


async def test_events_the_aggregator_rejects_are_dead_lettered_with_their_coordinates() -> None:
    h = harness()
    h.aggregators.refuse[1] = "needs a `notification`"
    await h.checkpoint.admit(make_batch({0: [0, 1, 2]}, rejected=(3,)))
    await settled(h.checkpoint.finish_inflight())
    assert sorted(h.dlq.sent) == [("aggregator", 1, "needs a `notification`"), ("reader", 3, "not valid JSON")]
    assert h.kafka.commits == [{(TOPIC, 0): 4}]


async def test_records_refused_by_the_reader_are_dead_lettered_while_the_valid_ones_are_applied() -> None:
    # Malformed input must not add its DLQ round trip to the valid events' latency (docs/reliability.md, Bad input).
    h = harness()
    held = h.aggregators.gate(0, 0)
    await h.checkpoint.admit(make_batch({0: [0, 1]}, rejected=(2,)))
    await until(lambda: h.dlq.sent == [("reader", 2, "not valid JSON")], "the DLQ write while the apply is held")
    assert h.aggregators.applied == []
    assert h.checkpoint.committable() == {}, "offsets before the batch is applied"
    held.set()
    await settled(h.checkpoint.finish_inflight())
    assert h.kafka.commits == [{(TOPIC, 0): 3}]


@pytest.mark.parametrize("stage", ["reader", "aggregator-reject", "aggregator-errors"])
async def test_a_dead_letter_that_cannot_be_sent_does_not_advance_offsets(stage: str) -> None:
    h = harness(application_retries=0)
    h.dlq.broken = OSError("DLQ unreachable")
    if stage == "reader":
        first = make_batch({0: [0]}, rejected=(1,))
    else:
        first = make_batch({0: [0, 1]})
        if stage == "aggregator-reject":
            h.aggregators.refuse[1] = "refused"
        else:
            h.aggregators.failures[0] = [ValueError("boom")]
    await h.checkpoint.admit(first)
    await h.checkpoint.admit(make_batch({0: [2], 1: [3]}))
    with pytest.raises(OSError, match="DLQ unreachable"):
        await settled(h.checkpoint.finish_inflight())
    assert h.kafka.commits == []
    assert h.checkpoint.counters.dead_lettered == 0
    if stage != "reader":
        assert [2] not in h.aggregators.calls_to(0), "aggregator 0 got batch 2 although its batch 1 part failed"
    with pytest.raises(OSError, match="DLQ unreachable"):
        await h.checkpoint.admit(make_batch({0: [4]}))


async def test_a_later_failure_does_not_hold_back_an_earlier_batch() -> None:
    h = harness()
    gate = h.aggregators.gate(0, 0)
    h.dlq.broken = OSError("DLQ unreachable")
    await h.checkpoint.admit(make_batch({0: [0]}))
    await h.checkpoint.admit(make_batch({1: [2]}, rejected=(1,)))
    await until(lambda: h.checkpoint.failure is not None)
    gate.set()
    with pytest.raises(OSError, match="DLQ unreachable"):
        await settled(h.checkpoint.finish_inflight())
    assert h.kafka.commits == [{(TOPIC, 0): 1}]


async def test_commits_follow_the_clock() -> None:
    h = harness(commit_interval_s=0.2)
    await h.checkpoint.admit(make_batch({0: [0]}))
    await until(lambda: h.checkpoint.committable() == {(TOPIC, 0): 1})
    await h.checkpoint.commit_if_due()
    assert h.kafka.commits == []
    h.kafka.now_s += 0.2
    await h.checkpoint.commit_if_due()
    assert h.kafka.commits == [{(TOPIC, 0): 1}]
    h.kafka.now_s += 1.0
    await h.checkpoint.commit_if_due()
    assert len(h.kafka.commits) == 1, "nothing new to commit, yet the sink was called"


def test_a_policy_without_room_for_a_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="max_inflight_batches"):
        CheckpointPolicy(max_inflight_batches=0)


async def test_a_failed_batch_settles_only_once_all_its_parts_have() -> None:
    # No aggregator call may outlive finish_inflight(): a restarted loop would race it for the same users.
    h = harness(application_retries=0)
    gate = h.aggregators.gate(0, 0)
    h.aggregators.failures[1] = [ValueError("boom")]
    h.dlq.broken = OSError("DLQ unreachable")
    await h.checkpoint.admit(make_batch({0: [0], 1: [1]}))
    finishing = asyncio.create_task(h.checkpoint.finish_inflight())
    await until(lambda: h.checkpoint.failure is not None)
    await turns()
    assert not finishing.done(), "finish_inflight returned while aggregator 0 was still applying"
    gate.set()
    with pytest.raises(OSError, match="DLQ unreachable"):
        await settled(finishing)
    assert h.aggregators.applied_to(0) == [[0]]
    assert h.kafka.commits == []


async def test_parts_queued_behind_a_busy_aggregator_leave_together_in_order() -> None:
    h = harness(max_call_items=100)
    busy = h.aggregators.gate(0, 0)
    await h.checkpoint.admit(make_batch({0: [0], 1: [1]}))
    await until(lambda: h.aggregators.calls_to(0) == [[0]], "the first part sent")
    await h.checkpoint.admit(make_batch({0: [2], 1: [3]}))
    await h.checkpoint.admit(make_batch({1: [4], 0: [5, 6]}))
    await until(lambda: [4] in h.aggregators.applied_to(1) or [3, 4] in h.aggregators.applied_to(1))
    await turns()
    assert h.aggregators.calls_to(0) == [[0]], "a queued part overtook the part in flight"

    busy.set()
    await settled(h.checkpoint.finish_inflight())
    assert h.aggregators.calls_to(0) == [[0], [2, 5, 6]], "the queued parts were not merged into one call"
    assert h.kafka.commits == [{(TOPIC, 0): 7}]
    assert h.checkpoint.counters.batches == 3


async def test_a_merged_call_stays_within_max_call_items() -> None:
    h = harness(max_call_items=3)
    busy = h.aggregators.gate(0, 0)
    await h.checkpoint.admit(make_batch({0: [0]}))
    await until(lambda: h.aggregators.calls_to(0) == [[0]])
    for offsets in ([1, 2], [3], [4, 5], [6]):
        await h.checkpoint.admit(make_batch({0: offsets}))
    busy.set()
    await settled(h.checkpoint.finish_inflight())
    assert h.aggregators.calls_to(0) == [[0], [1, 2, 3], [4, 5, 6]]


async def test_a_merged_call_that_keeps_failing_is_split_and_only_the_failing_part_dead_lettered() -> None:
    h = harness(max_call_items=100, application_retries=1)
    busy = h.aggregators.gate(0, 0)
    h.aggregators.poison.add(4)
    await h.checkpoint.admit(make_batch({0: [0]}))
    await until(lambda: h.aggregators.calls_to(0) == [[0]])
    for offsets in ([1, 2], [3, 4], [5]):
        await h.checkpoint.admit(make_batch({0: offsets}))
    busy.set()
    await settled(h.checkpoint.finish_inflight())

    assert h.aggregators.applied_to(0) == [[0], [1, 2], [5]]
    assert h.aggregators.calls_to(0)[1:3] == [[1, 2, 3, 4, 5]] * 2, "the merged call was not retried first"
    assert [(stage, offset) for stage, offset, _ in h.dlq.sent] == [("apply", 3), ("apply", 4)]
    assert h.kafka.commits == [{(TOPIC, 0): 6}]
