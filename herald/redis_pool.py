"""Redis clients whose connection pool waits for a free connection instead of failing.

redis-py 8 caps a pool at 100 connections and raises "Too many connections" past it; a gateway replaying 200
clients that connected in the same second would fail some of them. A blocking pool of a bounded size queues
the excess for up to `timeout_s` and still fails loudly if Redis is truly stuck."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

MAX_CONNECTIONS = 64
WAIT_FOR_CONNECTION_S = 10.0


def redis_client(
    url: str, *, max_connections: int = MAX_CONNECTIONS, timeout_s: float = WAIT_FOR_CONNECTION_S, **options: Any
) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout_s, **options
    )
    # from_pool: closing the client closes its pool.
    return aioredis.Redis.from_pool(pool)
