"""Drain benchmark: a backlog pre-produced to a private topic, drained by Herald and by its peers on the same
broker, from the same records, in the same run.

Herald's drain ends when the last event is committed AND every notification it changed for a connected user
has been pushed to a socket by a gateway (IN_APP's live path: the last live send; what the clients received is
checked after). It runs once with no client connected and once with clients connected to the gateway, counting what
arrives at them. The peers: a plain aiokafka consumer (the ceiling) with and without JSON decoding, Herald's own
reader step alone (decode + validate + route), and the Quix Streams and Faust apps of scripts/bench/peers/.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
import ray
import redis.asyncio as aioredis
from aiokafka import TopicPartition

from herald.config import Settings
from herald.contracts import ActorHealth
from herald.events import MAX_EVENT_BYTES
from herald.kafka import close_client, make_admin, make_consumer, start_bounded
from herald.keys import bodies_key
from herald.producer import NotificationProducer
from herald.routing import route
from herald.workload import social_stream
from pipeline import Pipeline
from scripts.bench_support import peers, ray_reader
from scripts.bench_support.common import create_topic, delete_user_keys, proc_status_kib, run_id
from scripts.bench_support.machine import describe, load_average
from scripts.bench_support.node_fleet import NodeFleet
from scripts.bench_support.procs import CpuMeter, background_cpu_per_s, stack_pids
from scripts.bench_support.raylets import on_raylets

PIPELINE_LABELS = ("reader", "aggregator", "delivery", "gateway", "ray (other)")
STACK_LABELS = ("redis", "kafka")


async def publish(settings: Settings, topic: str, events: Sequence[dict[str, Any]], chunk: int = 10_000) -> None:
    async with NotificationProducer(settings, topic=topic) as producer:
        for start in range(0, len(events), chunk):
            await producer.publish_many(events[start : start + chunk])


async def end_offsets(settings: Settings, topic: str, partitions: int) -> dict[TopicPartition, int]:
    consumer = make_consumer(settings)
    await start_bounded(consumer, settings, "bench offsets consumer")
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(
            [TopicPartition(topic, p) for p in range(partitions)]
        )
        return ends
    finally:
        await close_client(consumer)


Step = Callable[[list[Any]], object]


def _json(records: list[Any]) -> object:
    return [orjson.loads(r.value) for r in records]


def _reader_step(settings: Settings) -> Step:
    return lambda records: route(records, shards=settings.shards, actors=2)


async def plain_consume(settings: Settings, ends: dict[TopicPartition, int], step: Step | None = None) -> float:
    """The ceiling: a consumer with the reader's fetch options, manual assignment, no group, and `step` (none,
    JSON decoding, or Herald's reader step) applied to each fetched batch. Returns the seconds to the end."""
    consumer = make_consumer(
        settings,
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
            if step is not None and fetched:
                step([r for rs in fetched.values() for r in rs])
        elapsed = time.perf_counter() - started
        if count != sum(ends.values()):
            raise RuntimeError(f"plain consumer saw {count} records, expected {sum(ends.values())}")
        return elapsed
    finally:
        await close_client(consumer)


def measure_plain(
    settings: Settings, ends: dict[TopicPartition, int], stack: dict[str, int], step: Step | None
) -> dict[str, Any]:
    meter = CpuMeter(groups={"harness (consumer)": [os.getpid()], **{k: [v] for k, v in stack.items()}})
    before = meter.snapshot()
    seconds = asyncio.run(plain_consume(settings, ends, step))
    cpu = meter.between(before, meter.snapshot())
    events = sum(ends.values())
    return {"events": events, "drain_s": seconds, "events_per_s": events / seconds, "cpu_s": cpu}


async def committed_total(group: str, admin: Any) -> int:
    offsets = await admin.list_consumer_group_offsets(group)
    return sum(max(meta.offset, 0) for meta in offsets.values())


async def redis_usage(settings: Settings, run: str) -> dict[str, Any]:
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
        return {
            "keys_by_kind": by_kind,
            "notifications": float(notifications),
            "used_memory": float(info["used_memory"]),
        }
    finally:
        await client.aclose()


async def used_memory(settings: Settings) -> float:
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        info = await client.info("memory")
        return float(info["used_memory"])
    finally:
        await client.aclose()


async def final_versions(settings: Settings, users: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per user: notification id -> the version stored, i.e. the one a client must end up with."""
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for user in users:
                pipe.hgetall(bodies_key(user))
            replies = await pipe.execute()
        return {
            user: {nid: int(orjson.loads(body).get("version", 1)) for nid, body in reply.items()}
            for user, reply in zip(users, replies, strict=True)
        }
    finally:
        await client.aclose()


class RssSampler:
    """Samples the RSS of the processes a CpuMeter knows, per label, in a thread; keeps each label's peak and
    the peak of the pipeline's summed RSS."""

    def __init__(self, meter: CpuMeter, interval_s: float = 0.5) -> None:
        self._meter = meter
        self.peak_by_label: dict[str, float] = {}
        self.peak_pipeline_mib = 0.0
        self._stop = threading.Event()
        self._interval_s = interval_s
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        by_label: dict[str, float] = {}
        for pid, label in self._meter.pids().items():
            by_label[label] = by_label.get(label, 0.0) + proc_status_kib(pid, "VmRSS") / 1024
        for label, mib in by_label.items():
            self.peak_by_label[label] = max(self.peak_by_label.get(label, 0.0), mib)
        total = sum(mib for label, mib in by_label.items() if label in PIPELINE_LABELS)
        self.peak_pipeline_mib = max(self.peak_pipeline_mib, total)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval_s)


# The counters of ActorHealth this benchmark sums.
Counter = Literal[
    "applied",
    "duplicates",
    "conflicts_retried",
    "self_skipped",
    "notifications_changed",
    "delivered",
    "batches",
    "dead_lettered",
]


def actor_roles(status: dict[str, list[ActorHealth]]) -> dict[int, str]:
    names = {"readers": "reader", "aggregators": "aggregator", "delivery": "delivery", "gateways": "gateway"}
    return {h["pid"]: names[kind] for kind, group in status.items() for h in group if "pid" in h}


def _sum(status: dict[str, list[ActorHealth]], kind: str, counter: Counter) -> int:
    return sum(h.get(counter) or 0 for h in status.get(kind, []))


def _live_sent(status: dict[str, list[ActorHealth]]) -> int:
    """Notification versions the gateways pushed live to connected users (IN_APP's delivery)."""
    return sum(int((g.get("counters") or {}).get("live_notifications") or 0) for g in status.get("gateways", []))


class HeraldDrain:
    """One drain of the topic by a fresh pipeline (fresh consumer group, the run's users wiped first)."""

    def __init__(self, settings: Settings, run: str, topic: str, total: int, stack: dict[str, int]) -> None:
        self.settings = settings
        self.run = run
        self.topic = topic
        self.total = total
        self.stack = stack

    def __call__(self, tag: str, client_users: Sequence[str]) -> dict[str, Any]:
        settings = self.settings
        asyncio.run(delete_user_keys(settings, self.run))
        memory_before = asyncio.run(used_memory(settings))
        group = f"{self.run}-readers-{tag}"
        out: dict[str, Any] = {"events": self.total, "clients_asked": len(client_users)}
        started = time.perf_counter()
        pipe = Pipeline(
            ray_reader.bench_settings(settings, topic=self.topic, group=group),
            name=f"bench-{group[-24:]}",
            reader_actor=ray_reader.gated_reader(),
        ).start(settle_group=False)
        out["pipeline_start_s"] = time.perf_counter() - started
        fleet: NodeFleet | None = None
        try:
            if client_users:
                url = f"http://127.0.0.1:{settings.gateway_port}"
                fleet = NodeFleet(settings, url, list(client_users), detail=True)
                out["clients_connect"] = fleet.connect()
            status = pipe.status()
            groups: dict[str, list[int]] = {k: [v] for k, v in self.stack.items()}
            groups["harness (driver)"] = [os.getpid()]
            if fleet is not None:
                groups["harness (node clients)"] = [fleet.pid]
            meter = CpuMeter(groups=groups, tree_roots={"ray (other)": os.getpid()}, roles=actor_roles(status))
            out["background_cpu_per_s"] = background_cpu_per_s(self.stack)
            with RssSampler(meter) as sampler:
                before = meter.snapshot()
                asyncio.run(self._drain(pipe, group, out))
                out["cpu_s"] = meter.between(before, meter.snapshot())
                sampler.sample()
            status = pipe.status()
            out["peak_rss_mib"] = sampler.peak_by_label
            out["peak_pipeline_rss_mib"] = sampler.peak_pipeline_mib
            out["actor_hwm_mib"] = {
                f"{actor_roles(status).get(int(h['pid']), kind)}-{i}": proc_status_kib(int(h["pid"]), "VmHWM") / 1024
                for kind, group_status in status.items()
                for i, h in enumerate(group_status)
                if h.get("pid")
            }
            out["counters"] = {
                "applied": _sum(status, "aggregators", "applied"),
                "duplicates": _sum(status, "aggregators", "duplicates"),
                "conflicts_retried": _sum(status, "aggregators", "conflicts_retried"),
                "self_skipped": _sum(status, "aggregators", "self_skipped"),
                "notifications_changed": _sum(status, "aggregators", "notifications_changed"),
                "delivered": _sum(status, "delivery", "delivered"),
                "live_sent": _live_sent(status),
                "reader_batches": _sum(status, "readers", "batches"),
                "aggregator_calls": _sum(status, "aggregators", "batches"),
                "dead_lettered": _sum(status, "readers", "dead_lettered"),
            }
            out["topology"] = {kind: len(group_status) for kind, group_status in status.items()}
            if fleet is not None:
                out["clients"] = self._clients(fleet, client_users)
                fleet = None
        finally:
            if fleet is not None:
                fleet.stop()
            pipe.drain()
        usage = asyncio.run(redis_usage(settings, self.run))
        usage["used_memory_delta"] = usage["used_memory"] - memory_before
        out["redis"] = usage
        return out

    async def _drain(self, pipe: Pipeline, group: str, out: dict[str, Any]) -> None:
        admin = make_admin(self.settings)
        await start_bounded(admin, self.settings, "bench admin")
        try:
            started = time.perf_counter()
            await asyncio.gather(*(asyncio.wrap_future(r.go.remote().future()) for r in pipe.readers))
            deadline = started + max(600.0, self.total / 200)
            partitions = self.settings.events_partitions
            timeline: list[tuple[float, int]] = []
            while "committed_s" not in out:
                if "join_s" not in out:
                    status = await asyncio.to_thread(pipe.status)
                    if sum(len(r.get("partitions", [])) for r in status["readers"]) >= partitions:
                        out["join_s"] = time.perf_counter() - started
                done = await committed_total(group, admin)
                timeline.append((time.perf_counter() - started, done))
                if done >= self.total:
                    out["committed_s"] = time.perf_counter() - started
                elif time.perf_counter() > deadline:
                    raise RuntimeError(f"drain did not finish: {done}/{self.total} committed")
                else:
                    await asyncio.sleep(0.1)
            out["timeline"] = timeline
            # Then IN_APP must be delivered: the commits publish to the gateways of connected users, and the
            # drain ends at the last notification a gateway pushed to a socket (quiet for a second after it).
            # With no client connected there is nothing to push: the drain ends at the commit.
            sent, last_change = -1, time.perf_counter()
            while time.perf_counter() - last_change < 1.0:
                status = await asyncio.to_thread(pipe.status)
                now_sent = _live_sent(status)
                if now_sent != sent:
                    sent, last_change = now_sent, time.perf_counter()
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"live delivery did not settle: {sent} sent")
                await asyncio.sleep(0.05)
            out["drain_s"] = max(last_change, started + out["committed_s"]) - started
        finally:
            await close_client(admin)

    def _clients(self, fleet: NodeFleet, users: Sequence[str]) -> dict[str, Any]:
        """What the connected clients got, against the versions Redis holds for their users."""
        fleet.wait_quiet(quiet_s=2.0, max_s=30.0)
        result = fleet.stop()
        stored = asyncio.run(final_versions(self.settings, sorted(set(users))))
        expected = final_seen = 0
        for client in result["clients"]:
            wanted = stored.get(client["user"], {})
            got = client.get("notifications", {})
            expected += len(wanted)
            final_seen += sum(1 for nid, version in wanted.items() if nid in got and got[nid][0] >= version)
        return {
            "connected": len(result["clients"]),
            "received": result["received"],
            "distinct_versions": sum(c["distinct"] for c in result["clients"]),
            "duplicates": result["duplicates"],
            "dropped": result["dropped"],
            "notifications_stored_for_them": expected,
            "final_version_seen": final_seen,
            "node_cpu_ms": result["cpu_ms"],
            "node_rss_mib": result["rss_mib"],
        }


