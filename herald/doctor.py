"""`herald doctor`: is everything Herald needs reachable and configured as docs/architecture.md says? Each check
is bounded in time and says how to fix what it finds."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError, ResponseError

from herald.channels.registry import PROVIDER_MODULES, build_provider, required_settings
from herald.cluster import resolve_ray_address
from herald.config import Settings
from herald.errors import BrokerUnavailableError, ClusterJoinError, HeraldError, KafkaSecurityError
from herald.kafka import close_client, make_admin, start_bounded
from herald.redaction import redact_url
from herald.topics import inspect_topics, topic_specs

# Doctor is what people run when something hangs: it must answer quickly even if the configured bound is long.
DOCTOR_TIMEOUT_CAP_S = 5.0
RAY_DEFAULT_GCS_PORT = 6379
KAFKA_FIX = "run `herald stack up`, or set HERALD_KAFKA_BOOTSTRAP to a reachable broker"
REDIS_FIX = "run `herald stack up`, or set HERALD_REDIS_URL to a reachable Redis"
FSYNC_ALWAYS = "`appendfsync always`"
FSYNC_TRADE_OFF = (
    "each write then waits for an fsync, which costs throughput (docs/reliability.md, Redis crash); a managed Redis "
    "that offers only `everysec` keeps that risk: after a Redis failure run `herald replay --since <a minute before "
    "it>` to apply again what Redis lost"
)
# How much an acknowledged write may wait for its fsync: everysec writes the AOF each loop and fsyncs in the
# background every second, but holds writes back for up to 2 s more while an fsync is slow; `no` leaves it to
# the kernel's writeback (about 30 s on Linux).
FSYNC_LOSS_WINDOW = {"everysec": "up to about 2 s", "no": "about 30 s (the kernel's writeback)"}


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def doctor_timeout_s(settings: Settings) -> float:
    return min(settings.connect_timeout_s, DOCTOR_TIMEOUT_CAP_S)


async def run_checks(settings: Settings) -> list[CheckResult]:
    """All checks, concurrently; Kafka yields two results (broker, topics)."""
    kafka, redis_result, ray = await asyncio.gather(check_kafka(settings), check_redis(settings), check_ray(settings))
    return [*kafka, redis_result, ray, *check_channels(settings)]


def check_channels(settings: Settings) -> list[CheckResult]:
    """One line per external channel. Not configuring a channel is a choice, so it does not fail the check, but
    the line says which settings turn it on; a configuration that cannot build its provider does fail it."""
    results = []
    for channel in PROVIDER_MODULES:
        name = f"channel {channel}"
        try:
            provider = build_provider(channel, settings)
        except Exception as exc:  # noqa: BLE001 - the doctor reports whatever is wrong with the configuration
            results.append(CheckResult(name, False, f"misconfigured: {exc}", f"check {required_settings(channel)}"))
            continue
        if provider is None:
            detail = "not configured: its deliveries are counted as channels_without_provider"
            results.append(CheckResult(name, True, detail, f"to deliver it, set {required_settings(channel)}"))
        else:
            results.append(CheckResult(name, True, f"configured ({type(provider).__name__})"))
    return results


async def check_kafka(settings: Settings) -> list[CheckResult]:
    timeout_s = doctor_timeout_s(settings)
    admin = make_admin(settings, request_timeout_ms=max(1000, int(timeout_s * 1000)))
    try:
        await start_bounded(admin, settings, "doctor", timeout_s=timeout_s, retry=False)
    except KafkaSecurityError as exc:
        # The broker is there but refuses our credentials or TLS: the message already names the fix.
        detail, _, fix = str(exc).partition("; ")
        return [
            CheckResult("kafka", False, detail, fix),
            CheckResult("topics", False, "not checked: Kafka refused the connection", fix),
        ]
    except BrokerUnavailableError as exc:
        detail = str(exc).split("; is the stack up?")[0]
        return [
            CheckResult("kafka", False, detail, KAFKA_FIX),
            CheckResult("topics", False, "not checked: Kafka is unreachable", KAFKA_FIX),
        ]
    try:
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout=timeout_s)
        broker = CheckResult("kafka", True, _describe_cluster(settings, cluster))
        reports = await asyncio.wait_for(inspect_topics(admin, topic_specs(settings)), timeout=timeout_s)
    except (KafkaError, HeraldError, TimeoutError) as exc:
        detail = f"Kafka at {settings.kafka_bootstrap} answered but a request failed: {exc or 'timed out'}"
        return [CheckResult("kafka", False, detail, "check the broker log (herald stack status shows it)")]
    finally:
        await close_client(admin)
    bad = [f"{r.name}: {'; '.join(r.differences)}" for r in reports if not r.ok]
    if bad:
        fix = "run `herald topics ensure` for missing topics; differing topics must be altered by hand"
        return [broker, CheckResult("topics", False, " | ".join(bad), fix)]
    return [broker, CheckResult("topics", True, f"{len(reports)} topics present with the documented configs")]


def _describe_cluster(settings: Settings, cluster: dict[str, Any]) -> str:
    brokers = cluster.get("brokers") or []
    controller = cluster.get("controller_id")
    cluster_id = cluster.get("cluster_id")
    # Kafka does not report its release over the protocol; the local stack records the one it runs.
    return (
        f"{settings.kafka_bootstrap}: {len(brokers)} broker(s), controller {controller}, cluster {cluster_id}"
        f" (stack version {settings.kafka_version})"
    )


async def check_redis(settings: Settings) -> CheckResult:
    timeout_s = doctor_timeout_s(settings)
    client = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        await asyncio.wait_for(client.ping(), timeout=timeout_s)
        persistence = await asyncio.wait_for(client.info("persistence"), timeout=timeout_s)
        server = await asyncio.wait_for(client.info("server"), timeout=timeout_s)
        appendfsync = await _appendfsync(client, timeout_s)
    except (RedisError, OSError, TimeoutError) as exc:
        detail = f"Redis at {redact_url(settings.redis_url)} unreachable after {timeout_s:g}s: {exc or 'timed out'}"
        return CheckResult("redis", False, detail, REDIS_FIX)
    finally:
        await client.aclose()
    where = f"Redis {server.get('redis_version', '?')} at {redact_url(settings.redis_url)}"
    return judge_redis_persistence(where, aof_on=str(persistence.get("aof_enabled")) == "1", appendfsync=appendfsync)


async def _appendfsync(client: aioredis.Redis, timeout_s: float) -> str | FsyncUnknown:
    """The AOF fsync policy. INFO does not show it; CONFIG GET does, but managed services often rename or forbid
    CONFIG, and that is no reason to call Redis unreachable."""
    try:
        answer: dict[Any, Any] = await asyncio.wait_for(client.config_get("appendfsync"), timeout=timeout_s)
    except ResponseError as exc:
        return FsyncUnknown(f"CONFIG GET refused: {exc}")
    value = answer.get("appendfsync") or answer.get(b"appendfsync")
    if not value:
        return FsyncUnknown("CONFIG GET appendfsync answered nothing")
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class FsyncUnknown:
    """Redis would not say its fsync policy (an ACL without `config`, a renamed command, a proxy)."""

    why: str


def judge_redis_persistence(where: str, *, aof_on: bool, appendfsync: str | FsyncUnknown) -> CheckResult:
    """The no-loss guarantee (docs/architecture.md, Guarantees) holds through a Redis crash only when every commit
    Redis acknowledged is on disk: the readers commit the Kafka offsets behind it, so Kafka never redelivers it.

    AOF off fails (a restart loses everything since the start). A policy that fsyncs later (`everysec`, `no`)
    passes with the risk spelled out, like a channel left unconfigured: it is a trade-off an operator may have to
    make (managed services that offer only `everysec`), and a check that can never turn green teaches people to
    ignore the doctor's exit code."""
    if not aof_on:
        return CheckResult("redis", False, f"{where}: AOF is off", f"enable `appendonly yes` with {FSYNC_ALWAYS}")
    if isinstance(appendfsync, FsyncUnknown):
        detail = f"{where}, AOF on; its fsync policy is unknown ({appendfsync.why})"
        return CheckResult("redis", True, detail, f"make sure it runs with {FSYNC_ALWAYS}; {FSYNC_TRADE_OFF}")
    if appendfsync == "always":
        return CheckResult("redis", True, f"{where}, AOF on, appendfsync always (on disk before each reply)")
    window = FSYNC_LOSS_WINDOW.get(appendfsync, "the writes not yet fsynced")
    detail = (
        f"{where}, AOF on, but appendfsync {appendfsync}: a crash of Redis or its machine (kill -9, OOM kill, power "
        f"loss) can lose {window} of commits it already acknowledged, and the readers have committed those "
        "events' Kafka offsets, so they are lost for good"
    )
    fix = (
        "`CONFIG SET appendfsync always` and `CONFIG REWRITE` (or redis.conf; the local stack's Redis takes it on "
        f"its next start, `herald stack down` and `up`): {FSYNC_TRADE_OFF}"
    )
    return CheckResult("redis", True, detail, fix)


