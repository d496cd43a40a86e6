"""ReaderActor: one aiokafka consumer of settings.events_topic in the group settings.reader_group, a thin shell
around herald.checkpoint.

The actor owns the consumer, the poll loop, the rebalance listener and the DLQ producer; the ordering of batches
per aggregator, retries, dead-lettering after repeated errors and which offsets are committable live in
BatchCheckpoint. Applied offsets are committed every COMMIT_INTERVAL_S and whenever partitions are revoked or the
reader drains, so a commit round trip never sits on the path of an event.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import ray
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from ray.exceptions import RayError, RayTaskError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from actors.gc_tuning import HeapTrim, tune_gc_for_event_path
from actors.loops import OwnedLoop, node_id
from actors.metrics_export import MetricsExport, source_name
from herald import metrics
from herald.checkpoint import ApplyFault, ApplyOutcome, BatchCheckpoint, CheckpointCounters, CheckpointPolicy
from herald.config import DEFAULT_READER_GROUP, Settings
from herald.contracts import ActorHealth, ApplyResult
from herald.dlq_writer import DeadLetterWriter
from herald.errors import HeraldError
from herald.events import MAX_EVENT_BYTES
from herald.kafka import close_client, make_consumer, make_producer, start_bounded
from herald.prepared import PreparedEvent, encode_batch
from herald.routing import KafkaRecord, Rejected, RoutedBatch, dlq_record, route
from herald.topics import DLQ_TOPIC

log = logging.getLogger(__name__)

READER_GROUP = DEFAULT_READER_GROUP  # the default of settings.reader_group
APPLY_RETRY_MAX_DELAY_S = 5.0
APPLICATION_RETRIES = 3
COMMIT_INTERVAL_S = 0.2
# A batch thinned out by refused records is topped up to reader_max_records events, reading at most this many
# times that in records.
TOP_UP_MAX_RECORDS_FACTOR = 4


def classify_apply_error(exc: Exception) -> ApplyFault:
    """Ray's failures to reach an aggregator are transient; an exception raised by its code is the application's,
    unless the error itself says retrying helps (Redis unreachable, say), which is infrastructure too."""
    if isinstance(exc, RayTaskError):
        cause = exc.cause
        reason = f"{type(cause).__name__}: {cause}"
        retriable = isinstance(cause, HeraldError) and cause.retriable
        return ApplyFault(retriable or isinstance(cause, RedisConnectionError | RedisTimeoutError), reason)
    # RayActorError (ActorDiedError, ActorUnavailableError), GetTimeoutError and the other system errors.
    if isinstance(exc, RayError):
        return ApplyFault(True, f"{type(exc).__name__}: {exc}")
    return ApplyFault(False, f"{type(exc).__name__}: {exc}")


def _in_partition_order(fetched: dict[TopicPartition, list[Any]]) -> list[KafkaRecord]:
    return [r for tp in sorted(fetched, key=lambda t: t.partition) for r in fetched[tp]]


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, reader: ReaderActor) -> None:
        self._reader = reader

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        # Finish what is in flight and commit it, so the next owner does not redo it.
        await self._reader.finish_inflight()
        self._reader.assigned = []

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self._reader.assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in assigned)


def aggregators_by_name(names: Sequence[str], timeout_s: float = 30.0) -> list[Any]:
    """Handles of the named aggregators. Readers get names, not handles, as constructor arguments: Ray keeps
    arguments that contain actor handles in the object store, and a restart needs them again from there
    (ray-project/ray#53727); names are plain strings carried in the actor's creation spec."""
    deadline = time.monotonic() + timeout_s
    handles = []
    for name in names:
        while True:
            try:
                handles.append(ray.get_actor(name))
                break
            except ValueError:  # created by the driver a moment ago and not registered yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    return handles


class ReaderActor:
    def __init__(self, settings: Settings, index: int, aggregator_names: Sequence[str]) -> None:
        self._settings = settings
        self._index = index
        self._aggregators = aggregators_by_name(aggregator_names)
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: Any = None
        self._dead_letters: DeadLetterWriter | None = None
        self._stopping = False
        self._checkpoint: BatchCheckpoint | None = None
        self.assigned: list[str] = []
        self._owner = OwnedLoop()
        self._counters = CheckpointCounters()  # kept across runs of the loop
        self._commits = {"commits": 0, "commit_failures": 0}
        self._metrics = metrics.MetricsRecorder(source_name(self.name))
        self._heap_trim = HeapTrim()
        self._export = MetricsExport(self._metrics, settings.redis_url, before_tick=self._on_metrics_tick)
        tune_gc_for_event_path()

    @property
    def name(self) -> str:
        return f"reader-{self._index}"

    async def run(self) -> None:
        """The poll loop over settings.events_topic (runs in its own concurrency group); returns after drain()."""
        self._owner.claim()
        self._stopping = False
        self._export.start()  # on this loop: the lag it records reads the consumer
        self._checkpoint = self._new_checkpoint()
        self._producer = make_producer(self._settings, client_id=f"herald-{self.name}-dlq")
        await start_bounded(self._producer, self._settings, "reader DLQ producer")
        self._dead_letters = DeadLetterWriter(self._producer, DLQ_TOPIC)
        self._consumer = make_consumer(
            self._settings,
            group_id=self._settings.reader_group,
            client_id=f"herald-{self.name}",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=2 * MAX_EVENT_BYTES,
            fetch_max_bytes=16 * MAX_EVENT_BYTES,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            fetch_max_wait_ms=self._settings.reader_fetch_max_wait_ms,
            fetch_min_bytes=self._settings.reader_fetch_min_bytes,
        )
        self._consumer.subscribe([self._settings.events_topic], listener=_CommitOnRevoke(self))
        try:
            await start_bounded(self._consumer, self._settings, "reader consumer")
            await self._poll_loop(self._checkpoint)
        finally:
            await self.finish_inflight()
            await close_client(self._consumer)
            await close_client(self._producer)
            await self._export.close()

    def _new_checkpoint(self) -> BatchCheckpoint:
        policy = CheckpointPolicy(
            max_inflight_batches=self._settings.reader_max_inflight_batches,
            max_call_items=self._settings.reader_max_records,
            application_retries=APPLICATION_RETRIES,
            retry_max_delay_s=APPLY_RETRY_MAX_DELAY_S,
            commit_interval_s=COMMIT_INTERVAL_S,
        )
        return BatchCheckpoint(
            apply=self._apply,
            dead_letter=self._dead_letter,
            commit=self._commit,
            classify=classify_apply_error,
            policy=policy,
            counters=self._counters,
            name=self.name,
        )

    async def _poll_loop(self, checkpoint: BatchCheckpoint) -> None:
        assert self._consumer is not None
        while not self._stopping:
            fetched = await self._consumer.getmany(timeout_ms=200, max_records=self._settings.reader_max_records)
            records = _in_partition_order(fetched)
            if records:
                await self._admit(checkpoint, records)
            await checkpoint.commit_if_due()

    async def _admit(self, checkpoint: BatchCheckpoint, records: list[KafkaRecord]) -> None:
        assert self._consumer is not None
        # Only after the wait is the assignment current: a rebalance may have taken partitions meanwhile.
        await checkpoint.wait_for_room()
        batch = self._route_assigned(records)
        # Refused records thin a batch out, while an aggregator call and its Redis round trips cost nearly the
        # same however few events they carry: top the batch up from what is already fetched
        # (docs/reliability.md, Bad input). A partition revoked meanwhile is not committed by this reader; its
        # next owner re-reads those records and the aggregators' dedup drops what was applied twice.
        wanted = self._settings.reader_max_records
        while batch.rejected and batch.event_count < wanted and batch.record_count < TOP_UP_MAX_RECORDS_FACTOR * wanted:
            more = _in_partition_order(await self._consumer.getmany(timeout_ms=0, max_records=wanted))
            if not more:
                break
            batch.absorb(self._route_assigned(more))
        await checkpoint.admit(batch)

    def _route_assigned(self, records: list[KafkaRecord]) -> RoutedBatch:
        assert self._consumer is not None
        assigned = self._consumer.assignment()
        records = [r for r in records if TopicPartition(r.topic, r.partition) in assigned]
        self._metrics.inc(metrics.EVENTS_IN, len(records))
        return route(records, shards=self._settings.shards, actors=len(self._aggregators))

    async def finish_inflight(self) -> None:
        """Wait for every batch in flight to be applied, then commit (on drain and before a rebalance)."""
        if self._checkpoint is not None:
            await self._checkpoint.finish_inflight()

    async def _apply(self, actor_index: int, items: list[PreparedEvent]) -> ApplyOutcome:
        result: ApplyResult = await self._aggregators[actor_index].apply.remote(encode_batch(items))
        return ApplyOutcome(
            duplicates=result["duplicates"],
            self_skipped=result["self_skipped"],
            rejected=tuple((wire_id, reason) for wire_id, reason in result["rejected"]),
        )

    async def _dead_letter(self, rejected: list[Rejected], stage: str) -> None:
        assert self._dead_letters is not None
        partitions = len(await self._producer.partitions_for(DLQ_TOPIC))
        await self._dead_letters.write([dlq_record(r, stage=stage, dlq_partitions=partitions) for r in rejected])
        # Only now may the offsets be committed: the DLQ holds the records.
        self._metrics.inc(metrics.DEAD_LETTERED, len(rejected), stage=stage)

    async def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit what is applied, for the partitions this reader still owns."""
        if self._consumer is None:
            return
        assigned = self._consumer.assignment()
        owned = {TopicPartition(topic, partition): offset for (topic, partition), offset in offsets.items()}
        owned = {tp: offset for tp, offset in owned.items() if tp in assigned}
        if not owned:
            return
        try:
            await self._consumer.commit(owned)
            self._commits["commits"] += 1
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # The partition moved on: its next owner re-reads from the last commit, and dedup absorbs it.
            self._commits["commit_failures"] += 1
            log.warning("%s: commit failed (%s); the next owner replays the batch", self.name, exc)

    async def drain(self) -> None:
        """Stop polling; run() finishes the batch in flight, commits and returns."""
        self._stopping = True
        if self._checkpoint is not None:
            self._checkpoint.stop()

    async def health(self) -> ActorHealth:
        return await self._owner.run(self._health())

    async def _lag(self) -> dict[str, int]:
        """Records behind the broker's high-water mark, per assigned partition (as of the last fetch)."""
        lag: dict[str, int] = {}
        consumer = self._consumer
        if consumer is not None:
            for tp in consumer.assignment():
                highwater = consumer.highwater(tp)
                try:
                    position = await consumer.position(tp)
                except (IllegalStateError, KafkaError):
                    continue
                if highwater is not None:
                    lag[f"{tp.topic}:{tp.partition}"] = max(highwater - position, 0)
        return lag

    async def _on_metrics_tick(self) -> None:
        await self._record_lag()
        self._heap_trim()

    async def _record_lag(self) -> None:
        self._metrics.set_gauges(metrics.CONSUMER_LAG, await self._lag(), "partition")

    async def _health(self) -> ActorHealth:
        lag = await self._lag()
        consumer = self._consumer
        counters = self._counters
        return {
            "actor": self.name,
            "ok": consumer is not None and not self._stopping,
            "pid": os.getpid(),
            "node": node_id(),
            "partitions": self.assigned,
            "lag": lag,
            "batches": counters.batches,
            "events": counters.events,
            "dead_lettered": counters.dead_lettered,
            "duplicates": counters.duplicates,
            "self_skipped": counters.self_skipped,
            "apply_retries": counters.apply_retries,
            "application_errors": counters.application_errors,
            "dead_lettered_after_errors": counters.dead_lettered_after_errors,
            "commits": self._commits["commits"],
            "commit_failures": self._commits["commit_failures"],
        }
