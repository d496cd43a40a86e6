"""The pipeline on real Kafka, Redis and Ray: aggregation rules end to end, and bad input to the DLQ."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from herald.config import Settings
from herald.producer import NotificationProducer
from herald.store_redis import RedisStore
from herald.topics import DLQ_TOPIC, EVENTS_TOPIC, topic_specs
from pipeline import Pipeline
from tests.support.events import event_dict
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.ray]


async def inbox_of(store: RedisStore, user: str) -> list[dict[str, Any]]:
    return await store.notifications_after(user, 0, 100)


async def test_windows_rules_and_texts(
    pipeline: Pipeline, producer: NotificationProducer, store: RedisStore, user_id: str
) -> None:
    five_min_one_s = timedelta(minutes=5, seconds=1)
    events = [
        # POST_LIKED: John twice (counts once), Sarah inside, then Mike just past the window of the first.
        event_dict(user_id, actor="u42", actor_name="John", target="p1"),
        event_dict(user_id, actor="u42", actor_name="John", target="p1", at=timedelta(seconds=10)),
        event_dict(user_id, actor="u43", actor_name="Sarah", target="p1", at=timedelta(minutes=2)),
        event_dict(user_id, actor="u44", actor_name="Mike", target="p1", at=five_min_one_s),
        # POST_COMMENTED: 10 minute window.
        event_dict(user_id, kind="POST_COMMENTED", actor="u42", actor_name="John", target="p2"),
        event_dict(
            user_id, kind="POST_COMMENTED", actor="u43", actor_name="Sarah", target="p2", at=timedelta(minutes=9)
        ),
        # USER_FOLLOWED: one hour window, target is the user.
        *[
            event_dict(
                user_id,
                kind="USER_FOLLOWED",
                actor=f"f{i}",
                actor_name=f"F{i}",
                target=user_id,
                at=timedelta(minutes=10 * i),
            )
            for i in range(4)
        ],
        # A type without a rule: one notification per event, with its own message.
        event_dict(user_id, kind="MENTIONED", actor="u42", message="John mentioned you in a comment"),
        event_dict(user_id, kind="MENTIONED", actor="u42", message="John mentioned you again"),
    ]
    await producer.publish_many(events)
    expected = {
        ("John and Sarah liked your post", 2),
        ("Mike liked your post", 1),
        ("John and Sarah commented on your post", 2),
        ("F0 and 3 others started following you", 4),
        ("John mentioned you in a comment", 1),
        ("John mentioned you again", 1),
    }

    def matches(notes: list[dict[str, Any]]) -> bool:
        return {(n["text"], n["count"]) for n in notes} == expected and len(notes) == len(expected)

    notes = await eventually(lambda: inbox_of(store, user_id), matches, timeout_s=60, what="inbox")
    follow = next(n for n in notes if n["type"] == "USER_FOLLOWED")
    assert [a["name"] for a in follow["actors"]] == ["F3", "F2", "F1", "F0"]
    assert await store.unread_count(user_id) == len(expected)


async def test_invalid_events_go_to_dlq_while_valid_flow(
    pipeline: Pipeline, pipeline_settings: Settings, store: RedisStore, user_id: str
) -> None:
    marker = uuid.uuid4().hex
    # Position a DLQ reader at the current end first, so only this test's rejects are read back.
    consumer = AIOKafkaConsumer(bootstrap_servers=pipeline_settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    (dlq_spec,) = [spec for spec in topic_specs(pipeline_settings) if spec.name == DLQ_TOPIC]
    partitions = [TopicPartition(DLQ_TOPIC, p) for p in range(dlq_spec.partitions)]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)
    bad = {
        b"not json " + marker.encode(): "not valid JSON",
        orjson.dumps({"type": "NOTIFICATION_CREATED", "marker": marker}): "userId",
        orjson.dumps(event_dict(user_id, priority="SOMETIMES") | {"marker": marker}): "priority",
        orjson.dumps(event_dict(user_id) | {"timestamp": "yesterday", "marker": marker}): "timestamp",
        b"\xff\xfe" + marker.encode(): "UTF-8",
    }
    raw = AIOKafkaProducer(bootstrap_servers=pipeline_settings.kafka_bootstrap)
    await raw.start()
    try:
        for value in bad:
            await raw.send_and_wait(EVENTS_TOPIC, value, key=user_id.encode())
        await raw.send_and_wait(EVENTS_TOPIC, orjson.dumps(event_dict(user_id)), key=user_id.encode())
    finally:
        await raw.stop()

    await eventually(lambda: inbox_of(store, user_id), lambda n: len(n) == 1, timeout_s=60, what="valid event")

    try:
        found: dict[bytes, str] = {}

        async def collect() -> int:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if marker.encode() in (record.value or b""):
                        headers = dict(record.headers)
                        found[record.value] = headers["herald-dlq-reason"].decode()
            return len(found)

        await eventually(collect, lambda n: n == len(bad), timeout_s=30, interval_s=0, what="DLQ records")
    finally:
        await consumer.stop()
    for value, needle in bad.items():
        assert needle in found[value], (value, found[value])
