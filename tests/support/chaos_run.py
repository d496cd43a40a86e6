"""The chaos run behind `scripts/dev chaos` and tests/integration/test_chaos.py: a private Kafka + Redis
(tests/support/chaos_stack.py), a private Ray runtime running the pipeline under its supervisor, a seeded social
stream published at a steady pace, and faults injected at seeded random moments meanwhile. At the end the inboxes,
the `seen` sets, the webhook sink and the devices are compared with the reference model (tests/support/chaos_model.py).

It must run in a process of its own: it starts its own Ray runtime (pipeline.connect_ray with no ray_address).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
import ray
from redis.asyncio import Redis

from herald import keys
from herald.auth import mint_token
from herald.config import Settings
from herald.errors import BrokerUnavailableError
from herald.producer import NotificationProducer, PartialPublishError
from herald.redis_pool import redis_client
from herald.stack import procs
from herald.workload import social_stream
from pipeline import Pipeline, connect_ray
from tests.support.chaos_model import (
    FAULT_KINDS,
    Figures,
    Note,
    ask_webhook,
    compare_clients,
    compare_deliveries,
    compare_inboxes,
    expected_deliveries,
    plan_faults,
    webhook_users,
)
from tests.support.chaos_stack import PrivateStack
from tests.support.devices import Device
from tests.support.http_sink import HttpSink
from tests.support.reference_model import expected_inboxes

log = logging.getLogger("herald.chaos")

CHUNK = 500
USERS_PER_READ = 500
ACTOR_GROUPS = {
    "kill_reader": "readers",
    "kill_aggregator": "aggregators",
    "kill_delivery": "delivery",
    "kill_gateway": "gateways",
}


@dataclass(frozen=True)
class ChaosConfig:
    events: int = 100_000
    users: int = 10_000
    seed: int = 1
    faults_per_kind: int = 3
    stream_s: float = 150.0  # how long publishing the stream takes (the faults land within it)
    devices: int = 200  # users watched by a Socket.IO client for the whole run
    webhook_share: float = 0.1  # users whose events also ask for WEBHOOK
    converge_timeout_s: float = 300.0
    keep_state: bool = False
    redis_appendfsync: str = "always"  # the private Redis's AOF policy (herald/stack/redis.py)


@dataclass
class InjectedFault:
    kind: str
    planned_s: float
    at_s: float
    target: str
    took_s: float
    error: str | None = None


@dataclass
class ChaosReport:
    config: ChaosConfig
    faults: list[InjectedFault]
    figures: Figures
    publish_retries: int
    publish_s: float
    total_s: float
    examples: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "faults": [asdict(f) for f in self.faults],
            "figures": self.figures.as_json(),
            "publish_retries": self.publish_retries,
            "publish_s": self.publish_s,
            "total_s": self.total_s,
            "ok": self.figures.ok() and not any(f.error for f in self.faults),
        }


def run_chaos(config: ChaosConfig, progress: Callable[[str], None] = lambda _line: None) -> ChaosReport:
    """Start everything, run, compare, tear down (also on failure)."""
    started = time.monotonic()
    sink = HttpSink()
    stack = PrivateStack.create(
        keep=config.keep_state,
        redis_appendfsync=config.redis_appendfsync,
        gateway_port=procs.free_port(),
        jwt_secret=secrets.token_urlsafe(32),
        webhook_url=f"{sink.url}/hook",
        webhook_secret=secrets.token_urlsafe(32),
        reader_max_records=500,
        # A killed delivery actor's pending entries are taken over after this long (docs/architecture.md, Delivery).
        delivery_reclaim_idle_s=5.0,
        ray_num_cpus=2,
    )
    ports = f"kafka :{stack.settings.kafka_port}, redis :{stack.settings.redis_port}"
    progress(f"private stack in {stack.settings.state_dir}: {ports}")
    pipeline: Pipeline | None = None
    try:
        stack.up()  # inside the try: a broker that fails to start still leaves Redis to stop
        _connect_ray(stack.settings, progress)
        progress("starting the pipeline")
        pipeline = Pipeline(stack.settings, name="chaos").start()
        report = asyncio.run(_drive(config, stack, pipeline, sink, progress))
        report.total_s = round(time.monotonic() - started, 1)
        return report
    finally:
        if pipeline is not None:
            with contextlib.suppress(Exception):
                pipeline.drain(timeout_s=20)
        if ray.is_initialized():
            ray.shutdown()
        stack.down()


def _connect_ray(settings: Settings, progress: Callable[[str], None], attempts: int = 3) -> None:
    # Ray gives a starting raylet a fixed 30 s to register; on a loaded 2-core box that is sometimes too short.
    for attempt in range(1, attempts + 1):
        try:
            connect_ray(settings)
            return
        except Exception as exc:
            ray.shutdown()
            if attempt == attempts:
                raise RuntimeError(f"Ray did not start ({attempts} attempts): {exc}") from exc
            progress(f"Ray did not start ({exc}); trying again")


async def _drive(
    config: ChaosConfig, stack: PrivateStack, pipeline: Pipeline, sink: HttpSink, progress: Callable[[str], None]
) -> ChaosReport:
    settings = stack.settings
    rng = random.Random(config.seed)
    wire = social_stream(
        f"c{config.seed}",
        events=config.events,
        users=config.users,
        base=datetime.now(UTC),
        spread=timedelta(minutes=30),
        seed=config.seed,
    )
    all_users = sorted({e["userId"] for e in wire})
    hooked = webhook_users(all_users, rng, config.webhook_share)
    ask_webhook(wire, hooked)
    expected = expected_inboxes(
        wire, late_allowance_ms=settings.late_allowance_s * 1000, inbox_capacity=settings.inbox_capacity
    )
    # Deliveries follow every notification, also those a full inbox later evicted (docs/architecture.md, "Redis
    # data model": the inbox keeps `inbox_capacity`); so their final versions come from the model with no cap.
    uncapped = expected_inboxes(wire, late_allowance_ms=settings.late_allowance_s * 1000, inbox_capacity=len(wire))
    final_versions = expected_deliveries(uncapped, hooked)
    watched = rng.sample(all_users, min(config.devices, len(all_users)))
    url = f"http://127.0.0.1:{settings.gateway_port}"
    devices = {user: Device(url, mint_token(settings, user, ttl_s=3 * 3600)) for user in watched}
    plan = plan_faults(rng, duration_s=config.stream_s, per_kind={kind: config.faults_per_kind for kind in FAULT_KINDS})
    progress(
        f"seed {config.seed}: {len(wire)} events, {len(all_users)} users, {len(hooked)} asking for WEBHOOK, "
        f"{len(devices)} devices, {len(plan)} faults over {config.stream_s:g} s"
    )
    async with sink, NotificationProducer(settings) as producer:
        device_tasks = [asyncio.create_task(d.run()) for d in devices.values()]
        supervisor = pipeline.supervise_in_background()
        redis = redis_client(settings.redis_url, decode_responses=True)
        try:
            await _wait(lambda: all(d.connected for d in devices.values()), 60, "every device connected")
            publish_lock = asyncio.Lock()
            t0 = time.monotonic()
            injector = asyncio.create_task(_inject(plan, t0, stack, pipeline, devices, publish_lock, rng, progress))
            retries = await _publish(producer, wire, t0, config.stream_s, publish_lock)
            published_at = time.monotonic()
            progress(f"published {len(wire)} events in {published_at - t0:.1f} s ({retries} publish retries)")
            faults = await injector
            progress("faults done; waiting for convergence")
            converged_s = await _converge(
                redis, expected, final_versions, sink, devices, published_at, config.converge_timeout_s
            )
            progress(f"converged after {converged_s} s" if converged_s is not None else "did NOT converge")
            figures = await _figures(redis, wire, expected, final_versions, sink, devices, converged_s)
        finally:
            supervisor.stop()
            for device in devices.values():
                await device.stop()
            await asyncio.gather(*device_tasks, return_exceptions=True)
            await redis.aclose()
    return ChaosReport(config, faults, figures, retries, round(published_at - t0, 1), 0.0)


async def _wait(accept: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not accept():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not reached within {timeout_s:g} s")
        await asyncio.sleep(0.2)


async def _publish(
    producer: NotificationProducer, wire: list[dict[str, Any]], t0: float, stream_s: float, lock: asyncio.Lock
) -> int:
    """Chunks at a steady pace over `stream_s`. A chunk is published whole while holding `lock`: the Kafka
    restart takes it, so the broker never goes away under a half-sent chunk. A retried chunk could otherwise
    put a user's events out of order, which the reference model (events in order per user) does not allow."""
    retries = 0
    chunks = [wire[i : i + CHUNK] for i in range(0, len(wire), CHUNK)]
    for index, chunk in enumerate(chunks):
        delay = t0 + index * stream_s / len(chunks) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        async with lock:
            pending = chunk
            while pending:
                try:
                    await producer.publish_many(pending)
                    pending = []
                except PartialPublishError as exc:
                    retries += 1
                    pending = [pending[i] for i in exc.failed_indices]
                    await asyncio.sleep(0.5)
                except BrokerUnavailableError:
                    retries += 1
                    await asyncio.sleep(0.5)  # the same eventIds again: a duplicate is dropped by dedup
    return retries


