"""Redis clients whose connection pool waits for a free connection instead of failing, and that retry a command
once more on a fresh connection when the pooled one turns out dead.

redis-py 8 caps a pool at 100 connections and raises "Too many connections" past it; a gateway replaying 200
clients that connected in the same second would fail some of them. A blocking pool of a bounded size queues
the excess for up to `timeout_s` and still fails loudly if Redis is truly stuck.

After a Redis restart every pooled connection is dead; without a retry the first command on each fails
("Connection closed by server"). Retrying is safe for everything Herald sends: reads are reads, and a commit
whose reply was lost is refused when sent again (its sequence number has moved and its event ids are seen),
so the writer reloads and finds its own change."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

MAX_CONNECTIONS = 64
WAIT_FOR_CONNECTION_S = 10.0
RETRIES = 3  # over ~0.05-0.4 s: a restarted Redis or a dropped connection, not a long outage


def redis_client(
    url: str, *, max_connections: int = MAX_CONNECTIONS, timeout_s: float = WAIT_FOR_CONNECTION_S, **options: Any
) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_s,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.4), RETRIES),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        **options,
    )
    # from_pool: closing the client closes its pool.
    return aioredis.Redis.from_pool(pool)
