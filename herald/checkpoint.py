"""The reader's ordering and commit rules, with the aggregator call, the dead-letter sink and the commit injected,
so they are unit-tested without Kafka or Ray.

Up to `max_inflight_batches` batches are in flight, but each aggregator gets them strictly one after another: the
part of batch N+1 for an aggregator is sent only after that aggregator acknowledged its part of batch N, so a
user's events are never applied out of offset order even when an aggregator dies mid-call. A batch's offsets
become committable only after the whole batch, and every batch before it, is applied or dead-lettered.

Parts that queue behind a busy aggregator go to it together, in order, as one call of at most `max_call_items`
events (group commit): under light load every part leaves at once, so latency stays low; under heavy load the
calls, commits and live messages per event fall as the queue grows, so the pipeline does not drown in small
calls. If a merged call keeps failing with an application error, its parts are retried one by one, so only the
failing part is dead-lettered.

Failures of the call are classified by the caller: transient ones (the aggregator is restarting, unreachable) are
retried forever with a capped backoff, since applying is idempotent; an application error is retried a bounded
number of times, then that part's events go to the dead-letter sink with the reason (stage "apply", herald.dlq),
so one bad batch does not stall an aggregator for every reader. Anything else (the dead-letter sink failing,
transient failures while stopping) fails the checkpoint for good: no later offset becomes committable, and the
owner restarts from the last commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from herald.dlq import STAGE_AGGREGATOR, STAGE_APPLY, STAGE_READER
from herald.prepared import PreparedEvent
from herald.routing import Rejected, RoutedBatch

log = logging.getLogger(__name__)

Partition = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True)
class ApplyOutcome:
    """What an aggregator answered for one part of a batch."""

    duplicates: int = 0
    self_skipped: int = 0
    rejected: tuple[tuple[str, str], ...] = ()  # (wire id, reason) of events the domain refused


@dataclass(frozen=True)
class ApplyFault:
    """How a failed aggregator call is handled: `transient` means retry forever; `reason` goes to the DLQ."""

    transient: bool
    reason: str


@dataclass
class CheckpointCounters:
    batches: int = 0
    events: int = 0
    dead_lettered: int = 0  # every record sent to the DLQ, whatever the stage
    duplicates: int = 0
    self_skipped: int = 0
    apply_retries: int = 0  # transient and application failures alike
    application_errors: int = 0  # failed calls classified as application errors
    dead_lettered_after_errors: int = 0  # records dead-lettered because their part kept failing


@dataclass(frozen=True)
class CheckpointPolicy:
    max_inflight_batches: int = 8
    max_call_items: int = 2000  # events per aggregator call when queued parts are merged
    application_retries: int = 3  # retries after the first failed call, then the part is dead-lettered
    retry_initial_delay_s: float = 0.1
    retry_max_delay_s: float = 5.0
    commit_interval_s: float = 0.2

    def __post_init__(self) -> None:
        if self.max_inflight_batches < 1:
            raise ValueError("max_inflight_batches must be at least 1")
        if self.max_call_items < 1:
            raise ValueError("max_call_items must be at least 1")
        if self.application_retries < 0:
            raise ValueError("application_retries must not be negative")


ApplyCall = Callable[[int, list[PreparedEvent]], Awaitable[ApplyOutcome]]  # (aggregator index, items)
DeadLetterSink = Callable[[list[Rejected], str], Awaitable[None]]  # (records, stage); returns once they are stored
CommitSink = Callable[[dict[Partition, int]], Awaitable[None]]  # next offset to read, per partition
Classifier = Callable[[Exception], ApplyFault]
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]  # seconds, monotonic


@dataclass
class _Part:
    """One batch's events for one aggregator; `applied` resolves once they are applied or dead-lettered."""

    items: list[PreparedEvent]
    batch: RoutedBatch
    applied: asyncio.Future[None]


@dataclass
class _Lane:
    """What waits for one aggregator, and the task sending it (None while the lane is idle)."""

    queue: list[_Part]
    sender: asyncio.Task[None] | None = None


class _SplitMergedCall(Exception):
    """A merged call kept failing with an application error: retry its parts one by one."""


