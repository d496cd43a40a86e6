"""The aggregator's memory of its users against the real Redis commit script: a second writer behind its back
and a redelivered event are refused by the script, and the result is exactly-once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from herald.applier import InboxApplier
from herald.config import Settings
from herald.events import NotificationEvent
from herald.store_redis import RedisStore
from tests.support.events import BASE_TIME, make_event

pytestmark = pytest.mark.integration

NOW_MS = int(BASE_TIME.timestamp() * 1000)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[RedisStore]:
    redis_store = RedisStore.from_url(settings.redis_url)
    yield redis_store
    await redis_store.close()


async def test_two_writers_and_a_redelivery_still_count_each_like_once(store: RedisStore) -> None:
    user = f"sw-{uuid.uuid4().hex[:10]}"
    first = InboxApplier(store, clock_ms=lambda: NOW_MS)
    second = InboxApplier(store, clock_ms=lambda: NOW_MS)

    def like(actor: str, seconds: int) -> NotificationEvent:
        return make_event(user=user, actor=actor, actor_name=actor, at=timedelta(seconds=seconds), event_id=actor)

    await first.apply([like("a1", 0)])
    await first.apply([like("a2", 1)])  # from memory
    assert first.cache.hits == 1
    await second.apply([like("a3", 2)])  # behind the first writer's back
    report = await first.apply([like("a4", 3), like("a2", 1)])  # stale memory and a redelivered a2
    assert report.conflicts_retried == 1
    assert (report.applied, report.duplicates) == (1, 1)
    [note] = await store.notifications_after(user, 0, 10)
    assert (note["count"], note["version"], note["text"]) == (4, 4, "a1 and 3 others liked your post")
