"""Redis from the OS package (redis-server) on 127.0.0.1:redis_port, with the AOF fsynced before every reply
(docs/architecture.md, "Redis data model"; docs/reliability.md, "Redis crash")."""

from __future__ import annotations

import os
import shutil
import subprocess

import redis

from herald.errors import StackError
from herald.stack import procs
from herald.stack.service import Service


def redis_server_binary() -> str:
    """Path of redis-server; as root install the Debian package when it is missing."""
    found = shutil.which("redis-server")
    if found is not None:
        return found
    if os.name == "posix" and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", "redis-server"],
        ):
            done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)  # noqa: S603
            if done.returncode != 0:
                raise StackError(f"`{' '.join(argv)}` failed:\n{done.stderr[-2000:]}")
        found = shutil.which("redis-server")
    if found is None:
        raise StackError("redis-server not found: run `sudo apt-get install redis-server` (or `scripts/dev setup`)")
    return found


class RedisServer(Service):
    """redis-server in the foreground (daemonize no) but in its own session, so it outlives the CLI."""

    name = "redis"
    marker = "redis-server"
    port_env = "HERALD_REDIS_PORT"
    stop_timeout_s = 15.0
    #: `always`: Redis fsyncs the AOF before it replies, so a commit the aggregator saw succeed survives a crash of
    #: Redis (kill -9, power loss), and the readers may commit the Kafka offsets behind it. With `everysec` up to
    #: about two seconds of acknowledged commits can vanish, and Kafka would not deliver those events again.
    appendfsync = "always"

    @property
    def port(self) -> int:
        return self.settings.redis_port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ready_timeout_s(self) -> float:
        return 20.0

    def ready(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2.0, socket_connect_timeout=2.0)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _launch(self) -> int:
        data_dir = self.settings.state_dir / "redis"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "no",
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--logfile",
            str(self.log_path),
            # The AOF is the durability; RDB snapshots on top would only add fork pauses.
            "--save",
            "",
        ]
        return procs.spawn_detached(argv, log_path=self.log_path.with_suffix(".out"), cwd=data_dir)
