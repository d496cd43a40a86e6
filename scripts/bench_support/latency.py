"""Latency benchmark: produce -> Socket.IO client under fixed offered loads, with a plain Kafka consumer's
produce -> consume latency as the peer, in the same run.

One Node process holds every client (the official socket.io-client, websocket only): the harness reports its
own CPU so a reader can tell it was not the bottleneck. Each event is a MENTIONED notification (no aggregation
rule), so every event must reach exactly one client; the producer stamps its send time into the event's data.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import TopicPartition

from herald import keys, live
from herald.config import Settings
from herald.kafka import close_client, make_consumer, start_bounded
from pipeline import Pipeline
from scripts.bench_support import ray_reader
from scripts.bench_support.common import create_topic, delete_run, free_port, run_id, stop_pipeline
from scripts.bench_support.machine import describe, load_average
from scripts.bench_support.node_fleet import NodeFleet
from scripts.bench_support.procs import CpuMeter, stack_pids
from scripts.bench_support.producing import mention, offer

__all__ = ["free_port", "run_latency", "summary"]


def _sent_ns(payload: Any) -> int | None:
    """The `sentNs` stamp in a wire event or in a notification body."""
    if isinstance(payload, dict):
        data = payload.get("data")
        if isinstance(data, dict) and isinstance(data.get("sentNs"), int):
            return int(data["sentNs"])
        inner = payload.get("notification")
        if isinstance(inner, dict):
            return _sent_ns(inner)
    return None


async def kafka_tap(settings: Settings, topic: str, out: list[float], stop: asyncio.Event) -> None:
    """The peer: produce -> plain consumer latency, the floor the pipeline adds to."""
    consumer = make_consumer(settings)
    await start_bounded(consumer, settings, "bench kafka tap")
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(settings.events_partitions)])
        await consumer.seek_to_end()
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=100)
            now_ns = time.time_ns()
            for records in fetched.values():
                for record in records:
                    sent = _sent_ns(orjson.loads(record.value)) if record.value else None
                    if sent is not None:
                        out.append((now_ns - sent) / 1e6)
    finally:
        await close_client(consumer)


async def emit_tap(settings: Settings, out: list[float], stop: asyncio.Event) -> None:
    """Produce -> published to a gateway's live channel by the commit (herald/live.py)."""
    client = aioredis.Redis.from_url(settings.redis_url)
    pubsub = client.pubsub()
    await pubsub.psubscribe(keys.live_channel("*"))
    try:
        while not stop.is_set():
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is None:
                continue
            now_ns = time.time_ns()
            try:
                entries = live.parse_message(message["data"])
            except live.MalformedLiveMessage:
                continue
            for entry in entries:
                for note in entry.notes:
                    sent = _sent_ns(note)
                    if sent is not None:
                        out.append((now_ns - sent) / 1e6)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()


async def _load(
    settings: Settings, topic: str, run: str, users: Sequence[str], *, rate: float, seconds: float, offset: int
) -> tuple[dict[str, Any], list[float], list[float], float]:
    stop = asyncio.Event()
    kafka_ms: list[float] = []
    emit_ms: list[float] = []
    taps = [
        asyncio.create_task(kafka_tap(settings, topic, kafka_ms, stop)),
        asyncio.create_task(emit_tap(settings, emit_ms, stop)),
    ]
    await asyncio.sleep(1.0)  # the taps are positioned before the first event
    offered = await offer(
        settings, topic, lambda seq: mention(run, users[seq % len(users)], offset + seq), rate=rate, seconds=seconds
    )
    settle_started = time.monotonic()
    # The taps fill the lists; a fixed grace for stragglers, ended early once the emits caught up.
    while len(emit_ms) < offered.published and time.monotonic() - settle_started < 60:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*taps)
    return vars(offered), kafka_ms, emit_ms, time.monotonic() - settle_started


