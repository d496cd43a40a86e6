"""What the replay, audit and lag tests share: a Redis database of their own (so they may flush it), settings
pointing a CLI at a fresh topic and that database, and applying a topic the way the aggregator actors do."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiokafka import AIOKafkaConsumer, TopicPartition

from herald.applier import InboxApplier
from herald.config import Settings, load_settings
from herald.directory import RedisUserDirectory
from herald.routing import route
from herald.store_redis import RedisStore
from herald.topics import partition_counts

# These tests FLUSHDB this database (never db 0, which the other tests and the demo share).
HISTORY_DB = 13


def redis_url_with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def history_settings(settings: Settings, topic: str) -> Settings:
    """The topic, our own database and a reader group nobody commits to (so no replay is held back)."""
    return load_settings(
        events_topic=topic,
        redis_url=redis_url_with_db(settings.redis_url, HISTORY_DB),
        reader_group=f"test-readers-{uuid.uuid4().hex[:8]}",
    )


def cli_env(settings: Settings) -> dict[str, str]:
    return {
        "HERALD_EVENTS_TOPIC": settings.events_topic,
        "HERALD_REDIS_URL": settings.redis_url,
        "HERALD_READER_GROUP": settings.reader_group,
    }


async def apply_like_the_pipeline(settings: Settings, *, batch: int = 40, aggregators: int = 2) -> int:
    """Read the whole topic in small batches and apply each aggregator's part with an applier of its own, as the
    reader and aggregator actors do (actors/reader.py, actors/aggregator.py); returns the records read."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    store = RedisStore.from_url(settings.redis_url, inbox_capacity=settings.inbox_capacity)
    directory = RedisUserDirectory.from_url(settings.redis_url)
    appliers = [
        InboxApplier(store, clock_ms=lambda: time.time_ns() // 1_000_000, directory=directory)
        for _ in range(aggregators)
    ]
    try:
        count = (await partition_counts(settings, [settings.events_topic]))[settings.events_topic]
        partitions = [TopicPartition(settings.events_topic, p) for p in range(count)]
        end = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        remaining = {tp for tp in partitions if end[tp] > 0}
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=1000, max_records=batch)
            for tp, items in fetched.items():
                records.extend(r for r in items if r.offset < end[tp])
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        for start in range(0, len(records), batch):
            routed = route(records[start : start + batch], shards=settings.shards, actors=aggregators)
            for index, items in routed.per_actor.items():
                await appliers[index].apply_prepared(items)
        return len(records)
    finally:
        await consumer.stop()
        await store.close()
        await directory.close()


async def inboxes(settings: Settings, users: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per user: every notification (without its cursor, which counts commits, not content) and the unread count."""
    store = RedisStore.from_url(settings.redis_url)
    try:
        found = {}
        for user in users:
            notes = await store.notifications_before(user, None, 500)
            found[user] = {
                "notifications": sorted(
                    ({k: v for k, v in n.items() if k != "cursor"} for n in notes), key=lambda n: n["id"]
                ),
                "unread": await store.unread_count(user),
            }
        return found
    finally:
        await store.close()
