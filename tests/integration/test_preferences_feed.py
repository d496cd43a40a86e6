"""The user-preferences feed on real Redis: the last value of a user wins, a tombstone forgets, a bad record is
dead-lettered with the reason and leaves the stored preferences alone."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from herald import keys
from herald.config import Settings
from herald.preferences_feed import PreferencesFeed

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    partition: int = 0
    offset: int = 0


async def test_the_feed_stores_forgets_and_dead_letters(settings: Settings) -> None:
    client = aioredis.Redis.from_url(settings.redis_url)
    a, b = f"pf-{uuid.uuid4().hex[:6]}", f"pf-{uuid.uuid4().hex[:6]}"
    rejected: list[tuple[Any, str]] = []

    async def dead_letter(record: Any, reason: str) -> None:
        rejected.append((record, reason))

    feed = PreferencesFeed(client, dead_letter)
    try:
        await feed.apply(
            [
                Record(a.encode(), orjson.dumps({"digest": "hourly"}), offset=1),
                Record(a.encode(), orjson.dumps({"digest": "daily", "timezone": "Europe/Berlin"}), offset=2),
                Record(b.encode(), orjson.dumps({"channels": {"*": {"SMS": False}}}), offset=3),
            ]
        )
        assert orjson.loads(await client.get(keys.preferences_key(a)) or b"") == {
            "digest": "daily",
            "timezone": "Europe/Berlin",
        }
        await feed.apply(
            [
                Record(b.encode(), None, offset=4),
                Record(a.encode(), orjson.dumps({"quietHours": {"start": "25:00", "end": "07:00"}}), offset=5),
                Record(None, orjson.dumps({}), offset=6),
                Record(a.encode(), b"{not json", offset=7),
            ]
        )
        assert await client.get(keys.preferences_key(b)) is None, "the tombstone did not forget"
        assert orjson.loads(await client.get(keys.preferences_key(a)) or b"")["digest"] == "daily"
        assert [r.offset for r, _ in rejected] == [5, 6, 7]
        assert "quietHours.start" in rejected[0][1]
        assert "key" in rejected[1][1]
        assert "not valid JSON" in rejected[2][1]
        assert (feed.counters.stored, feed.counters.forgotten, feed.counters.dead_lettered) == (2, 1, 3)
    finally:
        await client.delete(keys.preferences_key(a), keys.preferences_key(b))
        await client.aclose()
