"""Issue 4 benchmarks: produce-to-client latency under a fixed offered load, and idle connections per gateway."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import ray
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

from actors.factory import Gateway, start_loop
from herald.auth import mint_token
from herald.config import Settings
from herald.kafka import close_client, start_bounded
from herald.producer import NotificationProducer
from pipeline import Pipeline, connect_ray
from scripts.bench_support import ray_reader
from scripts.bench_support.clients import ClientFleet
from scripts.bench_support.common import (
    create_topic,
    delete_topic,
    delete_user_keys,
    free_port,
    percentile,
    proc_status_kib,
    run_id,
    sum_rss_mib,
    table,
)

__all__ = ["free_port", "idle_report", "latency_report", "run_idle", "run_latency"]

TICK_S = 0.01
GRACE_S = 10.0


@dataclass
class LatencyResult:
    clients: int
    connected: int = 0
    connect_failed: int = 0
    connect_s: float = 0.0
    rate: float = 0.0
    seconds: float = 0.0
    published: int = 0
    publish_s: float = 0.0
    publish_errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    kafka_ms: list[float] = field(default_factory=list)  # peer: a plain consumer of the topic
    emit_ms: list[float] = field(default_factory=list)  # peer: the Socket.IO Redis pub/sub channel
    duplicates: int = 0
    gateway: dict[str, Any] = field(default_factory=dict)
    gateway_hwm_mib: float = 0.0
    client_rss_mib: float = 0.0


def _event(run: str, user: str, seq: int) -> dict[str, Any]:
    # MENTIONED has no aggregation rule: every event is its own notification, so each one must reach a client.
    return {
        "type": "NOTIFICATION_CREATED",
        "eventId": f"{run}-e{seq}",
        "userId": user,
        "notification": {
            "type": "MENTIONED",
            "actor": {"id": "a1", "name": "John"},
            "target": {"type": "post", "id": f"p{seq}"},
            "message": "John mentioned you",
            "data": {},
        },
        "channels": ["IN_APP"],
        "priority": "NORMAL",
        "source": "bench",
    }


async def offer_load(
    settings: Settings, topic: str, run: str, users: list[str], *, rate: float, seconds: float, result: LatencyResult
) -> None:
    """Publish `rate` events/s for `seconds`, round robin over `users`, each stamped with its send time."""
    tasks: set[asyncio.Task[Any]] = set()
    errors = 0

    def done(task: asyncio.Task[Any]) -> None:
        nonlocal errors
        tasks.discard(task)
        if task.cancelled() or task.exception() is not None:
            errors += 1

    async with NotificationProducer(settings, topic=topic) as producer:
        sent = 0
        started = time.perf_counter()
        total = int(rate * seconds)
        while sent < total:
            due = min(total, int((time.perf_counter() - started) * rate) + 1)
            if due > sent:
                batch = []
                for seq in range(sent, due):
                    event = _event(run, users[seq % len(users)], seq)
                    event["notification"]["data"]["sentNs"] = time.time_ns()
                    batch.append(event)
                task = asyncio.create_task(producer.publish_many(batch))
                tasks.add(task)
                task.add_done_callback(done)
                sent = due
            await asyncio.sleep(TICK_S)
        if tasks:
            await asyncio.wait(set(tasks))
        result.publish_s = time.perf_counter() - started
        result.published = sent
        result.publish_errors = errors


def _sent_ns(payload: Any) -> int | None:
    """The `sentNs` stamp in a wire event or in a notification body (searched one level of nesting deep)."""
    if isinstance(payload, dict):
        data = payload.get("data")
        if isinstance(data, dict) and isinstance(data.get("sentNs"), int):
            return int(data["sentNs"])
        for key in ("notification", "data"):
            found = _sent_ns(payload.get(key)) if isinstance(payload.get(key), dict) else None
            if found is not None:
                return found
    return None


async def kafka_tap(settings: Settings, topic: str, out: list[float], stop: asyncio.Event) -> None:
    """Produce -> plain consumer latency: the floor the pipeline adds to."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
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
    """Produce -> Socket.IO emit latency: what the delivery actors publish on the manager's Redis channel."""
    client = aioredis.Redis.from_url(settings.redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe("socketio")
    try:
        while not stop.is_set():
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is None:
                continue
            now_ns = time.time_ns()
            try:
                data = orjson.loads(message["data"])
            except orjson.JSONDecodeError:
                continue
            if isinstance(data, dict) and data.get("event") == "notification":
                sent = _sent_ns(data.get("data"))
                if sent is not None:
                    out.append((now_ns - sent) / 1e6)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()


async def load_with_taps(
    settings: Settings, topic: str, run: str, users: list[str], *, rate: float, seconds: float, result: LatencyResult
) -> None:
    stop = asyncio.Event()
    taps = [
        asyncio.create_task(kafka_tap(settings, topic, result.kafka_ms, stop)),
        asyncio.create_task(emit_tap(settings, result.emit_ms, stop)),
    ]
    await asyncio.sleep(1.0)  # the taps are positioned before the first event
    await offer_load(settings, topic, run, users, rate=rate, seconds=seconds, result=result)
    deadline = time.monotonic() + GRACE_S
    # Polls lists the taps fill; nothing to wait on but time.
    while len(result.emit_ms) < result.published and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*taps)