async def _delete_run_topics(settings: Settings, run: str) -> list[str]:
    """The run's topic, whatever the peers created for it (changelogs, leader topics), (consumer groups stay)."""
    admin = make_admin(settings)
    await start_bounded(admin, settings, "bench admin")
    try:
        topics = [t for t in await admin.list_topics() if run in t]
        if topics:
            await admin.delete_topics(topics)
        # aiokafka's admin cannot delete consumer groups; their offsets expire with offsets.retention.minutes.
        return topics
    finally:
        await close_client(admin)


def run_drain(
    settings: Settings,
    *,
    events: int,
    users: int,
    clients: int,
    repeat: int,
    peer_names: Sequence[str],
    raylets: Sequence[int] = (1,),
) -> dict[str, Any]:
    run = run_id("drain")
    topic = f"{run}-events"
    result: dict[str, Any] = {"benchmark": "drain", "run": run, "machine": describe(settings)}
    result["params"] = {
        "events": events,
        "users": users,
        "clients": clients,
        "repeat": repeat,
        "peers": list(peer_names),
        "raylets": list(raylets),
    }
    print(f"drain {run}: {events:,} events over {users:,} users -> {topic} ({settings.events_partitions} partitions)")
    wire = social_stream(
        run, events=events, users=users, base=datetime.now(UTC) - timedelta(minutes=10), spread=timedelta(minutes=10)
    )
    result["mean_event_bytes"] = sum(len(orjson.dumps(e)) for e in wire[:1000]) / min(1000, len(wire))
    client_users = [f"{run}-u{i}" for i in range(min(clients, users))]
    asyncio.run(create_topic(settings, topic, settings.events_partitions))
    stack = stack_pids(settings)
    try:
        started = time.perf_counter()
        asyncio.run(publish(settings, topic, wire))
        result["preload"] = {
            "seconds": time.perf_counter() - started,
            "events_per_s": events / (time.perf_counter() - started),
        }
        del wire
        ends = asyncio.run(end_offsets(settings, topic, settings.events_partitions))
        if sum(ends.values()) != events:
            raise RuntimeError(f"topic holds {sum(ends.values())} records, expected {events}")
        herald = HeraldDrain(settings, run, topic, events, stack)
        sides: dict[str, Callable[[int], dict[str, Any]]] = {
            "plain consumer": lambda _r: measure_plain(settings, ends, stack, None),
            "plain consumer + JSON decode": lambda _r: measure_plain(settings, ends, stack, _json),
            "Herald reader step alone": lambda _r: measure_plain(settings, ends, stack, _reader_step(settings)),
            "Herald, no clients": lambda r: herald(f"r{r}n", []),
        }
        if client_users:
            sides[f"Herald, {len(client_users)} clients"] = lambda r: herald(f"r{r}c", client_users)
        # Gateways on several raylets of one host take free ports (one per node).
        spread = HeraldDrain(settings.model_copy(update={"gateway_port": 0}), run, topic, events, stack)
        for count in (n for n in raylets if n > 1):
            sides[f"Herald, no clients, {count} raylets"] = _raylets_side(spread, count, settings.ray_num_cpus)
        for name in peer_names:
            sides[peers.LABELS[name]] = _peer_side(name, settings, topic=topic, run=run, events=events, stack=stack)
        rounds: list[dict[str, Any]] = []
        names = list(sides)
        for r in range(repeat):
            # Rotate the order so that warm-up and a neighbour's load do not always favour the same side.
            shift = r % len(names)
            this_round: dict[str, Any] = {}
            for name in names[shift:] + names[:shift]:
                print(f"  round {r + 1}/{repeat}: {name} ...", flush=True)
                this_round[name] = sides[name](r)
                print(f"    {_one_line(this_round[name])}", flush=True)
            rounds.append(this_round)
        result["rounds"] = rounds
    finally:
        if ray.is_initialized():
            ray.shutdown()
        asyncio.run(delete_user_keys(settings, run))
        result["deleted_topics"] = asyncio.run(_delete_run_topics(settings, run))
    result["machine"]["load_after"] = load_average()
    return result


