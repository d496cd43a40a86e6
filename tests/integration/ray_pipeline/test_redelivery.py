"""Resetting the readers' offsets to the start replays everything: no count changes, no emit reaches a client."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from actors.reader import READER_GROUP
from herald.auth import mint_token
from herald.config import Settings
from herald.producer import NotificationProducer
from herald.store_redis import RedisStore
from herald.topics import EVENTS_TOPIC
from pipeline import Pipeline
from tests.integration.gateway_harness import Recorder
from tests.support.events import event_dict
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.ray]


async def _group_offsets(settings: Settings, *, reset_to_start: bool) -> tuple[dict[int, int], dict[int, int]]:
    """(committed, end) offsets of the readers' group; optionally rewind the group to the beginning first."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=READER_GROUP, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(EVENTS_TOPIC, p) for p in range(settings.events_partitions)]
        consumer.assign(partitions)
        if reset_to_start:
            await consumer.commit(dict(await consumer.beginning_offsets(partitions)))
        committed = {tp.partition: (await consumer.committed(tp)) or 0 for tp in partitions}
        end = {tp.partition: offset for tp, offset in (await consumer.end_offsets(partitions)).items()}
        return committed, end
    finally:
        await consumer.stop()


@pytest.mark.timeout(600)
async def test_replay_from_start_changes_nothing(
    pipeline: Pipeline,
    pipeline_settings: Settings,
    producer: NotificationProducer,
    store: RedisStore,
    user_id: str,
) -> None:
    await producer.publish_many(
        [event_dict(user_id, actor=f"a{i}", actor_name=f"A{i}", at=timedelta(seconds=i)) for i in range(4)]
        + [event_dict(user_id, kind="MENTIONED", actor="a9", message="hi")]
    )
    before: list[dict[str, Any]] = await eventually(
        lambda: store.notifications_after(user_id, 0, 100),
        lambda notes: sorted(n["count"] for n in notes) == [1, 4],
        timeout_s=60,
        what="inbox before replay",
    )
    unread_before = await store.unread_count(user_id)

    await asyncio.to_thread(pipeline.drain)
    _committed, end = await _group_offsets(pipeline_settings, reset_to_start=True)
    assert sum(end.values()) > 0
    await asyncio.to_thread(pipeline.start)

    client = Recorder()
    cursor = max(n["cursor"] for n in before)
    url = f"http://127.0.0.1:{pipeline_settings.gateway_port}"
    await eventually(_gateway_up(pipeline), lambda up: up, timeout_s=60, what="gateway after restart")
    await client.connect(url, mint_token(pipeline_settings, user_id), since=cursor)
    try:
        await eventually(
            lambda: _group_offsets(pipeline_settings, reset_to_start=False),
            lambda offsets: offsets[0] == offsets[1],
            timeout_s=300,
            interval_s=1,
            what="replay drained",
        )
        after = await store.notifications_after(user_id, 0, 100)
        assert after == before
        assert await store.unread_count(user_id) == unread_before
        # A barrier: one new event after the replay. A user's live pushes arrive in commit order, so anything
        # the replay had pushed to the client would arrive before this one.
        await producer.publish(
            event_dict(user_id, kind="MENTIONED", actor="a8", message="after the replay", event_id=f"{user_id}-ctl")
        )

        async def received() -> list[dict[str, Any]]:
            return list(client.notifications)

        await eventually(received, lambda got: len(got) >= 1, timeout_s=60, what="the event after the replay")
    finally:
        await client.client.disconnect()
    assert [n["text"] for n in client.notifications] == ["after the replay"], "a replayed event reached the client"
    status = await asyncio.to_thread(pipeline.status)
    assert sum(r["duplicates"] for r in status["readers"]) >= 5


def _gateway_up(pipeline: Pipeline) -> Any:
    async def probe() -> bool:
        status = await asyncio.to_thread(pipeline.status)
        return bool(status["gateways"]) and all(g.get("serving") for g in status["gateways"])

    return probe
