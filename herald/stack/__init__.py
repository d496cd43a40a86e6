"""The local development stack (Kafka KRaft via java, Redis, optional Ray head): start, stop, inspect.

Python API, used by the CLI, the tests and the demo:
    up(settings=None, *, with_ray=False, only=None) -> StackInfo
    down(settings=None, *, only=None) -> list[StopResult]
    status(settings=None) -> list[ServiceStatus]
    env_vars(settings=None) -> dict[str, str]
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from herald.config import Settings, load_settings
from herald.errors import StackError
from herald.stack import state
from herald.stack.kafka import KafkaBroker
from herald.stack.ray_head import RayHead
from herald.stack.redis import RedisServer
from herald.stack.service import Service, ServiceStatus, StartResult

__all__ = [
    "KafkaBroker",
    "RayHead",
    "RedisServer",
    "ServiceStatus",
    "Stack",
    "StackInfo",
    "StartResult",
    "StopResult",
    "down",
    "env_vars",
    "services",
    "status",
    "up",
]

SERVICE_NAMES = ("redis", "kafka", "ray")


@dataclass(frozen=True)
class StackInfo:
    """Where the running stack is, and what `up` did to get there."""

    kafka_bootstrap: str
    redis_url: str
    ray_address: str | None
    state_dir: Path
    stack_file: Path
    started: list[StartResult] = field(default_factory=list)


@dataclass(frozen=True)
class StopResult:
    """`graceful` is None when nothing ran, False when SIGKILL was needed."""

    name: str
    pid: int | None
    graceful: bool | None


@dataclass(frozen=True)
class Stack:
    """The services of one state dir."""

    redis: RedisServer
    kafka: KafkaBroker
    ray: RayHead

    @classmethod
    def of(cls, settings: Settings) -> Stack:
        return cls(RedisServer(settings), KafkaBroker(settings), RayHead(settings))

    def by_name(self) -> dict[str, Service]:
        """In start order: Redis is quick, Kafka slow, Ray optional."""
        return {"redis": self.redis, "kafka": self.kafka, "ray": self.ray}


def services(settings: Settings) -> dict[str, Service]:
    """Every service of the stack by name, in start order."""
    return Stack.of(settings).by_name()


def _select(only: Collection[str] | None, default: Collection[str]) -> list[str]:
    names = list(default if only is None else only)
    unknown = sorted(set(names) - set(SERVICE_NAMES))
    if unknown:
        raise StackError(f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(SERVICE_NAMES)}")
    return [n for n in SERVICE_NAMES if n in names]


def up(settings: Settings | None = None, *, with_ray: bool = False, only: Collection[str] | None = None) -> StackInfo:
    """Start (or reuse) Redis and Kafka, and a Ray head when `with_ray`; record them in the stack file."""
    settings = settings or load_settings()
    stack = Stack.of(settings)
    svcs = stack.by_name()
    names = _select(only, ["redis", "kafka", "ray"] if with_ray else ["redis", "kafka"])
    with state.locked(settings):
        # Check every port before starting anything, so a conflict does not leave half a stack behind.
        for name in names:
            svcs[name].check_startable()
        started = [svcs[name].start() for name in names]
        return _record(settings, stack, started)


def _record(settings: Settings, stack: Stack, started: list[StartResult]) -> StackInfo:
    data = state.load_stack_file(settings)
    kafka, redis_server, ray = stack.kafka, stack.redis, stack.ray
    ray_address = ray.address if ray.is_running() else None
    values = data["settings"]
    values["kafka_bootstrap"] = kafka.bootstrap
    values["redis_url"] = redis_server.url
    values["jwt_secret"] = state.dev_jwt_secret(data)
    if ray_address:
        values["ray_address"] = ray_address
    else:
        values.pop("ray_address", None)
    data["services"] = {
        svc.name: {"pid": svc.pid(), "port": svc.port, "log": str(svc.log_path)}
        for svc in stack.by_name().values()
        if svc.pid() is not None
    }
    state.save_stack_file(settings, data)
    return StackInfo(
        kafka_bootstrap=kafka.bootstrap,
        redis_url=redis_server.url,
        ray_address=ray_address,
        state_dir=settings.state_dir,
        stack_file=settings.stack_file,
        started=started,
    )


def down(settings: Settings | None = None, *, only: Collection[str] | None = None) -> list[StopResult]:
    """Stop what runs (Ray, then Kafka, then Redis); stopping a stopped stack is fine."""
    settings = settings or load_settings()
    stack = Stack.of(settings)
    svcs = stack.by_name()
    results = []
    with state.locked(settings):
        for name in reversed(_select(only, SERVICE_NAMES)):
            svc = svcs[name]
            pid = svc.pid()
            results.append(StopResult(name, pid, svc.stop()))
        if settings.stack_file.exists():
            _record(settings, stack, [])
    return results


def status(settings: Settings | None = None) -> list[ServiceStatus]:
    """One row per service: running, stopped, stale (pid file of a dead process) or unhealthy."""
    settings = settings or load_settings()
    return [svc.status() for svc in services(settings).values()]


def env_vars(settings: Settings | None = None) -> dict[str, str]:
    """HERALD_* variables that point a shell at the running stack (`eval "$(herald stack env)"`)."""
    settings = settings or load_settings()
    recorded = state.load_stack_file(settings)["settings"]
    out = {
        "HERALD_KAFKA_BOOTSTRAP": str(recorded.get("kafka_bootstrap", settings.kafka_bootstrap)),
        "HERALD_REDIS_URL": str(recorded.get("redis_url", settings.redis_url)),
    }
    ray_address = recorded.get("ray_address", settings.ray_address)
    if ray_address:
        out["HERALD_RAY_ADDRESS"] = str(ray_address)
    secret = recorded.get("jwt_secret") or (settings.jwt_secret.get_secret_value() if settings.jwt_secret else None)
    if secret:
        out["HERALD_JWT_SECRET"] = str(secret)
    return out