async def _inject(
    plan: list[Any],
    t0: float,
    stack: PrivateStack,
    pipeline: Pipeline,
    devices: dict[str, Device],
    publish_lock: asyncio.Lock,
    rng: random.Random,
    progress: Callable[[str], None],
) -> list[InjectedFault]:
    """Each fault at its own moment, concurrently with the others (a Kafka restart takes tens of seconds and
    must not push the kills behind it); faults of one kind one after another (a service is not restarted twice
    at once). The targets are drawn from one RNG per fault, seeded from `rng`, so a seed repeats them."""
    kind_locks = {kind: asyncio.Lock() for kind in {p.kind for p in plan}}

    async def one(planned: Any, fault_rng: random.Random) -> InjectedFault:
        delay = t0 + planned.at_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        async with kind_locks[planned.kind]:
            at = time.monotonic()
            error: str | None = None
            try:
                target = await _fault(planned.kind, stack, pipeline, devices, publish_lock, fault_rng)
            except Exception as exc:  # noqa: BLE001 - a fault that could not be injected is reported, not fatal
                target, error = "-", f"{type(exc).__name__}: {exc}"
            fault = InjectedFault(
                planned.kind, planned.at_s, round(at - t0, 2), target, round(time.monotonic() - at, 2), error
            )
        progress(f"t={fault.at_s:7.2f}s {fault.kind:16} {fault.target}" + (f" FAILED {error}" if error else ""))
        return fault

    rngs = [random.Random(rng.random()) for _ in plan]
    done = await asyncio.gather(*(one(p, r) for p, r in zip(plan, rngs, strict=True)))
    return sorted(done, key=lambda f: f.at_s)


