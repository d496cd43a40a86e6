"""The outbox on real Redis: entries a dead consumer left pending are reclaimed and delivered by another."""

from __future__ import annotations

import asyncio
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


async def test_delivered_entries_stay_claimed_while_their_outcomes_cannot_be_recorded(settings: Settings) -> None:
    # Kafka away: receipts cannot be written. The deliveries happened, so nobody may reclaim and send them again
    # while this worker retries the recording (docs/reliability.md, Chaos: repeats during broker outages).
    channel = f"T{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    stream = keys.outbox_key(channel, 0)
    failures_left = 20  # at 50 ms a retry (a quarter of the reclaim window) about a second of broker outage
    recorded: list[str] = []

    async def record_once_the_broker_is_back(results: Sequence[tuple[Outcome, DeliveryJob]]) -> None:
        nonlocal failures_left
        if failures_left > 0:
            failures_left -= 1
            raise ConnectionError("KafkaConnectionError: broker unreachable")
        recorded.extend(job.delivery_id for _, job in results)

    reclaim_idle_ms = 200
    try:
        first_provider, other_provider = RecordingProvider(channel), RecordingProvider(channel)
        first = OutboxWorker(
            client,
            first_provider,
            consumer_name="first",
            outbox_shards=1,
            on_outcomes=record_once_the_broker_is_back,
            reclaim_idle_ms=reclaim_idle_ms,
            block_ms=50,
        )
        other = OutboxWorker(
            client,
            other_provider,
            consumer_name="other",
            outbox_shards=1,
            on_outcomes=record_once_the_broker_is_back,
            reclaim_idle_ms=reclaim_idle_ms,
            block_ms=50,
        )
        await first.ensure_groups()
        for i in range(5):
            await client.xadd(stream, {"id": f"n{i}:1:{channel}", "u": "u1", "d": f'{{"id": "n{i}", "version": 1}}'})
        first_task = asyncio.create_task(first.run(until_empty=True))
        await eventually(lambda: _count(first_provider.sent), lambda n: n == 5, timeout_s=10, interval_s=0.01)
        # A second worker now reclaims whatever stays idle past the window while the first one retries.
        other_task = asyncio.create_task(other.run())
        try:
            await asyncio.wait_for(first_task, timeout=30)  # returns once its outcomes are recorded and acked
        finally:
            other.stop()
            await other_task
        assert sorted(recorded) == [f"n{i}:1:{channel}" for i in range(5)]
        assert other_provider.sent == [], "entries delivered again while their first delivery was being recorded"
        assert first.stats.settle_retries == 20
        assert await client.xlen(stream) == 0
    finally:
        await client.delete(stream)
        await client.aclose()


async def _count(items: Sequence[object]) -> int:
    return len(items)
