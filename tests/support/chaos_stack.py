"""A private Kafka + Redis for a chaos run: the herald/stack services on free ports with their own state dir, so
restarting them never touches the shared local stack that other tests use."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herald.config import Settings, load_settings
from herald.stack import KafkaBroker, RedisServer, procs, state
from herald.stack.service import Service


class PatientKafka(KafkaBroker):
    """After a kill -9 the broker recovers its logs and waits out its own old session (broker.session.timeout.ms)
    before it registers again; on a loaded 2-core box that took over the stack's usual 60 s."""

    def ready_timeout_s(self) -> float:
        return 240.0


@dataclass
class PrivateStack:
    settings: Settings
    redis: RedisServer
    kafka: KafkaBroker
    keep: bool = False

    @classmethod
    def create(cls, *, keep: bool = False, redis_appendfsync: str = "always", **overrides: Any) -> PrivateStack:
        state_dir = Path(tempfile.mkdtemp(prefix="herald-chaos-"))
        kafka_port, controller_port, redis_port = procs.free_port(), procs.free_port(), procs.free_port()
        settings = load_settings(
            state_dir=state_dir,
            kafka_port=kafka_port,
            kafka_controller_port=controller_port,
            redis_port=redis_port,
            kafka_bootstrap=f"127.0.0.1:{kafka_port}",
            redis_url=f"redis://127.0.0.1:{redis_port}/0",
            kafka_heap_mb=384,
            **overrides,
        )
        redis = RedisServer(settings)
        # `everysec` only to see what the Redis kill does to a deployment that kept it (docs/reliability.md).
        redis.appendfsync = redis_appendfsync
        return cls(settings, redis, PatientKafka(settings), keep)

    def up(self) -> None:
        self.redis.start()
        self.kafka.start()

    def kill_redis(self) -> int:
        """kill -9 of redis-server (no shutdown, so nothing is flushed or saved on the way out), then start again
        on the same data dir, which replays the AOF; the new pid. Only what Redis wrote before it replied survives,
        which with `appendfsync always` is every acknowledged commit."""
        return self._kill_and_start(self.redis, timeout_s=30)

    def restart_kafka(self) -> int:
        """kill -9 (no controlled shutdown: the broker just vanishes, as on a crash), then start again on the same
        log dir, which it recovers; returns once metadata answers. What was acknowledged is in the page cache, which
        a process crash does not lose."""
        return self._kill_and_start(self.kafka, timeout_s=30)

    def _kill_and_start(self, service: Service, *, timeout_s: float) -> int:
        pid = service.pid()
        if pid is not None and procs.is_our_process(pid, service.marker):
            os.kill(pid, signal.SIGKILL)
            procs.wait_for(lambda: not procs.pid_alive(pid), timeout_s=10)
        state.remove_pid(self.settings, service.name)
        procs.wait_for(lambda: procs.port_free(service.port), timeout_s=timeout_s)
        return service.start().pid

    def down(self) -> None:
        self.kafka.stop()
        self.redis.stop()
        if not self.keep:
            shutil.rmtree(self.settings.state_dir, ignore_errors=True)
