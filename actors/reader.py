"""ReaderActor: one aiokafka consumer of the group `herald-readers`.

The poll loop fetches the next batch while the previous one is applied, but applies batches strictly one after
another: a batch is applied only after every aggregator acknowledged the one before it, so a user's events
are never applied out of offset order even when an aggregator dies mid-call. Offsets are committed only after
the whole batch is applied or dead-lettered.
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
from herald.config import Settings
from herald.events import MAX_EVENT_BYTES, NotificationEvent
from herald.kafka import close_client, make_producer, start_bounded
from herald.routing import KafkaRecord, Rejected, RoutedBatch, dlq_headers, route
from herald.topics import DLQ_TOPIC, EVENTS_TOPIC

log = logging.getLogger(__name__)

READER_GROUP = "herald-readers"
APPLY_RETRY_MAX_DELAY_S = 5.0


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, reader: ReaderActor) -> None:
        self._reader = reader

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        # Finish what is in flight and commit it, so the next owner does not redo it.
        await self._reader.finish_inflight()

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
        self._inflight: asyncio.Task[None] | None = None
        self.assigned: list[str] = []
        self._owner = OwnedLoop()
        self._counters = {"batches": 0, "events": 0, "dead_lettered": 0, "duplicates": 0, "commits": 0}
        self._counters |= {"apply_retries": 0, "commit_failures": 0}

    @property
    def name(self) -> str:
        return f"reader-{self._index}"

    async def run(self, topic: str = EVENTS_TOPIC) -> None:
        """The poll loop (runs in its own concurrency group); returns after drain()."""
        self._owner.claim()
        self._stopping = False
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
        while not self._stopping:
            fetched = await self._consumer.getmany(timeout_ms=200, max_records=self._settings.reader_max_records)
            await self.finish_inflight()
            records = [r for tp in sorted(fetched, key=lambda t: t.partition) for r in fetched[tp]]
            if records:
                self._inflight = asyncio.create_task(self._process(records))

    async def finish_inflight(self) -> None:
        task, self._inflight = self._inflight, None
        if task is not None:
            await task

    async def _process(self, records: list[KafkaRecord]) -> None:
        assert self._consumer is not None
        assigned = self._consumer.assignment()
        records = [r for r in records if TopicPartition(r.topic, r.partition) in assigned]
        batch = route(records, shards=self._settings.shards, actors=len(self._aggregators))
        await asyncio.gather(*(self._apply(i, events, batch) for i, events in batch.per_actor.items()))
        await self._dead_letter(batch.rejected, stage="reader")
        await self._commit(batch)
        self._counters["batches"] += 1
        self._counters["events"] += len(records)

    async def _apply(self, actor_index: int, events: list[NotificationEvent], batch: RoutedBatch) -> None:
        """Call the aggregator until it acknowledges; retrying is safe because applying is idempotent."""
        delay_s = 0.1
        while True:
            try:
                result = await self._aggregators[actor_index].apply.remote(events)
                break
            except Exception as exc:  # noqa: BLE001 - any Ray failure (actor restarting, died) means try again
                self._counters["apply_retries"] += 1
                log.warning("%s: aggregator-%d failed (%s); retrying", self.name, actor_index, exc)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, APPLY_RETRY_MAX_DELAY_S)
        self._counters["duplicates"] += result["duplicates"]
        rejected = []
        for event_id, reason in result["rejected"]:
            topic, partition, offset, key, value = batch.coordinates[event_id]
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

    async def _commit(self, batch: RoutedBatch) -> None:
        assert self._consumer is not None
        assigned = self._consumer.assignment()
        offsets = {
            TopicPartition(topic, partition): offset
            for (topic, partition), offset in batch.commit_offsets.items()
            if TopicPartition(topic, partition) in assigned
        }
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
