"""The Lua scripts against argument lists longer than Lua's unpack() takes (about 8000 values): one user's batch of
5000 events (reader_max_records' ceiling) and reads naming 9000 ids in one batch are applied, not refused with a
script error that would dead-letter the whole batch, valid events of other users included."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import orjson
import pytest

from herald.applier import InboxApplier
from herald.config import Settings
from herald.events import decode_event
from herald.store_redis import RedisStore
from tests.support.events import BASE_TIME, event_dict

pytestmark = pytest.mark.integration
NOW_MS = int(BASE_TIME.timestamp() * 1000)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[RedisStore]:
    redis_store = RedisStore.from_url(settings.redis_url, outbox_shards=1)
    yield redis_store
    await redis_store.close()


async def test_one_user_with_5000_events_and_reads_naming_9000_ids(store: RedisStore) -> None:
    user = f"long-{uuid.uuid4().hex[:10]}"
    applier = InboxApplier(store, clock_ms=lambda: NOW_MS, delivery_channels=("IN_APP",))
    # 5000 likes by distinct actors on distinct posts: 5000 seen ids (10,000 ZADD arguments), 5000 group keys.
    likes = [
        event_dict(user, actor=f"a{i}", target=f"p{i}", at=timedelta(milliseconds=i), event_id=f"{user}-e{i}")
        for i in range(5000)
    ]
    # Nine reads of 1000 ids each (the most one event may name): 9000 ids to resolve for one user.
    reads = [
        {
            "type": "NOTIFICATION_READ",
            "userId": user,
            "eventId": f"{user}-r{r}",
            "notificationIds": [f"app-{r}-{i}" for i in range(1000)],
            "timestamp": BASE_TIME.isoformat(),
        }
        for r in range(9)
    ]
    events = [decode_event(orjson.dumps(w)) for w in [*likes, *reads]]

    report = await applier.apply(events)

    assert not report.rejected, report.rejected[:3]
    assert report.applied == len(events)
    assert len(await store.notifications_after(user, 0, 10_000)) == 500  # capped at inbox_capacity
    again = await InboxApplier(store, clock_ms=lambda: NOW_MS, delivery_channels=("IN_APP",)).apply(events)
    assert again.duplicates == len(events)  # 5009 ids looked up in the seen set through slices
