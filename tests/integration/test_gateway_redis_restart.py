"""The live path across a Redis restart: a private redis-server (AOF on) is stopped and started again under a
gateway with a connected client; the client stays connected and gets what was committed before and after."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from herald.auth import mint_token
from herald.config import Settings
from herald.errors import StoreError
from herald.stack.redis import redis_server_binary
from tests.integration.gateway_harness import Seeder, connected, gateway_settings, new_user, running_gateway, wait_until
from tests.support.events import make_event
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        argv += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


async def _reachable(url: str) -> bool:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        return bool(await client.ping())
    except (OSError, aioredis.ConnectionError):
        return False
    finally:
        await client.aclose()


@pytest.mark.timeout(120)
async def test_a_client_stays_live_across_a_redis_restart(private_redis: PrivateRedis) -> None:
    settings: Settings = gateway_settings().model_copy(update={"redis_url": private_redis.url})
    await eventually(lambda: _reachable(private_redis.url), bool, timeout_s=20, interval_s=0.1, what="redis up")
    seeder = Seeder(settings)
    user = new_user("restart")
    try:
        async with running_gateway(settings) as (gw, url), connected(url, mint_token(settings, user)) as client:
            await seeder.apply(make_event(user=user, actor="ann", actor_name="Ann", target="p1"))
            await wait_until(lambda: len(client.notifications) == 1, what="the notification before the restart")
            await asyncio.to_thread(private_redis.stop)
            await asyncio.to_thread(private_redis.start)
            await eventually(
                lambda: _reachable(private_redis.url), bool, timeout_s=20, interval_s=0.1, what="redis back"
            )
            # The commit may land before the gateway is subscribed again: then the re-subscription reads it back.
            await eventually(
                lambda: _apply(seeder, user), lambda done: done, timeout_s=30, interval_s=0.5, what="a commit after"
            )
            await wait_until(lambda: len(client.notifications) == 2, timeout_s=30, what="the notification after")
            assert client.client.connected
            assert sorted(n["text"] for n in client.notifications) == ["Ann liked your post", "Bob liked your post"]
            await wait_until(lambda: gw.health()["subscribed"], timeout_s=30, what="subscribed again")
            assert gw.counters.resubscriptions >= 1
    finally:
        await seeder.close()


async def _apply(seeder: Seeder, user: str) -> bool:
    """Apply the second like once; False while Redis still refuses (the store raises StoreError)."""
    try:
        await seeder.apply(make_event(user=user, actor="bob", actor_name="Bob", target="p2"))
    except StoreError:
        return False
    return True
