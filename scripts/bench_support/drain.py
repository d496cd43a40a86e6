"""Issue 3 benchmark: drain a preloaded backlog through the pipeline, against a plain consumer's ceiling."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import ray
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

from herald.config import Settings
from herald.events import MAX_EVENT_BYTES
from herald.kafka import close_client, make_admin, start_bounded
from herald.producer import NotificationProducer
from herald.routing import route
from pipeline import Pipeline
from scripts.bench_support import ray_reader
from scripts.bench_support.common import (
    create_topic,
    delete_topic,
    delete_user_keys,
    descendants,
    proc_name,
    proc_status_kib,
    run_id,
    social_events,
    table,
)

GOAL_RATE = 25_000.0
GOAL_RATIO = 0.3


@dataclass
class DrainResult:
    events: int
    publish_s: float = 0.0
    ceiling_s: float = 0.0
    decode_s: float = 0.0
    pipeline_start_s: float = 0.0
    drain_s: float = 0.0
    first_commit_s: float = 0.0
    committed_at_first: int = 0
    timeline: list[tuple[float, int]] = field(default_factory=list)
    status: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    actor_hwm_mib: dict[str, float] = field(default_factory=dict)
    ray_peak_rss_mib: float = 0.0
    ray_procs: dict[str, float] = field(default_factory=dict)
    redis: dict[str, float] = field(default_factory=dict)


async def publish(settings: Settings, topic: str, events: Sequence[dict[str, Any]], chunk: int = 10_000) -> None:
    async with NotificationProducer(settings, topic=topic) as producer:
        for start in range(0, len(events), chunk):
            await producer.publish_many(events[start : start + chunk])


async def end_offsets(settings: Settings, topic: str, partitions: int) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await start_bounded(consumer, settings, "bench offsets consumer")
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        return ends
    finally:
        await close_client(consumer)


async def plain_consume(
    settings: Settings, topic: str, ends: dict[TopicPartition, int], *, decode: bool = False
) -> tuple[float, int]:
    """The ceiling: a consumer with the reader's fetch options, manual assignment, no group, no processing.
    With `decode`, it also runs the reader's own decode/validate/route step (no Ray, no Redis)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=2 * MAX_EVENT_BYTES,
        fetch_max_bytes=16 * MAX_EVENT_BYTES,
    )
    await start_bounded(consumer, settings, "bench ceiling consumer")
    try:
        consumer.assign(list(ends))
        await consumer.seek_to_beginning(*ends)
        remaining = {tp for tp, end in ends.items() if end > 0}
        count = 0
        started = time.perf_counter()
        while remaining:
            fetched = await consumer.getmany(timeout_ms=200, max_records=settings.reader_max_records)
            for tp, records in fetched.items():
                count += len(records)
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
            if decode and fetched:
                route([r for rs in fetched.values() for r in rs], shards=settings.shards, actors=2)
        return time.perf_counter() - started, count
    finally:
        await close_client(consumer)


async def committed_total(settings: Settings, group: str, admin: Any) -> int:
    offsets = await admin.list_consumer_group_offsets(group)
    return sum(max(meta.offset, 0) for meta in offsets.values())


class Sampler:
    """Samples the RSS of every process below this driver (Ray's own and the actor workers) in a thread."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.peak_mib = 0.0
        self.peak_by_name: dict[str, float] = {}
        self._stop = threading.Event()
        self._interval_s = interval_s
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        pids = descendants(os.getpid())
        by_name: dict[str, float] = {}
        for pid in pids:
            name = proc_name(pid)
            by_name[name] = by_name.get(name, 0.0) + proc_status_kib(pid, "VmRSS") / 1024
        self.peak_mib = max(self.peak_mib, sum(by_name.values()))
        for name, mib in by_name.items():
            self.peak_by_name[name] = max(self.peak_by_name.get(name, 0.0), mib)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval_s)


async def redis_usage(settings: Settings, run: str) -> dict[str, float]:
    """Bytes of the run's user keys by kind (MEMORY USAGE), and the number of stored notifications."""
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        by_kind: dict[str, float] = {}
        notifications = 0
        batch: list[str] = []

        async def flush() -> None:
            nonlocal notifications
            async with client.pipeline(transaction=False) as pipe:
                for key in batch:
                    pipe.memory_usage(key, samples=0)
                    if key.endswith(":n"):
                        pipe.hlen(key)
                replies = iter(await pipe.execute())
            for key in batch:
                kind = key.rsplit("}:", 1)[1].split(":", 1)[0]
                by_kind[kind] = by_kind.get(kind, 0.0) + float(next(replies) or 0)
                if key.endswith(":n"):
                    notifications += int(next(replies))
            batch.clear()

        async for key in client.scan_iter(match=f"herald:{{u:{run}-*", count=5000):
            batch.append(key)
            if len(batch) >= 2000:
                await flush()
        await flush()
        info = await client.info("memory")
        return {**by_kind, "notifications": float(notifications), "used_memory": float(info["used_memory"])}
    finally:
        await client.aclose()