def _raylets_side(spread: HeraldDrain, raylets: int, cpus: int | None) -> Callable[[int], dict[str, Any]]:
    """The same drain on a cluster of `raylets` raylets splitting this machine's `cpus`."""

    def side(round_no: int) -> dict[str, Any]:
        return on_raylets(raylets, cpus, lambda: spread(f"r{round_no}s{raylets}", []))

    return side


def _peer_side(
    name: str, settings: Settings, *, topic: str, run: str, events: int, stack: dict[str, int]
) -> Callable[[int], dict[str, Any]]:
    def side(round_no: int) -> dict[str, Any]:
        group = f"{run}-{name}-r{round_no}"
        return peers.run_peer(name, settings, topic=topic, group=group, expected=events, stack=stack)

    return side


def _one_line(side: dict[str, Any]) -> str:
    if side.get("error"):
        return f"ERROR {side['error'][:200]}"
    rate = side.get("events_per_s") or (side["events"] / side["drain_s"] if side.get("drain_s") else 0.0)
    return f"{rate:,.0f} events/s"


def rate_of(side: dict[str, Any]) -> float | None:
    """Events per second of one side of one round (Herald: go -> last notification emitted)."""
    if side.get("error") or not side.get("drain_s"):
        return None
    return float(side.get("events_per_s") or side["events"] / side["drain_s"])


__all__ = ["rate_of", "run_drain"]
