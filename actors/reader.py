"""ReaderActor: one aiokafka consumer of the group `herald-readers`.

Up to `reader_max_inflight_batches` batches are in flight, but each aggregator gets them strictly one after
another: the part of batch N+1 for an aggregator is sent only after that aggregator acknowledged its part of
batch N (retrying until it does), so a user's events are never applied out of offset order even when an
aggregator dies mid-call. A batch's offsets become committable only after the whole batch (and every batch
before it) is applied or dead-lettered; they are committed every COMMIT_INTERVAL_S and whenever partitions are
revoked or the reader drains, so a commit round trip never sits on the path of an event.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from actors.loops import OwnedLoop
from herald.applier import PreparedEvent
from herald.config import Settings
from herald.events import MAX_EVENT_BYTES
from herald.kafka import close_client, make_producer, start_bounded
from herald.routing import KafkaRecord, Rejected, RoutedBatch, dlq_headers, route
from herald.topics import DLQ_TOPIC, EVENTS_TOPIC

log = logging.getLogger(__name__)

READER_GROUP = "herald-readers"
APPLY_RETRY_MAX_DELAY_S = 5.0
COMMIT_INTERVAL_S = 0.2


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, reader: ReaderActor) -> None:
        self._reader = reader

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        # Finish what is in flight and commit it, so the next owner does not redo it.
        await self._reader.finish_inflight()
        self._reader.assigned = []

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self._reader.assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in assigned)


class ReaderActor:
    def __init__(self, settings: Settings, index: int, aggregators: list[Any]) -> None:
        self._settings = settings
        self._index = index
        self._aggregators = aggregators
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: Any = None
        self._stopping = False
        self._inflight: list[asyncio.Task[None]] = []  # batch finishers, oldest first
        self._tails: dict[int, asyncio.Task[None]] = {}  # per aggregator: the last part sent to it
        self._committable: dict[TopicPartition, int] = {}  # applied but not yet committed
        self.assigned: list[str] = []
        self._owner = OwnedLoop()
        self._counters = {"batches": 0, "events": 0, "dead_lettered": 0, "duplicates": 0, "commits": 0}
        self._counters |= {"apply_retries": 0, "commit_failures": 0, "self_skipped": 0}

    @property
    def name(self) -> str:
        return f"reader-{self._index}"

    async def run(self, topic: str = EVENTS_TOPIC) -> None:
        """The poll loop (runs in its own concurrency group); returns after drain()."""
        self._owner.claim()
        self._stopping = False
        self._inflight, self._tails, self._committable = [], {}, {}
        self._producer = make_producer(self._settings, client_id=f"herald-{self.name}-dlq")
        await start_bounded(self._producer, self._settings, "reader DLQ producer")
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            group_id=self._settings.reader_group or READER_GROUP,
            client_id=f"herald-{self.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=2 * MAX_EVENT_BYTES,
            fetch_max_bytes=16 * MAX_EVENT_BYTES,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
        )
        self._consumer.subscribe([topic], listener=_CommitOnRevoke(self))
        try:
            await start_bounded(self._consumer, self._settings, "reader consumer")
            await self._poll_loop()
        finally:
            await self.finish_inflight()
            await close_client(self._consumer)
            await close_client(self._producer)

    async def _poll_loop(self) -> None:
        assert self._consumer is not None
        loop = asyncio.get_running_loop()
        next_commit = loop.time() + COMMIT_INTERVAL_S
        while not self._stopping:
            fetched = await self._consumer.getmany(timeout_ms=200, max_records=self._settings.reader_max_records)
            records = [r for tp in sorted(fetched, key=lambda t: t.partition) for r in fetched[tp]]
            if records:
                await self._admit(records)
            if loop.time() >= next_commit:
                next_commit = loop.time() + COMMIT_INTERVAL_S
                await self._commit()

    async def _admit(self, records: list[KafkaRecord]) -> None:
        """Start applying a batch; waits first while the in-flight bound is reached (backpressure)."""
        assert self._consumer is not None
        while len(self._inflight) >= self._settings.reader_max_inflight_batches:
            # Wait without taking it off the list: a rebalance meanwhile must still see (and wait for) it.
            await asyncio.wait([self._inflight[0]])
            while self._inflight and self._inflight[0].done():
                self._inflight.pop(0).result()  # a failed batch stops the loop; the supervisor restarts it
        assigned = self._consumer.assignment()
        records = [r for r in records if TopicPartition(r.topic, r.partition) in assigned]
        batch = route(records, shards=self._settings.shards, actors=len(self._aggregators))
        parts = []
        for actor_index, items in batch.per_actor.items():
            part = asyncio.create_task(self._apply_after(self._tails.get(actor_index), actor_index, items, batch))
            self._tails[actor_index] = part
            parts.append(part)
        previous = self._inflight[-1] if self._inflight else None
        self._inflight.append(asyncio.create_task(self._finish(previous, parts, batch, len(records))))

    async def finish_inflight(self) -> None:
        """Wait for every batch in flight to be applied, then commit (on drain and before a rebalance)."""
        tasks = list(self._inflight)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        self._inflight = [t for t in self._inflight if t not in tasks]
        await self._commit()
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def _finish(
        self, previous: asyncio.Task[None] | None, parts: list[asyncio.Task[None]], batch: RoutedBatch, size: int
    ) -> None:
        await asyncio.gather(*parts)
        await self._dead_letter(batch.rejected, stage="reader")
        if previous is not None:
            await previous  # offsets become committable in batch order
        for (topic, partition), offset in batch.commit_offsets.items():
            self._committable[TopicPartition(topic, partition)] = offset
        self._counters["batches"] += 1
        self._counters["events"] += size

    async def _apply_after(
        self, previous: asyncio.Task[None] | None, actor_index: int, items: list[PreparedEvent], batch: RoutedBatch
    ) -> None:
        if previous is not None:
            await previous  # this aggregator's part of the batch before must be applied first
        await self._apply(actor_index, items, batch)

    async def _apply(self, actor_index: int, items: list[PreparedEvent], batch: RoutedBatch) -> None:
        """Call the aggregator until it acknowledges; retrying is safe because applying is idempotent."""
        delay_s = 0.1
        while True:
            try:
                result = await self._aggregators[actor_index].apply.remote(items)
                break
            except Exception as exc:  # any Ray failure (actor restarting, died) means try again
                if self._stopping:
                    raise
                self._counters["apply_retries"] += 1
                log.warning("%s: aggregator-%d failed (%s); retrying", self.name, actor_index, exc)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, APPLY_RETRY_MAX_DELAY_S)
        self._counters["duplicates"] += result["duplicates"]
        self._counters["self_skipped"] += result.get("self_skipped", 0)
        rejected = []
        for wire_id, reason in result["rejected"]:
            topic, partition, offset, key, value = batch.coordinates[wire_id]
            rejected.append(Rejected(topic, partition, offset, key, value, reason))
        await self._dead_letter(rejected, stage="aggregator")

    async def _dead_letter(self, rejected: list[Rejected], *, stage: str) -> None:
        futures = [
            await self._producer.send(DLQ_TOPIC, r.value or b"", key=r.key, headers=dlq_headers(r, stage=stage))
            for r in rejected
        ]
        for future in futures:
            await future  # the offset is committed only once the DLQ holds the record
        self._counters["dead_lettered"] += len(rejected)

    async def _commit(self) -> None:
        """Commit what is applied, for the partitions this reader still owns."""
        if self._consumer is None or not self._committable:
            return
        pending, self._committable = self._committable, {}
        assigned = self._consumer.assignment()
        offsets = {tp: offset for tp, offset in pending.items() if tp in assigned}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
            self._counters["commits"] += 1
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # The partition moved on: its next owner re-reads from the last commit, and dedup absorbs it.
            self._counters["commit_failures"] += 1
            log.warning("%s: commit failed (%s); the next owner replays the batch", self.name, exc)

    async def drain(self) -> None:
        """Stop polling; run() finishes the batch in flight, commits and returns."""
        self._stopping = True

    async def health(self) -> dict[str, Any]:
        return await self._owner.run(self._health())

    async def _health(self) -> dict[str, Any]:
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
        return {
            "actor": self.name,
            "ok": consumer is not None and not self._stopping,
            "pid": os.getpid(),
            "partitions": self.assigned,
            "lag": lag,
            **self._counters,
        }