async def used_memory(settings: Settings) -> float:
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        info = await client.info("memory")
        return float(info["used_memory"])
    finally:
        await client.aclose()


def run_drain(settings: Settings, *, events: int, users: int, keep_topic: bool = False) -> DrainResult:
    run = run_id("bench")
    topic, group = f"{run}-events", f"{run}-readers"
    result = DrainResult(events=events)
    partitions = settings.events_partitions
    print(f"run {run}: {events:,} events over {users:,} users -> topic {topic} ({partitions} partitions)")
    wire = social_events(run, events=events, users=users)
    sizes = [len(orjson.dumps(e)) for e in wire[:1000]]
    print(f"  mean event size ~{sum(sizes) / len(sizes):.0f} B")
    asyncio.run(create_topic(settings, topic, settings.events_partitions))
    try:
        started = time.perf_counter()
        asyncio.run(publish(settings, topic, wire))
        result.publish_s = time.perf_counter() - started
        del wire
        ends = asyncio.run(end_offsets(settings, topic, settings.events_partitions))
        total = sum(ends.values())
        if total != events:
            raise RuntimeError(f"topic holds {total} records, expected {events}")
        print(f"  preloaded in {result.publish_s:.1f}s; measuring the ceiling (plain aiokafka consumer)")
        result.ceiling_s, seen = asyncio.run(plain_consume(settings, topic, ends))
        if seen != events:
            raise RuntimeError(f"ceiling consumer saw {seen} records, expected {events}")
        result.decode_s, _ = asyncio.run(plain_consume(settings, topic, ends, decode=True))
        memory_before = asyncio.run(used_memory(settings))
        _run_pipeline(settings, topic, group, total, result)
        result.redis = asyncio.run(redis_usage(settings, run))
        result.redis["used_memory_delta"] = result.redis["used_memory"] - memory_before
    finally:
        asyncio.run(delete_user_keys(settings, run))
        if not keep_topic:
            asyncio.run(delete_topic(settings, topic))
    return result


def _run_pipeline(settings: Settings, topic: str, group: str, total: int, result: DrainResult) -> None:
    ray_reader.install(topic, group, gated=True)
    with Sampler() as sampler:
        started = time.perf_counter()
        # Gated readers hold their consumers until go(), so the group cannot settle before the timing starts.
        pipe = Pipeline(settings, name=f"bench-{group[:14]}").start(settle_group=False)
        result.pipeline_start_s = time.perf_counter() - started
        print(f"  pipeline started in {result.pipeline_start_s:.1f}s; draining")
        try:
            asyncio.run(_drain(pipe, settings, group, total, result))
            sampler.sample()
            result.status = pipe.status()
            for kind in ("readers", "aggregators", "delivery", "gateways"):
                for i, health in enumerate(result.status[kind]):
                    pid = int(health.get("pid") or 0)
                    result.actor_hwm_mib[f"{kind[:-1] if kind != 'delivery' else kind}-{i} (pid {pid})"] = (
                        proc_status_kib(pid, "VmHWM") / 1024
                    )
        finally:
            pipe.drain()
            ray.shutdown()
        result.ray_peak_rss_mib = sampler.peak_mib
        result.ray_procs = dict(sampler.peak_by_name)


async def _drain(pipe: Pipeline, settings: Settings, group: str, total: int, result: DrainResult) -> None:
    admin = make_admin(settings)
    await start_bounded(admin, settings, "bench admin")
    try:
        go = [r.go.remote() for r in pipe.readers]
        started = time.perf_counter()
        await asyncio.gather(*(asyncio.wrap_future(ref.future()) for ref in go))
        deadline = started + max(600.0, total / 500)
        while True:
            done = await committed_total(settings, group, admin)
            now = time.perf_counter() - started
            result.timeline.append((now, done))
            if done and not result.first_commit_s:
                result.first_commit_s, result.committed_at_first = now, done
            if done >= total:
                result.drain_s = now
                return
            if time.perf_counter() > deadline:
                raise RuntimeError(f"drain did not finish: {done}/{total} committed after {now:.0f}s")
            await asyncio.sleep(0.1)
    finally:
        await close_client(admin)