class BatchCheckpoint:
    """Owns the batches in flight, their per-aggregator order, the committable offsets and when they are committed.

    One instance serves one run of a poll loop; build a new one after it failed.
    """

    def __init__(
        self,
        *,
        apply: ApplyCall,
        dead_letter: DeadLetterSink,
        commit: CommitSink,
        classify: Classifier,
        policy: CheckpointPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        counters: CheckpointCounters | None = None,
        name: str = "reader",
    ) -> None:
        self._apply = apply
        self._dead_letter_sink = dead_letter
        self._commit_sink = commit
        self._classify = classify
        self._policy = policy or CheckpointPolicy()
        self._sleep = sleep
        self._clock = clock
        self.counters = counters if counters is not None else CheckpointCounters()
        self._name = name
        self._inflight: list[asyncio.Task[None]] = []  # batch finishers, oldest first
        self._lanes: dict[int, _Lane] = {}  # per aggregator: the parts waiting for it, in order
        self._committable: dict[Partition, int] = {}  # applied but not yet committed
        self._failure: Exception | None = None
        self._stopping = False
        self._next_commit = clock() + self._policy.commit_interval_s

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def failure(self) -> Exception | None:
        return self._failure

    def committable(self) -> dict[Partition, int]:
        return dict(self._committable)

    def stop(self) -> None:
        """Draining: a transient failure now fails its batch instead of being retried forever."""
        self._stopping = True

    async def wait_for_room(self) -> None:
        """Wait while the in-flight bound is reached (backpressure); raises once a batch has failed."""
        self._raise_if_failed()
        while len(self._inflight) >= self._policy.max_inflight_batches:
            # Wait without taking it off the list: a revoke meanwhile must still see (and wait for) it.
            await asyncio.wait([self._inflight[0]])
            while self._inflight and self._inflight[0].done():
                self._inflight.pop(0).result()  # a failed batch stops the loop; its owner restarts it
            self._raise_if_failed()

    async def admit(self, batch: RoutedBatch) -> None:
        """Start applying a batch (after waiting for room); its records count once it is finished."""
        await self.wait_for_room()
        loop = asyncio.get_running_loop()
        parts = []
        for actor_index, items in batch.per_actor.items():
            part = _Part(items, batch, loop.create_future())
            lane = self._lanes.setdefault(actor_index, _Lane([]))
            lane.queue.append(part)
            if lane.sender is None:
                lane.sender = asyncio.create_task(self._send_lane(actor_index, lane))
            parts.append(part.applied)
        if batch.rejected:
            # Written while the valid events are applied rather than after: a batch's latency is then the slower
            # of the two, not their sum (malformed input must not slow the valid traffic beside it).
            parts.append(asyncio.ensure_future(self._dead_letter(batch.rejected, stage=STAGE_READER)))
        previous = self._inflight[-1] if self._inflight else None
        self._inflight.append(asyncio.create_task(self._finish(previous, parts, batch)))

    async def finish_inflight(self) -> None:
        """Wait for every batch in flight to be applied, then commit (on drain and before a rebalance).

        What finished before a failure is still committed; the first failure is raised afterwards.
        """
        errors: list[BaseException] = []
        while self._inflight:
            tasks = list(self._inflight)
            results = await asyncio.gather(*tasks, return_exceptions=True)
            self._inflight = [t for t in self._inflight if t not in tasks]
            errors += [r for r in results if isinstance(r, BaseException)]
        await self.commit()
        if errors:
            raise errors[0]

    async def commit_if_due(self) -> None:
        if self._clock() >= self._next_commit:
            await self.commit()

    async def commit(self) -> None:
        """Hand what is committable to the commit sink; a failed commit is the sink's to report."""
        self._next_commit = self._clock() + self._policy.commit_interval_s
        if not self._committable:
            return
        pending, self._committable = self._committable, {}
        await self._commit_sink(pending)

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _fail(self, exc: Exception) -> None:
        if self._failure is None:
            self._failure = exc

    async def _finish(
        self, previous: asyncio.Task[None] | None, parts: list[asyncio.Future[None]], batch: RoutedBatch
    ) -> None:
        try:
            # Every part settles before the batch does, so no call outlives finish_inflight().
            results = await asyncio.gather(*parts, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            if previous is not None:
                await previous  # offsets become committable in batch order
        except Exception as exc:
            self._fail(exc)
            raise
        self._committable.update(batch.commit_offsets)
        self.counters.batches += 1
        self.counters.events += batch.event_count + len(batch.rejected)

    async def _send_lane(self, actor_index: int, lane: _Lane) -> None:
        """Send an aggregator what queued for it, oldest first, merged up to max_call_items per call; the next
        call leaves only after the previous one was acknowledged."""
        taken: list[_Part] = []
        try:
            while lane.queue:
                self._raise_if_failed()  # after a failure nothing later may be applied
                taken = [lane.queue.pop(0)]
                size = len(taken[0].items)
                while lane.queue and size + len(lane.queue[0].items) <= self._policy.max_call_items:
                    size += len(lane.queue[0].items)
                    taken.append(lane.queue.pop(0))
                await self._apply_parts(actor_index, taken)
                for part in taken:
                    part.applied.set_result(None)
        except BaseException as exc:
            # Every waiting part settles with the failure (or the cancellation), so no batch waits forever.
            failed, lane.queue = [*taken, *lane.queue], []
            for part in failed:
                if part.applied.done():
                    continue
                if isinstance(exc, Exception):
                    part.applied.set_exception(exc)
                else:
                    part.applied.cancel()
            if not isinstance(exc, Exception):
                raise
            self._fail(exc)
        finally:
            lane.sender = None

    async def _apply_parts(self, actor_index: int, parts: list[_Part]) -> None:
        if len(parts) > 1:
            try:
                await self._apply_settled(actor_index, parts, split_on_give_up=True)
                return
            except _SplitMergedCall:
                pass
        for part in parts:
            await self._apply_settled(actor_index, [part], split_on_give_up=False)

    async def _apply_settled(self, actor_index: int, parts: list[_Part], *, split_on_give_up: bool) -> None:
        items = parts[0].items if len(parts) == 1 else [item for part in parts for item in part.items]
        batch_of = {item.wire_id or item.event_id: part.batch for part in parts for item in part.items}
        outcome = await self._apply_until_settled(actor_index, items, batch_of, split_on_give_up)
        if outcome is None:
            return
        self.counters.duplicates += outcome.duplicates
        self.counters.self_skipped += outcome.self_skipped
        rejected = [_rejected(batch_of[wire_id], wire_id, reason) for wire_id, reason in outcome.rejected]
        await self._dead_letter(rejected, stage=STAGE_AGGREGATOR)

    async def _apply_until_settled(
        self,
        actor_index: int,
        items: list[PreparedEvent],
        batch_of: dict[str, RoutedBatch],
        split_on_give_up: bool,
    ) -> ApplyOutcome | None:
        """The aggregator's answer, or None once the part was dead-lettered after repeated application errors
        (a merged call raises _SplitMergedCall instead, so that only the failing part is dead-lettered)."""
        delay_s = self._policy.retry_initial_delay_s
        application_failures = 0
        while True:
            try:
                return await self._apply(actor_index, items)
            except Exception as exc:
                fault = self._classify(exc)
                if fault.transient and self._stopping:
                    raise
                if not fault.transient:
                    application_failures += 1
                    self.counters.application_errors += 1
                    if application_failures > self._policy.application_retries:
                        if split_on_give_up:
                            raise _SplitMergedCall from exc
                        await self._dead_letter_part(actor_index, items, batch_of, fault, application_failures)
                        return None
                self.counters.apply_retries += 1
                kind = "unavailable" if fault.transient else "failed"
                log.warning("%s: aggregator-%d %s (%s); retrying", self._name, actor_index, kind, fault.reason)
                await self._sleep(delay_s)
                delay_s = min(delay_s * 2, self._policy.retry_max_delay_s)

    async def _dead_letter_part(
        self,
        actor_index: int,
        items: list[PreparedEvent],
        batch_of: dict[str, RoutedBatch],
        fault: ApplyFault,
        attempts: int,
    ) -> None:
        reason = f"aggregator-{actor_index} failed {attempts} times: {fault.reason}"
        log.error("%s: dead-lettering %d events: %s", self._name, len(items), reason)
        rejected = [
            _rejected(batch_of[item.wire_id or item.event_id], item.wire_id or item.event_id, reason) for item in items
        ]
        await self._dead_letter(rejected, stage=STAGE_APPLY)
        self.counters.dead_lettered_after_errors += len(rejected)

    async def _dead_letter(self, rejected: list[Rejected], *, stage: str) -> None:
        if not rejected:
            return
        await self._dead_letter_sink(rejected, stage)  # the offset is committed only once the DLQ holds them
        self.counters.dead_lettered += len(rejected)


def _rejected(batch: RoutedBatch, wire_id: str, reason: str) -> Rejected:
    topic, partition, offset, key, value = batch.coordinates[wire_id]
    return Rejected(topic, partition, offset, key, value, reason)
