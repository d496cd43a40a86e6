"""The application's reads, deletes and bulk reads against the real Redis commit script: application ids
resolved to the group that holds them, reads ordered against new versions, bulk reads up to a time."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from herald.applier import ApplyReport, InboxApplier
from herald.config import Settings
from herald.events import decode_event
from herald.store import INBOX_CHANGE
from herald.store_redis import RedisStore
from tests.support import app_events
from tests.support.events import BASE_TIME
from tests.support.live_tap import Tap, present

pytestmark = pytest.mark.integration
NOW_MS = int(BASE_TIME.timestamp() * 1000)
_offsets = itertools.count()


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[RedisStore]:
    redis_store = RedisStore.from_url(settings.redis_url, outbox_shards=1)
    yield redis_store
    await redis_store.close()


@pytest.fixture
def user() -> str:
    return f"app-{uuid.uuid4().hex[:10]}"


async def apply(store: RedisStore, *wires: dict[str, Any]) -> ApplyReport:
    aggregator = InboxApplier(store, clock_ms=lambda: NOW_MS, delivery_channels=("IN_APP",))
    offset = uuid.uuid4().hex  # a fresh "partition" per call, so ids never collide across tests
    events = [decode_event(orjson.dumps(w), fallback_event_id=f"kafka:t:{offset}:{next(_offsets)}") for w in wires]
    report = await aggregator.apply(events)
    assert not report.rejected, report.rejected
    return report


async def test_reads_and_deletes_by_application_id(store: RedisStore, user: str) -> None:
    await apply(
        store,
        app_events.prisma_created(user, actor="john", notification_id="a1"),
        app_events.prisma_created(user, actor="sarah", notification_id="a2", at=timedelta(minutes=1)),
        app_events.prisma_created(user, actor="mike", kind="GRADE_POSTED", entity_id="p2", notification_id="a3"),
    )
    notes = await store.notifications_after(user, 0, 10)
    group = next(n for n in notes if n["count"] == 2)
    assert {n["id"] for n in notes} == {group["id"], "a3"}
    await apply(store, app_events.read(user, "a2"))  # folded into john's group
    assert await store.unread_count(user) == 1
    assert await store.mark_read(user, ["a3"]) == 0  # the gateway's mark_read resolves too
    await apply(store, app_events.deleted(user, "a1"))
    assert [n["id"] for n in await store.notifications_after(user, 0, 10)] == ["a3"]


async def test_a_read_before_a_new_version_in_one_batch(store: RedisStore, user: str) -> None:
    await apply(store, app_events.prisma_created(user, actor="john", notification_id="a1"))
    await apply(
        store,
        app_events.read(user, "a1"),
        app_events.prisma_created(user, actor="sarah", notification_id="a2", at=timedelta(minutes=1)),
    )
    (note,) = await store.notifications_after(user, 0, 10)
    assert (note["count"], note["read"]) == (2, False)
    await apply(
        store,
        app_events.prisma_created(user, actor="mike", notification_id="a3", at=timedelta(minutes=2)),
        app_events.read(user, "a3"),
    )
    (note,) = await store.notifications_after(user, 0, 10)
    assert (note["count"], note["read"]) == (3, True)


async def test_bulk_read_up_to_a_time_then_all(store: RedisStore, user: str) -> None:
    await apply(
        store,
        app_events.prisma_created(user, actor="a", kind="EARLY", at=timedelta(minutes=0)),
        app_events.prisma_created(user, actor="b", kind="LATE", at=timedelta(minutes=10)),
    )
    cutoff = (BASE_TIME + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    await apply(store, app_events.bulk_read(user, before=cutoff))
    assert [n["type"] for n in await store.notifications_after(user, 0, 10) if not n["read"]] == ["LATE"]
    await apply(store, app_events.bulk_read(user))
    assert await store.unread_count(user) == 0


async def test_inbox_change_is_published_to_the_users_gateway(store: RedisStore, settings: Settings, user: str) -> None:
    """Reads and deletes through Kafka are pushed live, so connected clients hear of them."""
    await apply(store, app_events.prisma_created(user, actor="a", kind="ONE", notification_id="x1"))
    client = aioredis.Redis.from_url(settings.redis_url)
    gateway = f"gw-{user}"
    try:
        await present(client, user, **{gateway: NOW_MS + 60_000})
        async with Tap(client, [gateway]) as tap:
            await apply(store, app_events.read(user, "x1"), app_events.deleted(user, "x1"))
            await tap.collect(1)
    finally:
        await client.aclose()
    [[entry]] = tap.messages[gateway]
    assert entry.inbox == {"kind": INBOX_CHANGE, "read": ["x1"], "deleted": ["x1"], "all": False, "before": None}
    assert entry.unread == 0
