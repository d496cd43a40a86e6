"""`herald replay` gives back what the running Ray pipeline built: the pipeline applies a workload into db 0, the
replay applies the same records into an empty database of its own, and both hold the same inboxes."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient

from herald.config import Settings
from herald.producer import NotificationProducer
from herald.workload import social_stream
from pipeline import Pipeline
from tests.integration.test_directory import herald
from tests.support import app_events
from tests.support.history import HISTORY_DB, inboxes, redis_url_with_db
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.ray]


async def test_replay_into_an_empty_database_matches_the_pipeline(
    pipeline: Pipeline, producer: NotificationProducer, pipeline_settings: Settings, admin: AIOKafkaAdminClient
) -> None:
    prefix = f"rr{uuid.uuid4().hex[:6]}"
    events: list[dict[str, Any]] = social_stream(
        prefix, events=150, users=6, base=datetime.now(UTC), spread=timedelta(minutes=10)
    )
    users = sorted({str(e["userId"]) for e in events})
    events += [app_events.bulk_read(users[0]), app_events.read(users[1], "nothing-by-this-id")]
    since = datetime.now(UTC) - timedelta(seconds=1)
    results = await producer.publish_many(events)
    wanted: dict[int, int] = {}
    for r in results:
        wanted[r.partition] = max(wanted.get(r.partition, 0), r.offset + 1)

    async def committed() -> dict[int, int]:
        offsets = await admin.list_consumer_group_offsets(pipeline_settings.reader_group)
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == pipeline_settings.events_topic}

    await eventually(
        committed,
        lambda done: all(done.get(p, 0) >= o for p, o in wanted.items()),
        timeout_s=90,
        what="the pipeline's readers committed past the workload",
    )
    built = await inboxes(pipeline_settings, users)
    assert sum(len(i["notifications"]) for i in built.values()) > 0

    empty = redis_url_with_db(pipeline_settings.redis_url, HISTORY_DB)
    client = aioredis.Redis.from_url(empty)
    await client.flushdb(asynchronous=True)
    try:
        started = time.monotonic()
        done = herald(
            "replay",
            "--since",
            since.isoformat(),
            "--json",
            HERALD_REDIS_URL=empty,
            HERALD_EVENTS_TOPIC=pipeline_settings.events_topic,
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["events"] >= len(events)
        replayed = await inboxes(pipeline_settings.model_copy(update={"redis_url": empty}), users)
        assert replayed == built, f"replay took {time.monotonic() - started:.1f}s"
    finally:
        await client.flushdb(asynchronous=True)
        await client.aclose()