def _phase(
    settings: Settings,
    topic: str,
    run: str,
    *,
    users: Sequence[str],
    fleet: NodeFleet,
    meter: CpuMeter,
    pipe: Pipeline,
    rate: float,
    seconds: float,
    offset: int,
) -> dict[str, Any]:
    """One offered load, then the wait for its stragglers; latencies and CPU of that phase alone."""
    before = meter.snapshot()
    calls_before = _call_counts(pipe)
    offered, kafka_ms, emit_ms, settle_s = asyncio.run(
        _load(settings, topic, run, users, rate=rate, seconds=seconds, offset=offset)
    )
    waited = time.monotonic()
    fleet.wait_quiet(expected=offered["published"], quiet_s=5.0, max_s=60.0)
    settle_s += time.monotonic() - waited
    after = meter.snapshot()
    calls = {k: v - calls_before[k] for k, v in _call_counts(pipe).items()}
    got = fleet.collect()
    received = sum(c["distinct"] for c in got["clients"])
    latencies = sorted(got["latencies_ms"])
    return {
        "rate": rate,
        "offered": offered,
        "settle_s": settle_s,
        "client_ms": quantiles(latencies),
        "kafka_ms": quantiles(kafka_ms),
        "emit_ms": quantiles(emit_ms),
        "received_distinct": received,
        "received_fraction": received / max(1, offered["published"]),
        "duplicates": got["duplicates"],
        "dropped_clients": got["dropped"],
        "connected_at_end": got["connected"],
        "calls": calls,  # reader batches and aggregator calls in this phase: how much the batches filled
        "cpu_s": meter.between(before, after),
        "cpu_window_s": after.at_s - before.at_s,
        "node_rss_mib": got["rss_mib"],
        "latencies_sample_ms": latencies[:: max(1, len(latencies) // 2000)],
        "client_version": got["client_version"],
    }


def _call_counts(pipe: Pipeline) -> dict[str, int]:
    status = pipe.status()
    return {
        "reader_batches": sum(int(h.get("batches", 0)) for h in status.get("readers", [])),
        "aggregator_calls": sum(int(h.get("batches", 0)) for h in status.get("aggregators", [])),
    }


def quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]

    return {"n": len(ordered), "p50": at(50), "p90": at(90), "p99": at(99), "max": ordered[-1]}


def run_latency(settings: Settings, *, clients: int, rates: Sequence[float], seconds: float) -> dict[str, Any]:
    run = run_id("lat")
    topic, group = f"{run}-events", f"{run}-readers"
    result: dict[str, Any] = {"benchmark": "latency", "run": run, "machine": describe(settings)}
    result["params"] = {"clients": clients, "rates": list(rates), "seconds": seconds}
    users = [f"{run}-u{i}" for i in range(clients)]
    stack = stack_pids(settings)
    asyncio.run(create_topic(settings, topic, settings.events_partitions))
    phases: list[dict[str, Any]] = []
    try:
        pipe = Pipeline(ray_reader.bench_settings(settings, topic=topic, group=group), name=f"bench-{run}").start()
        fleet: NodeFleet | None = None
        try:
            url = f"http://127.0.0.1:{settings.gateway_port}"
            print(f"latency {run}: pipeline up, gateway {url}; connecting {clients} clients from one Node process")
            fleet = NodeFleet(settings, url, users)
            result["connect"] = fleet.connect()
            print(f"  {result['connect']}")
            status = pipe.status()
            roles = {
                int(h["pid"]): kind.rstrip("s")
                for kind, group_status in status.items()
                for h in group_status
                if h.get("pid")
            }
            groups = {k: [v] for k, v in stack.items()}
            groups |= {"harness (driver: producer + taps)": [os.getpid()], "harness (node clients)": [fleet.pid]}
            meter = CpuMeter(groups=groups, tree_roots={"ray (other)": os.getpid()}, roles=roles)
            offset = 0
            for rate in rates:
                print(f"  offering {rate:,.0f} events/s for {seconds:g}s", flush=True)
                phase = _phase(
                    settings,
                    topic,
                    run,
                    users=users,
                    fleet=fleet,
                    meter=meter,
                    pipe=pipe,
                    rate=rate,
                    seconds=seconds,
                    offset=offset,
                )
                offset += phase["offered"]["published"]
                result["client_version"] = phase.pop("client_version")
                phases.append(phase)
                print(f"    client {phase['client_ms']}, received {phase['received_fraction']:.4f}", flush=True)
        finally:
            stop_pipeline(pipe, fleet)
    finally:
        asyncio.run(delete_run(settings, topic, run))
    result["phases"] = phases
    result["machine"]["load_after"] = load_average()
    return result


def summary(result: dict[str, Any]) -> str:
    lines = []
    for p in result["phases"]:
        c, k = p["client_ms"], p["kafka_ms"]
        lines.append(
            f"{p['rate']:>7,.0f}/s: client p50 {c.get('p50', 0):.1f} p90 {c.get('p90', 0):.1f}"
            f" p99 {c.get('p99', 0):.1f}"
            f" ms, received {p['received_fraction']:.4f}, duplicates {p['duplicates']}, dropped"
            f" {p['dropped_clients']}; Kafka consumer p50 {k.get('p50', 0):.1f} ms"
        )
    return "\n".join(lines)
