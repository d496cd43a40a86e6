"""The commit script's live path on real Redis: what it publishes, to whom, atomically with the commit."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from herald import keys
from herald.applier import InboxApplier
from herald.config import Settings
from herald.events import decode_event
from herald.store import UserChange
from herald.store_memory import MemoryStore
from herald.store_redis import RedisStore
from tests.support import app_events
from tests.support.events import make_event
from tests.support.live_tap import Tap, present

pytestmark = pytest.mark.integration

NOW_MS = 1_800_000_000_000
WAIT_S = 10.0


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def aggregator(settings: Settings) -> AsyncIterator[InboxApplier]:
    store = RedisStore.from_url(settings.redis_url)
    yield InboxApplier(store, clock_ms=lambda: NOW_MS)
    await store.close()


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def test_a_commit_publishes_to_the_gateways_holding_the_user_only(
    redis_client: aioredis.Redis, aggregator: InboxApplier
) -> None:
    here, gone, elsewhere = uid("gw-here"), uid("gw-gone"), uid("gw-else")
    user, other = uid("u"), uid("u")
    await present(redis_client, user, **{here: NOW_MS + 60_000, gone: NOW_MS - 1})
    await present(redis_client, other, **{elsewhere: NOW_MS + 60_000})
    async with Tap(redis_client, [here, gone, elsewhere]) as tap:
        report = await aggregator.apply(
            [make_event(user=user, actor="a1", actor_name="Ann"), make_event(user=uid("nobody"), actor="a2")]
        )
        assert report.applied == 2
        await tap.collect(1)
        await tap.nothing_more()
    [[entry]] = tap.messages[here]
    assert tap.messages[gone] == tap.messages[elsewhere] == []
    [stored] = await aggregator._store.notifications_after(user, 0, 10)
    assert entry.user_id == user
    assert (entry.from_seq, entry.to_seq, entry.unread) == (0, stored["cursor"] + 1, 1)
    assert [n["id"] for n in entry.notes] == [stored["id"]]
    assert entry.notes[0]["text"] == "Ann liked your post"
    # The lapsed claim is forgotten by the commit that found it.
    assert await redis_client.hkeys(keys.presence_key(user)) == [here.encode()]


async def test_one_message_per_gateway_per_call_and_the_sequence_chains(
    redis_client: aioredis.Redis, aggregator: InboxApplier
) -> None:
    gateway = uid("gw")
    users = [uid("u") for _ in range(3)]
    for user in users:
        await present(redis_client, user, **{gateway: NOW_MS + 60_000})
    async with Tap(redis_client, [gateway]) as tap:
        await aggregator.apply([make_event(user=u, actor="a1") for u in users])
        await aggregator.apply([make_event(user=users[0], actor="a2", target="p2")])
        await tap.collect(2)
        await tap.nothing_more()
    first, second = tap.messages[gateway]
    assert sorted(e.user_id for e in first) == sorted(users)
    [again] = second
    before = next(e for e in first if e.user_id == users[0])
    assert again.from_seq == before.to_seq, "each commit starts where the previous one ended"
    assert again.unread == 2


async def test_reads_from_kafka_are_published_with_the_new_count(
    redis_client: aioredis.Redis, aggregator: InboxApplier
) -> None:
    gateway, user = uid("gw"), uid("u")
    await present(redis_client, user, **{gateway: NOW_MS + 60_000})
    await aggregator.apply([make_event(user=user, actor="a1"), make_event(user=user, actor="a2", target="p2")])
    [first, _second] = await aggregator._store.notifications_after(user, 0, 10)
    async with Tap(redis_client, [gateway]) as tap:
        read = decode_event(orjson.dumps(app_events.read(user, first["id"])), fallback_event_id=uid("kafka"))
        await aggregator.apply([read])
        await tap.collect(1)
    [[entry]] = tap.messages[gateway]
    assert entry.notes == ()
    assert entry.unread == 1
    inbox: dict[str, Any] = entry.inbox or {}
    assert inbox["read"] == [first["id"]]
    assert inbox["deleted"] == []


async def test_a_refused_commit_publishes_nothing(redis_client: aioredis.Redis, settings: Settings) -> None:
    gateway, user = uid("gw"), uid("u")
    await present(redis_client, user, **{gateway: NOW_MS + 60_000})
    store = RedisStore.from_url(settings.redis_url)
    try:
        stale = InboxApplier(store, clock_ms=lambda: NOW_MS)
        await stale.apply([make_event(user=user, actor="a1")])
        # Another writer moved the sequence behind this one's back: a commit from the old snapshot is refused.
        async with Tap(redis_client, [gateway]) as tap:
            change = UserChange(user_id=user, expected_seq=0, new_seq=5, seen_event_ids=["x"], live_ids=[])
            assert await store.commit([change], now_ms=NOW_MS) == [False]
            await tap.nothing_more()
    finally:
        await store.close()


@pytest.mark.parametrize("store_kind", ["redis", "memory"])
async def test_a_commit_that_would_apply_an_event_twice_is_refused(settings: Settings, store_kind: str) -> None:
    user = uid("u")
    store: RedisStore | MemoryStore = (
        RedisStore.from_url(settings.redis_url) if store_kind == "redis" else MemoryStore(lambda: NOW_MS)
    )
    try:
        first = UserChange(user_id=user, expected_seq=0, new_seq=1, seen_event_ids=["e1"])
        assert await store.commit([first], now_ms=NOW_MS) == [True]
        # The sequence number matches, but e1 is applied already: a writer that folded on cached state.
        again = UserChange(user_id=user, expected_seq=1, new_seq=3, seen_event_ids=["e2", "e1"], live_ids=[])
        again.notifications.append(
            {
                "id": "n1",
                "version": 1,
                "cursor": 2,
                "userId": user,
                "type": "MENTIONED",
                "text": "hi",
                "actors": [],
                "count": 1,
                "target": None,
                "priority": "NORMAL",
                "createdAt": "2026-11-26T10:00:00.000Z",
                "updatedAt": "2026-11-26T10:00:00.000Z",
            }
        )
        assert await store.commit([again], now_ms=NOW_MS) == [False]
        assert await store.notifications_after(user, 0, 10) == []
        fresh = UserChange(user_id=user, expected_seq=1, new_seq=2, seen_event_ids=["e2"])
        assert await store.commit([fresh], now_ms=NOW_MS) == [True]
    finally:
        if isinstance(store, RedisStore):
            await store.close()


async def test_commits_survive_a_flushed_script_cache(redis_client: aioredis.Redis, aggregator: InboxApplier) -> None:
    """A restarted Redis has no scripts: the store loads them again rather than failing the batch."""
    user = uid("u")
    await aggregator.apply([make_event(user=user, actor="a1")])
    await redis_client.script_flush()
    report = await aggregator.apply([make_event(user=user, actor="a2", at=timedelta(seconds=1))])
    assert report.applied == 1
    [note] = await aggregator._store.notifications_after(user, 0, 10)
    assert note["count"] == 2