async def _fault(
    kind: str,
    stack: PrivateStack,
    pipeline: Pipeline,
    devices: dict[str, Device],
    publish_lock: asyncio.Lock,
    rng: random.Random,
) -> str:
    if kind in ACTOR_GROUPS:
        label, pid = await _alive_actor(pipeline, ACTOR_GROUPS[kind], rng)
        os.kill(pid, signal.SIGKILL)
        return f"{label} pid {pid}"
    if kind == "kill_redis":
        pid = await asyncio.to_thread(stack.kill_redis)
        return f"redis :{stack.settings.redis_port} -> pid {pid} (appendfsync {stack.redis.appendfsync})"
    if kind == "restart_kafka":
        async with publish_lock:
            pid = await asyncio.to_thread(stack.restart_kafka)
        return f"kafka :{stack.settings.kafka_port} -> pid {pid}"
    if kind == "drop_clients":
        chosen = rng.sample(sorted(devices), max(1, len(devices) // 4))
        dropped = sum([await devices[user].drop() for user in chosen])
        return f"{dropped} of {len(devices)} client connections closed"
    raise ValueError(f"unknown fault kind {kind}")


async def _alive_actor(pipeline: Pipeline, group: str, rng: random.Random) -> tuple[str, int]:
    """A running actor of `group` (one restarting from an earlier kill has no pid to kill yet)."""
    # Generous: on a loaded 2-core box a killed gateway takes up to a minute to serve again.
    deadline = time.monotonic() + 150
    while True:
        status = await asyncio.to_thread(pipeline.status, 5.0)
        alive = [h for h in status.get(group, []) if h.get("ok") and h.get("pid")]
        if alive:
            health = rng.choice(sorted(alive, key=lambda h: str(h.get("actor"))))
            return str(health.get("actor", group)), int(cast(int, health.get("pid")))
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {group} actor answered for 150 s")
        await asyncio.sleep(0.5)


async def _stored(redis: Redis, users: list[str]) -> dict[str, set[Note]]:
    """Per user, (id, text, count, version) of every body in the inbox hash."""
    out: dict[str, set[Note]] = {}
    for start in range(0, len(users), USERS_PER_READ):
        part = users[start : start + USERS_PER_READ]
        async with redis.pipeline(transaction=False) as pipe:
            for user in part:
                pipe.hvals(keys.bodies_key(user))
            answers = await pipe.execute()
        for user, bodies in zip(part, answers, strict=True):
            notes = (orjson.loads(b) for b in bodies)
            out[user] = {(n["id"], n["text"], int(n["count"]), int(n["version"])) for n in notes}
    return out


def _devices_match(devices: dict[str, Device], stored: dict[str, set[Note]]) -> bool:
    return all(d.newest() == {n[0]: n[3] for n in stored.get(u, set())} for u, d in devices.items())


async def _converge(
    redis: Redis,
    expected: dict[str, set[Note]],
    final_versions: dict[str, int],
    sink: HttpSink,
    devices: dict[str, Device],
    published_at: float,
    timeout_s: float,
) -> float | None:
    """Seconds from the last event published until inboxes, webhook and devices all match; None at the deadline.
    Only users not yet matching are read again (a matching user has nothing left in flight)."""
    pending = sorted(expected)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # Redis may still be coming back from a restart
            stored = await _stored(redis, pending)
            pending = [u for u in pending if stored[u] != expected[u]]
            if not pending:
                delivered = {r.headers.get("idempotency-key", "") for r in sink.requests}
                hooked_ok = all(f"{nid}:{v}:WEBHOOK" in delivered for nid, v in final_versions.items())
                watched = await _stored(redis, sorted(devices))
                if hooked_ok and _devices_match(devices, watched):
                    return round(time.monotonic() - published_at, 1)
        await asyncio.sleep(2.0)
    return None


async def _figures(
    redis: Redis,
    wire: list[dict[str, Any]],
    expected: dict[str, set[Note]],
    final_versions: dict[str, int],
    sink: HttpSink,
    devices: dict[str, Device],
    converged_s: float | None,
) -> Figures:
    stored = await _stored(redis, sorted(expected))
    ids_by_user: dict[str, list[str]] = {}
    for event in wire:
        ids_by_user.setdefault(event["userId"], []).append(event["eventId"])
    lost = 0
    users = sorted(ids_by_user)
    for start in range(0, len(users), USERS_PER_READ):
        part = users[start : start + USERS_PER_READ]
        async with redis.pipeline(transaction=False) as pipe:
            for user in part:
                pipe.zmscore(keys.seen_key(user), ids_by_user[user])
            answers = await pipe.execute()
        lost += sum(score is None for scores in answers for score in scores)
    deliveries = compare_deliveries(final_versions, [r.headers.get("idempotency-key", "") for r in sink.requests])
    if deliveries.unexpected:
        deliveries.examples = _unexpected_evidence(sink, final_versions, stored) + deliveries.examples
    return Figures(
        events_published=len(wire),
        events_lost=lost,
        inbox=compare_inboxes(expected, stored),
        deliveries=deliveries,
        clients=compare_clients(
            {u: list(d.received) for u, d in devices.items()},
            {u: d.connections for u, d in devices.items()},
            stored,
            {u: list(d.received_on) for u, d in devices.items()},
        ),
        converged_s=converged_s,
    )


def _unexpected_evidence(sink: HttpSink, final_versions: dict[str, int], stored: dict[str, set[Note]]) -> list[str]:
    """What an unexpected delivery carried, and whether its notification is in its user's inbox at the end."""
    out: list[str] = []
    for request in sink.requests:
        body = request.json()
        note = body.get("notification") or {}
        nid = note.get("id", "")
        if nid in final_versions or len(out) >= 5:
            continue
        user = body.get("userId", "")
        in_inbox = any(n[0] == nid for n in stored.get(user, set()))
        out.append(
            f"delivery {body.get('deliveryId')} user {user} v{note.get('version')} count {note.get('count')} "
            f"text {note.get('text')!r} cursor {note.get('cursor')} in final inbox: {in_inbox}"
        )
    return out