def run_latency(settings: Settings, *, clients: int, rate: float, seconds: float, processes: int) -> LatencyResult:
    run = run_id("lat")
    topic, group = f"{run}-events", f"{run}-readers"
    result = LatencyResult(clients=clients, rate=rate, seconds=seconds)
    users = [f"{run}-u{i}" for i in range(clients)]
    tokens = [mint_token(settings, u, ttl_s=3600 + int(seconds) * 2) for u in users]
    asyncio.run(create_topic(settings, topic, settings.events_partitions))
    ray_reader.install(topic, group, gated=False)
    try:
        pipe = Pipeline(settings, name=f"bench-{run}").start()
        try:
            url = f"http://127.0.0.1:{settings.gateway_port}"
            print(f"run {run}: pipeline up, gateway {url}; connecting {clients} clients from {processes} processes")
            fleet = ClientFleet(url, tokens, processes)
            started = time.perf_counter()
            result.connected, result.connect_failed = fleet.connect(clients)
            result.connect_s = time.perf_counter() - started
            print(f"  {result.connected} connected ({result.connect_failed} failed) in {result.connect_s:.1f}s")
            # Only users with a connected client count: a failed connect is reported separately.
            asyncio.run(load_with_taps(settings, topic, run, users, rate=rate, seconds=seconds, result=result))
            time.sleep(1.0)
            result.client_rss_mib = sum_rss_mib(fleet.pids())
            status = pipe.status()
            result.gateway = status["gateways"][0] if status["gateways"] else {}
            result.gateway_hwm_mib = proc_status_kib(int(result.gateway.get("pid") or 0), "VmHWM") / 1024
            receipts, result.duplicates = fleet.stop()
            result.latencies_ms = sorted(lat for _, lat in receipts)
        finally:
            pipe.drain()
            ray.shutdown()
    finally:
        asyncio.run(delete_topic(settings, topic))
        asyncio.run(delete_user_keys(settings, run))
    return result


def latency_report(r: LatencyResult) -> str:
    lat = r.latencies_ms
    fraction = len(lat) / r.published if r.published else 0.0
    rows = [
        ("clients connected / asked", f"{r.connected} / {r.clients} ({r.connect_failed} failed, {r.connect_s:.1f}s)"),
        (
            "offered load",
            f"{r.rate:,.0f} events/s for {r.seconds:g}s; published {r.published:,} in {r.publish_s:.1f}s "
            f"({r.published / r.publish_s if r.publish_s else 0:,.0f}/s, {r.publish_errors} errors)",
        ),
        ("delivered (distinct notifications received)", f"{len(lat):,} = {fraction:.4f}  (goal 1.0)"),
        ("duplicates seen by clients", f"{r.duplicates}"),
        ("latency, ms", "     p50      p95      p99      max       n"),
        ("  peer: plain Kafka consumer (floor)", _quantiles(sorted(r.kafka_ms))),
        ("  peer: emitted on Socket.IO Redis channel", _quantiles(sorted(r.emit_ms))),
        ("  client receive (the benchmark)", _quantiles(lat)),
        ("goals", "p50 <= 10 ms, p99 <= 50 ms: " + ("met" if _goals_met(lat) else "NOT met")),
        ("gateway connections at end", f"{r.gateway.get('connections')}"),
        ("gateway peak RSS (VmHWM)", f"{r.gateway_hwm_mib:.0f} MiB"),
        ("client processes RSS", f"{r.client_rss_mib:.0f} MiB"),
    ]
    return table("produce-to-client latency (SDK publish -> Kafka -> pipeline -> Socket.IO client)", rows)


