"""The outbox on real Redis: entries a dead consumer left pending are reclaimed and delivered by another."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis

from herald import keys
from herald.channels.base import DeliveryJob, Outcome
from herald.config import Settings
from herald.outbox import OutboxWorker
from tests.support.providers import RecordingProvider
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

RECLAIM_IDLE_MS = 50


async def test_pending_entries_of_a_dead_consumer_are_reclaimed(settings: Settings) -> None:
    channel = f"T{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    outcomes: list[Outcome] = []

    async def record(results: Sequence[tuple[Outcome, DeliveryJob]]) -> None:
        outcomes.extend(o for o, _ in results)

    stream = keys.outbox_key(channel, 0)
    try:
        dead_provider = RecordingProvider(channel)
        dead = OutboxWorker(client, dead_provider, consumer_name="dead", outbox_shards=1, on_outcomes=record)
        await dead.ensure_groups()
        for i in range(5):
            await client.xadd(stream, {"id": f"n{i}:1:{channel}", "u": "u1", "d": f'{{"id": "n{i}", "version": 1}}'})
        # The dead consumer reads the entries and dies before acknowledging them.
        claimed: Any = await client.xreadgroup(keys.OUTBOX_GROUP, "dead", {stream: ">"}, count=10)
        assert len(claimed[0][1]) == 5

        async def least_idle_ms() -> int:
            pending = await client.xpending_range(stream, keys.OUTBOX_GROUP, min="-", max="+", count=10)
            return min(int(p["time_since_delivered"]) for p in pending)

        # Reclaiming takes entries idle for at least reclaim_idle_ms: wait until they are, not a fixed time.
        await eventually(least_idle_ms, lambda idle_ms: idle_ms >= RECLAIM_IDLE_MS, timeout_s=10, interval_s=0.01)
        survivor_provider = RecordingProvider(channel)
        survivor = OutboxWorker(
            client,
            survivor_provider,
            consumer_name="survivor",
            outbox_shards=1,
            on_outcomes=record,
            reclaim_idle_ms=RECLAIM_IDLE_MS,
        )
        await survivor.run(until_empty=True)
        assert sorted(j.delivery_id for j in survivor_provider.sent) == [f"n{i}:1:{channel}" for i in range(5)]
        assert all(j.attempts_before == 1 for j in survivor_provider.sent)
        assert survivor.stats.reclaimed == 5
        assert all(o.delivered for o in outcomes)
        assert await client.xlen(stream) == 0
        pending = await client.xpending(stream, keys.OUTBOX_GROUP)
        assert pending["pending"] == 0
    finally:
        await client.delete(stream)
        await client.aclose()
