"""The producer SDK against a real broker, read back by a plain aiokafka consumer."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from datetime import UTC, datetime

import orjson
import pytest

from herald.config import Settings, load_settings
from herald.errors import BrokerUnavailableError, InvalidEventError
from herald.events import SCHEMA_VERSION, decode_event, derive_event_id
from herald.producer import NotificationProducer, SyncNotificationProducer
from herald.topics import TopicError
from tests.integration.conftest import ConsumerFactory, TopicFactory

pytestmark = pytest.mark.integration


def event(user: str, **extra: object) -> dict[str, object]:
    return {
        "type": "NOTIFICATION_CREATED",
        "userId": user,
        "notification": {"type": "POST_LIKED", "actor": {"id": "u42", "name": "John"}},
        "channels": ["IN_APP", "PUSH"],
        "timestamp": "2026-11-26T10:00:00.000Z",
        **extra,
    }


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_publish_reaches_a_plain_consumer_intact(
    settings: Settings, fresh_topic: TopicFactory, make_consumer: ConsumerFactory
) -> None:
    topic = await fresh_topic("producer")
    user = f"user-{uuid.uuid4().hex[:8]}"
    async with NotificationProducer(settings, topic=topic) as producer:
        result = await producer.publish(event(user, eventId="e-1", tenant="acme"))
    assert result.topic == topic
    assert result.event_id == "e-1"

    consumer = await make_consumer(topic)
    record = await asyncio.wait_for(consumer.getone(), timeout=30)
    assert (record.partition, record.offset) == (result.partition, result.offset)
    assert record.key == user.encode()
    assert dict(record.headers) == {
        "content-type": b"application/json",
        "herald-event-type": b"NOTIFICATION_CREATED",
        "herald-schema": SCHEMA_VERSION.encode(),
    }
    assert orjson.loads(record.value) == event(user, eventId="e-1", tenant="acme") | {"priority": "NORMAL"} | {
        "metadata": {}
    } | {"notification": {"type": "POST_LIKED", "actor": {"id": "u42", "name": "John"}, "data": {}}}
    assert decode_event(record.value).user_id == user


async def test_publish_many_keeps_per_user_order_and_reports_derived_ids(
    settings: Settings, fresh_topic: TopicFactory, make_consumer: ConsumerFactory
) -> None:
    topic = await fresh_topic("producer-many", partitions=6)
    users = [f"user-{uuid.uuid4().hex[:8]}" for _ in range(5)]
    events = [event(users[i % 5], seq=i) for i in range(200)]
    async with NotificationProducer(settings, topic=topic) as producer:
        results = await producer.publish_many(events)
    assert len(results) == 200
    assert all(r.event_id == derive_event_id(topic, r.partition, r.offset) for r in results)
    by_user: dict[str, list[int]] = {}
    for r, e in zip(results, events, strict=True):
        by_user.setdefault(str(e["userId"]), []).append(r.offset)
    for user, offsets in by_user.items():
        assert offsets == sorted(offsets), user  # same partition, input order
        assert len({r.partition for r, e in zip(results, events, strict=True) if e["userId"] == user}) == 1

    consumer = await make_consumer(topic)
    seen = 0
    deadline = time.monotonic() + 30
    while seen < 200 and time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=1000)
        seen += sum(len(records) for records in batch.values())
    assert seen == 200


async def test_invalid_event_is_rejected_before_anything_is_sent(
    settings: Settings, fresh_topic: TopicFactory, admin: object
) -> None:
    topic = await fresh_topic("producer-invalid")
    async with NotificationProducer(settings, topic=topic) as producer:
        with pytest.raises(InvalidEventError) as caught:
            await producer.publish_many([event("u1"), {"type": "NOTIFICATION_READ"}])
        assert caught.value.field == "userId"
        assert "#1" in caught.value.reason
        # Nothing of the batch went out: the next offset is still 0.
        result = await producer.publish(event("u1"))
    assert result.offset == 0


async def test_missing_timestamp_is_stamped_by_the_sdk(settings: Settings, fresh_topic: TopicFactory) -> None:
    topic = await fresh_topic("producer-stamp")
    fixed = datetime(2026, 5, 1, 12, tzinfo=UTC)
    async with NotificationProducer(settings, topic=topic, clock=lambda: fixed) as producer:
        data = event("u1")
        del data["timestamp"]
        assert (await producer.publish(data)).offset == 0


async def test_unknown_topic_is_a_topic_error(settings: Settings) -> None:
    quick = settings.model_copy(update={"connect_timeout_s": 2.0})
    async with NotificationProducer(quick, topic=f"absent-{uuid.uuid4().hex[:8]}") as producer:
        with pytest.raises(TopicError, match="does not exist"):
            await producer.publish(event("u1"))


async def test_closed_port_fails_within_the_bound() -> None:
    settings = load_settings(kafka_bootstrap=f"127.0.0.1:{closed_port()}", connect_timeout_s=2)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match=r"unreachable after .*herald doctor"):
        async with NotificationProducer(settings) as producer:
            await producer.publish(event("u1"))
    assert time.monotonic() - started < 6


def test_sync_producer(settings: Settings, fresh_topic_sync: str) -> None:
    with SyncNotificationProducer(settings, topic=fresh_topic_sync) as producer:
        first = producer.publish(event("u1"))
        rest = producer.publish_many([event("u2"), event("u3")])
    assert first.topic == fresh_topic_sync
    assert len(rest) == 2


@pytest.fixture
async def fresh_topic_sync(fresh_topic: TopicFactory) -> str:
    return await fresh_topic("producer-sync")