def _quantiles(values: list[float]) -> str:
    if not values:
        return "no samples"
    cols = [percentile(values, q) for q in (50, 95, 99)] + [values[-1]]
    return " ".join(f"{v:8.1f}" for v in cols) + f" {len(values):7d}"


def _goals_met(lat: list[float]) -> bool:
    return bool(lat) and percentile(lat, 50) <= 10 and percentile(lat, 99) <= 50


@dataclass
class IdleResult:
    steps: list[tuple[int, int, int, float]] = field(default_factory=list)  # asked, connected, failed, RSS MiB
    baseline_mib: float = 0.0
    client_rss_mib: float = 0.0
    stopped_because: str = ""


def run_idle(settings: Settings, *, maximum: int, step: int, processes: int) -> IdleResult:
    """Connect idle clients to one GatewayActor (the pipeline's own actor class) in steps; RSS after each step."""
    run = run_id("idle")
    result = IdleResult()
    tokens = [mint_token(settings, f"{run}-u{i}", ttl_s=7200) for i in range(maximum)]
    connect_ray(settings)
    gateway = Gateway.options(name=f"bench-{run}-gateway").remote(settings)
    loop_ref = start_loop(gateway)
    try:
        deadline = time.monotonic() + 60
        health: dict[str, Any] = {}
        while not health.get("ok"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway not serving: {health}")
            time.sleep(0.2)
            health = ray.get(gateway.health.remote())
        pid = int(health["pid"])
        result.baseline_mib = proc_status_kib(pid, "VmRSS") / 1024
        url = f"http://127.0.0.1:{health['port']}"
        print(f"run {run}: gateway pid {pid} on {url}, {result.baseline_mib:.0f} MiB idle")
        fleet = ClientFleet(url, tokens, processes)
        connected = 0
        try:
            while connected < maximum:
                asked = min(step, maximum - connected)
                started = time.perf_counter()
                ok, failed = fleet.connect(asked)
                took = time.perf_counter() - started
                connected += ok
                time.sleep(1.0)
                health = ray.get(gateway.health.remote())
                rss = proc_status_kib(pid, "VmRSS") / 1024
                result.steps.append((asked, int(health.get("connections", 0)), failed, rss))
                held = health.get("connections")
                print(f"  +{asked}: {held} connections, {failed} failed, {rss:.0f} MiB, {took:.1f}s")
                if failed:
                    result.stopped_because = f"{failed} connects failed in the last step"
                    break
            else:
                result.stopped_because = f"reached --max {maximum}"
            result.client_rss_mib = sum_rss_mib(fleet.pids())
        finally:
            fleet.stop()
        ray.get(gateway.drain.remote(), timeout=60)
        ray.wait([loop_ref], timeout=30)
    finally:
        ray.kill(gateway, no_restart=True)
        ray.shutdown()
    return result


def idle_report(r: IdleResult) -> str:
    rows = [("gateway RSS with no clients", f"{r.baseline_mib:.0f} MiB")]
    for asked, connections, failed, rss in r.steps:
        rows.append((f"connections {connections:>6}", f"{rss:6.0f} MiB  (+{asked} asked, {failed} failed)"))
    if r.steps:
        top = max(r.steps, key=lambda s: s[1])
        per_conn_kib = (top[3] - r.baseline_mib) * 1024 / top[1] if top[1] else float("nan")
        rows.append(("most connections held", f"{top[1]} at {top[3]:.0f} MiB (~{per_conn_kib:.0f} KiB per connection)"))
        rows.append(("goal", "5,000 idle connections per gateway: " + ("met" if top[1] >= 5000 else "NOT met")))
    rows.append(("stopped because", r.stopped_because))
    rows.append(("client processes RSS", f"{r.client_rss_mib:.0f} MiB"))
    return table("idle connections on one gateway", rows)