def report(result: DrainResult, settings: Settings) -> str:
    n = result.events
    ceiling = n / result.ceiling_s
    drain = n / result.drain_s
    steady_span = result.drain_s - result.first_commit_s
    steady = (n - result.committed_at_first) / steady_span if steady_span > 0 else float("nan")
    status = result.status
    applied = sum(int(a.get("applied", 0)) for a in status.get("aggregators", []))
    dups = sum(int(a.get("duplicates", 0)) for a in status.get("aggregators", []))
    conflicts = sum(int(a.get("conflicts_retried", 0)) for a in status.get("aggregators", []))
    batches_agg = sum(int(a.get("batches", 0)) for a in status.get("aggregators", []))
    reader_batches = sum(int(r.get("batches", 0)) for r in status.get("readers", []))
    retries = sum(int(r.get("apply_retries", 0)) for r in status.get("readers", []))
    delivered = sum(int(d.get("delivered", 0)) for d in status.get("delivery", []))
    rows = [
        ("ceiling: plain aiokafka consumer", f"{ceiling:10,.0f} events/s  ({result.ceiling_s:.2f}s)"),
        (
            "  + decode/validate/route (reader CPU step)",
            f"{n / result.decode_s:10,.0f} events/s  ({result.decode_s:.2f}s)",
        ),
        ("pipeline drain (go -> all committed)", f"{drain:10,.0f} events/s  ({result.drain_s:.2f}s)"),
        ("pipeline steady (first commit -> all)", f"{steady:10,.0f} events/s  ({steady_span:.2f}s)"),
        ("ratio drain / ceiling", f"{drain / ceiling:10.2f}     (goal >= {GOAL_RATIO})"),
        ("goal drain >= 25,000 events/s", "met" if drain >= GOAL_RATE else f"NOT met ({drain / GOAL_RATE:.2f})"),
        ("goal ratio >= 0.3", "met" if drain / ceiling >= GOAL_RATIO else "NOT met"),
        (
            "SDK preload (publish_many, 10k chunks)",
            f"{n / result.publish_s:10,.0f} events/s  ({result.publish_s:.1f}s)",
        ),
    ]
    out = [table("drain throughput", rows)]
    topo = pipe_topology(status)
    out.append(
        table(
            "where the time goes (pipeline counters)",
            [
                ("actors (readers/aggregators/delivery/gateways)", topo),
                ("pipeline start (Ray init + actors + ready)", f"{result.pipeline_start_s:.1f}s"),
                ("first commit after go", f"{result.first_commit_s:.2f}s ({result.committed_at_first:,} events)"),
                ("reader batches", f"{reader_batches:,} (mean {n / max(reader_batches, 1):,.0f} events)"),
                ("aggregator calls", f"{batches_agg:,} (mean {applied / max(batches_agg, 1):,.0f} events/call)"),
                ("applied / duplicates / conflicts retried", f"{applied:,} / {dups:,} / {conflicts:,}"),
                ("reader apply retries", f"{retries:,}"),
                ("IN_APP delivered by end of drain", f"{delivered:,}"),
                ("settings", f"reader_max_records={settings.reader_max_records} shards={settings.shards}"),
            ],
        )
    )
    mem_rows = [(k, f"{v:8.0f} MiB peak (VmHWM)") for k, v in result.actor_hwm_mib.items()]
    mem_rows.append(("sum over actor workers", f"{sum(result.actor_hwm_mib.values()):8.0f} MiB"))
    mem_rows.append(("all Ray processes, peak of sampled sum", f"{result.ray_peak_rss_mib:8.0f} MiB"))
    for name, mib in sorted(result.ray_procs.items(), key=lambda kv: -kv[1])[:6]:
        mem_rows.append((f"  {name}", f"{mib:8.0f} MiB peak"))
    out.append(table("pipeline memory", mem_rows))
    redis = result.redis
    stored = redis.get("notifications", 0.0)
    keys_total = sum(v for k, v in redis.items() if k not in ("notifications", "used_memory", "used_memory_delta"))
    redis_rows = [("notifications stored", f"{stored:,.0f} (from {n:,} events)")]
    if stored:
        redis_rows.append(("bytes per notification, the run's user keys", f"{keys_total / stored:8.0f} B"))
        for kind in ("n", "inbox", "seen", "g", "seq", "unread"):
            if kind in redis:
                redis_rows.append((f"  {kind}", f"{redis[kind] / stored:8.0f} B"))
        redis_rows.append(
            ("used_memory delta / notification", f"{redis['used_memory_delta'] / stored:8.0f} B (+outbox, CI noise)")
        )
    out.append(table("Redis memory", redis_rows))
    return "\n\n".join(out)


def pipe_topology(status: dict[str, list[dict[str, Any]]]) -> str:
    return "/".join(str(len(status.get(k, []))) for k in ("readers", "aggregators", "delivery", "gateways"))
