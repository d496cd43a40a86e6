"""The reader's own CPU per record, outside Ray (docs/reliability.md, Bad input): `scripts/bench.py reader-path`.

`scripts/bench.py badinput` measures the whole pipeline, where readers, aggregators, Redis, Kafka and Ray share
the cores. This isolates what a reader does with a record, with the reader's code: fetch (aiokafka, the
reader's fetch sizes), route (decode, validate, prepare), encode the aggregators' batches and write the refused
records to a dead-letter topic (herald.dlq_writer). One process, its CPU read around each drain of a private
topic; the dead letters go to a private topic too, not to `notification-dlq`.

Three drains a round:
- clean: the valid events alone;
- mixed: the same events with the malformed records of herald.malformed among them;
- free refusal: the mixed topic again, with each record the reader would refuse refused without being decoded
  (the harness knows where it produced them). What a malformed record would cost if deciding to refuse it were
  free: the floor that fetching it and writing it to the DLQ set.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer

from herald.config import Settings
from herald.dlq_writer import DeadLetterWriter
from herald.events import MAX_EVENT_BYTES
from herald.kafka import close_client, make_consumer, make_producer, start_bounded
from herald.malformed import REFUSED_BY_AGGREGATOR, malformed_records
from herald.malformed_run import produce_mixed
from herald.prepared import encode_batch
from herald.routing import KafkaRecord, Rejected, dlq_record, route
from herald.topics import ensure_topics
from herald.workload import social_stream
from scripts.bench_support.common import cleanup_run, run_id
from scripts.bench_support.ray_reader import bench_settings

AGGREGATORS = 2  # as many aggregator batches per fetch as the default pipeline makes


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Drain:
    cpu_s: float
    dead_lettered: int


async def _drain(
    settings: Settings, topic: str, dlq: DeadLetterWriter, dlq_partitions: int, free: set[tuple[int, int]]
) -> Drain:
    """Read `topic` to its end as a reader would; the records at `free` (partition, offset) are refused without
    being decoded."""
    consumer = make_consumer(
        settings,
        topic,
        group_id=None,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=2 * MAX_EVENT_BYTES,
        fetch_max_bytes=16 * MAX_EVENT_BYTES,
    )
    await start_bounded(consumer, settings, "reader-path consumer")
    try:
        ends = await consumer.end_offsets(list(consumer.assignment()))
        remaining = sum(ends.values())
        dead_lettered = 0
        started = _cpu_s()
        while remaining > 0:
            fetched = await consumer.getmany(timeout_ms=200, max_records=settings.reader_max_records)
            records: list[KafkaRecord] = [r for tp in sorted(fetched, key=lambda t: t.partition) for r in fetched[tp]]
            remaining -= len(records)
            refused: list[Rejected] = []
            if free:
                refused = [_refused(r) for r in records if (r.partition, r.offset) in free]
                records = [r for r in records if (r.partition, r.offset) not in free]
            batch = route(records, shards=settings.shards, actors=AGGREGATORS)
            for items in batch.per_actor.values():
                encode_batch(items)
            letters = [*batch.rejected, *refused]
            if letters:
                await dlq.write([dlq_record(r, stage="reader", dlq_partitions=dlq_partitions) for r in letters])
                dead_lettered += len(letters)
        return Drain(_cpu_s() - started, dead_lettered)
    finally:
        await close_client(consumer)


def _refused(record: KafkaRecord) -> Rejected:
    return Rejected(record.topic, record.partition, record.offset, record.key, record.value, "refused for free")


async def _rounds(
    settings: Settings, topics: dict[str, str], dlq_topic: str, free: set[tuple[int, int]], repeat: int
) -> dict[str, list[Drain]]:
    producer: AIOKafkaProducer = make_producer(settings, client_id="herald-reader-path-dlq")
    await start_bounded(producer, settings, "reader-path DLQ producer")
    try:
        dlq = DeadLetterWriter(producer, dlq_topic)
        partitions = len(await producer.partitions_for(dlq_topic))
        drains: dict[str, list[Drain]] = defaultdict(list)
        for _ in range(repeat):
            drains["clean"].append(await _drain(settings, topics["clean"], dlq, partitions, set()))
            drains["mixed"].append(await _drain(settings, topics["mixed"], dlq, partitions, set()))
            drains["free"].append(await _drain(settings, topics["mixed"], dlq, partitions, free))
        return drains
    finally:
        await close_client(producer)


class _MemoryRecord(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


def _decode_by_kind(run: str, malformed: int) -> dict[str, dict[str, float]]:
    """CPU µs to route each kind of malformed record, from memory (no Kafka): what deciding the refusal costs."""
    by_kind: dict[str, list[_MemoryRecord]] = defaultdict(list)
    for i, bad in enumerate(malformed_records(run, malformed)):
        by_kind[bad.kind].append(_MemoryRecord("kinds", 0, i, bad.key, bad.value, 1_795_687_200_000))
    out = {}
    for kind, records in sorted(by_kind.items()):
        started = time.process_time()
        route(records, shards=64, actors=AGGREGATORS)
        out[kind] = {"share": len(records) / malformed, "us": (time.process_time() - started) / len(records) * 1e6}
    return out


def run_reader_path(settings: Settings, *, valid: int, malformed: int, users: int, repeat: int) -> dict[str, Any]:
    run = run_id("rpath")
    topics = {"clean": f"{run}-clean", "mixed": f"{run}-mixed"}
    dlq_topic = f"{run}-dlq"
    for topic in (*topics.values(), dlq_topic):  # the events topic's configs: records up to 1 MiB + 64 KiB
        asyncio.run(ensure_topics(bench_settings(settings, topic=topic, group=run)))
    events = social_stream(
        run, events=valid, users=users, base=datetime.now(UTC) - timedelta(minutes=10), spread=timedelta(minutes=10)
    )
    bad = malformed_records(run, malformed, users=users)
    try:
        asyncio.run(produce_mixed(settings, topics["clean"], events, []))
        sent = asyncio.run(produce_mixed(settings, topics["mixed"], events, bad))
        free = {(s.partition, s.offset) for s in sent if s.kind not in REFUSED_BY_AGGREGATOR}
        # As in a reader (actors/gc_tuning.py): freeze what exists, collect the young generation less often.
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, *gc.get_threshold()[1:])
        drains = asyncio.run(_rounds(settings, topics, dlq_topic, free, repeat))
    finally:
        cleanup_run(settings, run, [*topics.values(), dlq_topic])
    clean_s, mixed_s, free_s = (statistics.median(d.cpu_s for d in drains[k]) for k in ("clean", "mixed", "free"))
    return {
        "benchmark": "reader-path",
        "params": {"valid": valid, "malformed": malformed, "users": users, "repeat": repeat},
        "cpu_s": {kind: [d.cpu_s for d in ds] for kind, ds in drains.items()},
        # What each drain sent to the DLQ: the same records whether the refusal was decided or free.
        "refused_by_reader": len(free),
        "dead_lettered": {kind: [d.dead_lettered for d in ds] for kind, ds in drains.items()},
        "us_per_valid": clean_s / valid * 1e6,
        "us_per_malformed": (mixed_s - clean_s) / malformed * 1e6,
        "us_per_malformed_free": (free_s - clean_s) / malformed * 1e6,
        "decode_by_kind": _decode_by_kind(run, min(malformed, 30_000)),
    }


def summary(result: dict[str, Any]) -> str:
    p = result["params"]
    decided = result["us_per_malformed"] - result["us_per_malformed_free"]
    lines = [
        f"reader path outside Ray: CPU µs per record, median of {p['repeat']} rounds "
        f"({p['valid']:,} valid events, {p['malformed']:,} malformed records)",
        f"  valid event (clean drain)                        {result['us_per_valid']:7.1f}",
        f"  malformed record (mixed drain - clean drain)     {result['us_per_malformed']:7.1f}",
        f"  malformed record refused for free                {result['us_per_malformed_free']:7.1f}"
        "   (fetch, routing, DLQ write)",
        f"  deciding the refusal (the difference)            {decided:7.1f}",
        f"dead letters per drain (clean / mixed / free refusal): {_counts(result, 'clean')} / "
        f"{_counts(result, 'mixed')} / {_counts(result, 'free')}; the reader refuses {result['refused_by_reader']:,}",
        "deciding the refusal, by kind (routed from memory): share of records, µs each",
    ]
    for kind, k in sorted(result["decode_by_kind"].items(), key=lambda kv: -kv[1]["share"] * kv[1]["us"]):
        lines.append(f"  {kind:<15} {k['share']:6.1%} {k['us']:8.1f}")
    return "\n".join(lines)


def _counts(result: dict[str, Any], kind: str) -> str:
    return ", ".join(f"{n:,}" for n in sorted(set(result["dead_lettered"][kind])))