async def check_ray(settings: Settings) -> CheckResult:
    address = settings.ray_address
    if not address:
        return CheckResult("ray", True, "in-process (ray.init on demand)")
    if address == "auto":
        # The address `herald run` would join (herald/cluster.py), so doctor checks the same cluster.
        try:
            address = resolve_ray_address(address)
        except ClusterJoinError as exc:
            return CheckResult("ray", False, str(exc), "run it on a cluster node (`ray exec`) or unset ray_address")
    host, port = _host_port(address)
    timeout_s = doctor_timeout_s(settings)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=timeout_s)
    except (OSError, TimeoutError) as exc:
        detail = f"Ray at {host}:{port} unreachable after {timeout_s:g}s: {exc or 'timed out'}"
        return CheckResult("ray", False, detail, "start Ray (`herald stack up --with-ray` or `ray start --head`)")
    writer.close()
    await writer.wait_closed()
    return CheckResult("ray", True, f"Ray at {host}:{port} accepts connections")


def _host_port(address: str) -> tuple[str, int]:
    """'10.0.0.1:6379', 'ray://head:10001' or a bare host -> (host, port)."""
    parts = urlsplit(address if "://" in address else f"//{address}")
    return parts.hostname or "127.0.0.1", parts.port or RAY_DEFAULT_GCS_PORT
