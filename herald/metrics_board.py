"""The cluster's metrics board in Redis: every actor publishes its latest snapshot (herald/metrics.py) into one
hash, `herald:metrics` (source -> JSON), and readers of the board (the gateway's /dashboard) merge the fresh ones.

One field per source, overwritten every few seconds, so the hash stays as small as the set of live actors; a
source that stopped publishing (an actor that died or restarted under a new pid) is left out once stale and
removed after STALE_DELETE_MS by the next reader."""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis

from herald import keys
from herald.metrics import Snapshot, fresh, merge

PUBLISH_INTERVAL_S = 2.0
# A snapshot older than three missed publishes no longer counts: its actor is gone or stuck.
MAX_AGE_MS = 7_000
STALE_DELETE_MS = 600_000


async def publish(client: aioredis.Redis, snapshot: Snapshot) -> None:
    await client.hset(keys.metrics_key(), snapshot["source"], orjson.dumps(snapshot))


async def read_merged(client: aioredis.Redis, *, now_ms: int, max_age_ms: int = MAX_AGE_MS) -> Snapshot:
    """The merge of every fresh snapshot on the board; long-stale fields are deleted on the way."""
    raw: dict[Any, Any] = await client.hgetall(keys.metrics_key())
    snapshots: list[Snapshot] = []
    dead: list[Any] = []
    for field, value in raw.items():
        try:
            snapshot = orjson.loads(value)
        except orjson.JSONDecodeError:
            dead.append(field)
            continue
        if not isinstance(snapshot, dict) or now_ms - int(snapshot.get("at_ms", 0)) > STALE_DELETE_MS:
            dead.append(field)
        else:
            snapshots.append(snapshot)
    if dead:
        await client.hdel(keys.metrics_key(), *dead)
    return merge(fresh(snapshots, now_ms=now_ms, max_age_ms=max_age_ms))
