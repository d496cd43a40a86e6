"""Clients from herald.redis_pool queue for a free connection rather than fail (redis-py 8 raises "Too many
connections" past its pool size, which once refused gateway replays when 200 clients connected at once)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from herald.config import Settings
from herald.redis_pool import redis_client
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def test_more_concurrent_commands_than_connections_all_complete(settings: Settings) -> None:
    client = redis_client(settings.redis_url, max_connections=2, timeout_s=10)
    empty = f"herald-test-empty-{uuid.uuid4().hex}"
    try:
        # Each BLPOP holds a connection for 0.1 s: ten of them must share two connections.
        replies = await asyncio.gather(*(client.blpop([empty], timeout=0.1) for _ in range(10)))
        assert replies == [None] * 10
        assert client.connection_pool.max_connections == 2
    finally:
        await client.aclose()


async def test_a_pool_that_stays_exhausted_fails_loudly(settings: Settings) -> None:
    name = f"herald-test-pool-{uuid.uuid4().hex[:8]}"
    client = redis_client(settings.redis_url, max_connections=1, timeout_s=0.2, client_name=name)
    admin = redis_client(settings.redis_url, decode_responses=True)
    empty = f"herald-test-empty-{uuid.uuid4().hex}"
    try:

        async def hold() -> object:
            return await client.blpop([empty], timeout=2)

        holder = asyncio.create_task(hold())
        await eventually(
            admin.client_list,
            lambda clients: any(c.get("name") == name and c.get("cmd") == "blpop" for c in clients),
            timeout_s=5,
            interval_s=0.01,
            what="the only connection held by BLPOP",
        )
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await client.ping()
        await holder
    finally:
        await client.aclose()
        await admin.aclose()
