"""Reading a bounded stretch of a Herald topic from the command line (`herald replay`, `herald audit`): which
partition holds a user, which offsets a time span covers, and the records in between, in offset order."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from herald.config import Settings
from herald.errors import HeraldError
from herald.events import MAX_EVENT_BYTES
from herald.kafka import close_client, make_consumer, start_bounded
from herald.topics import partition_counts

# A read that makes no progress for this long has lost its broker or its partition: say so instead of hanging.
STALL_TIMEOUT_S = 30.0


class TopicMissingError(HeraldError):
    """The topic to read does not exist (the stack or the pipeline never created it)."""


@dataclass(frozen=True)
class OffsetRange:
    """Offsets [start, stop) of one partition."""

    partition: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return max(self.stop - self.start, 0)


def partition_of_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2 of the key, what the SDK uses) gives a key: a user's
    events, keyed by user id (herald/producer.py), all live there."""
    every = list(range(partitions))
    return int(DefaultPartitioner()(key, every, every))


def make_reader(settings: Settings, *, group_id: str | None = None, client_id: str) -> AIOKafkaConsumer:
    """A consumer for assigned partitions; with `group_id` it may commit where it got to (never subscribes)."""
    return make_consumer(
        settings,
        group_id=group_id,
        client_id=client_id,
        # Offsets computed a moment ago may fall behind the log start when retention deletes meanwhile.
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=2 * MAX_EVENT_BYTES,
        fetch_max_bytes=16 * MAX_EVENT_BYTES,
    )


async def start_reader(consumer: AIOKafkaConsumer, settings: Settings, topic: str) -> int:
    """Start the consumer and return the topic's partition count; the consumer is closed when either fails."""
    try:
        count = (await partition_counts(settings, [topic])).get(topic)
    except BaseException:
        await close_client(consumer)
        raise
    if not count:
        await close_client(consumer)
        raise TopicMissingError(f"topic {topic} does not exist; create it with `herald topics ensure`")
    await start_bounded(consumer, settings, f"reading {topic}")
    return count


async def offset_ranges(
    consumer: AIOKafkaConsumer, topic: str, partitions: Sequence[int], *, since_ms: int | None, until_ms: int | None
) -> list[OffsetRange]:
    """The offsets of records stamped in [since_ms, until_ms) per partition; None means the log start (since)
    or the end as of now (until). Later records are not chased: a replay has a fixed end."""
    tps = [TopicPartition(topic, p) for p in partitions]
    beginning = await consumer.beginning_offsets(tps)
    end = await consumer.end_offsets(tps)

    async def at(epoch_ms: int | None, default: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        if epoch_ms is None:
            return dict(default)
        found = await consumer.offsets_for_times(dict.fromkeys(tps, epoch_ms))
        # No record at or after the time: the partition's span starts (or ends) at its end.
        return {tp: end[tp] if found.get(tp) is None else found[tp].offset for tp in tps}

    starts = await at(since_ms, beginning)
    stops = await at(until_ms, end)
    return [OffsetRange(tp.partition, starts[tp], max(stops[tp], starts[tp])) for tp in tps]


async def read_ranges(
    consumer: AIOKafkaConsumer, topic: str, ranges: Sequence[OffsetRange], *, max_records: int = 2000
) -> AsyncIterator[list[Any]]:
    """The records of the ranges, one fetched batch at a time, each partition in offset order."""
    todo = {TopicPartition(topic, r.partition): r for r in ranges if r.size > 0}
    if not todo:
        return
    consumer.assign(list(todo))
    for tp, wanted in todo.items():
        consumer.seek(tp, wanted.start)
    last_progress = time.monotonic()
    while todo:
        fetched = await consumer.getmany(*todo, timeout_ms=500, max_records=max_records)
        batch = [
            record
            for tp in sorted(fetched, key=lambda t: t.partition)
            for record in fetched[tp]
            if record.offset < todo[tp].stop
        ]
        for tp in list(todo):
            if await consumer.position(tp) >= todo[tp].stop:
                del todo[tp]
        if fetched:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > STALL_TIMEOUT_S:
            positions = {tp.partition: await consumer.position(tp) for tp in todo}
            left = ", ".join(f"{tp.partition}@{positions[tp.partition]}/{r.stop}" for tp, r in todo.items())
            raise HeraldError(f"reading {topic} stalled for {STALL_TIMEOUT_S:g}s (partition@position/stop: {left})")
        if batch:
            yield batch
