"""The producer SDK against a real broker, read back by a plain aiokafka consumer."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from herald.config import Settings, load_settings
from herald.errors import BrokerUnavailableError, InvalidEventError
from herald.events import SCHEMA_VERSION, decode_event, derive_event_id
from herald.kafka import close_client, make_producer, start_bounded
from herald.producer import (
    BATCH_API_MIN_RECORDS,
    NotificationProducer,
    PublishResult,
    SyncNotificationProducer,
    group_by_partition,
)
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


async def test_publish_many_lands_each_key_where_plain_aiokafka_would(
    settings: Settings, fresh_topic: TopicFactory
) -> None:
    topic = await fresh_topic("producer-partitions", partitions=6)
    # Enough events for publish_many to pack its own batches.
    users = [f"user-{i}-{uuid.uuid4().hex[:6]}" for i in range(BATCH_API_MIN_RECORDS + 36)]
    async with NotificationProducer(settings, topic=topic) as producer:
        results = await producer.publish_many([event(user) for user in users])
    plain = make_producer(settings)
    await start_bounded(plain, settings, "reference producer")
    try:
        futures = [await plain.send(topic, b"{}", key=user.encode()) for user in users]
        expected = [metadata.partition for metadata in await asyncio.gather(*futures)]
    finally:
        await close_client(plain)
    assert [r.partition for r in results] == expected
    assert len(set(expected)) > 1


async def test_publish_many_over_several_batches_reports_where_each_event_landed(
    settings: Settings, fresh_topic: TopicFactory, make_consumer: ConsumerFactory
) -> None:
    # ~1 KiB events, 3000 of them on 3 partitions: several 256 KiB batches per partition.
    topic = await fresh_topic("producer-batches", partitions=3)
    users = [f"user-{i}" for i in range(7)]
    events = [event(users[i % 7], eventId=f"e-{i}", seq=i, pad="x" * 800) for i in range(3000)]
    async with NotificationProducer(settings, topic=topic) as producer:
        results = await producer.publish_many(events)
    assert [r.event_id for r in results] == [f"e-{i}" for i in range(3000)]
    assert len({(r.partition, r.offset) for r in results}) == 3000

    consumer = await make_consumer(topic)
    landed: dict[tuple[int, int], tuple[bytes, object]] = {}
    deadline = time.monotonic() + 30
    while len(landed) < 3000 and time.monotonic() < deadline:
        for records in (await consumer.getmany(timeout_ms=1000)).values():
            for record in records:
                landed[record.partition, record.offset] = (record.key, orjson.loads(record.value)["seq"])
    assert len(landed) == 3000
    for i, result in enumerate(results):
        assert landed[result.partition, result.offset] == (users[i % 7].encode(), i)


async def test_concurrent_publish_many_calls_keep_each_calls_order(
    settings: Settings, fresh_topic: TopicFactory
) -> None:
    topic = await fresh_topic("producer-concurrent", partitions=3)
    calls = [[event(f"user-{i % 4}", seq=i, call=c) for i in range(300)] for c in range(3)]
    async with NotificationProducer(settings, topic=topic) as producer:
        outcomes = await asyncio.gather(
            *(producer.publish_many(events) for events in calls), producer.publish(event("u"))
        )
    *many, single = outcomes
    assert isinstance(single, PublishResult)
    positions = {(single.partition, single.offset)}
    for results in many:
        assert isinstance(results, list)
        positions.update((r.partition, r.offset) for r in results)
        for user in range(4):
            offsets = [r.offset for i, r in enumerate(results) if i % 4 == user]
            assert offsets == sorted(offsets)
    assert len(positions) == 3 * 300 + 1


def test_group_by_partition_matches_the_default_partitioner_and_keeps_input_order() -> None:
    keys = [f"user{i % 37}".encode() for i in range(500)]
    partitions = list(range(12))
    groups = group_by_partition(keys, partitions, partitions, DefaultPartitioner())
    for partition, indices in groups.items():
        assert indices == sorted(indices)
        assert all(DefaultPartitioner()(keys[i], partitions, partitions) == partition for i in indices)
    assert sorted(i for indices in groups.values() for i in indices) == list(range(500))

    calls: list[bytes] = []

    def last_partition(key: bytes, all_partitions: list[int], available: list[int]) -> int:
        calls.append(key)
        return all_partitions[-1]

    assert group_by_partition(keys[:5], partitions, partitions, last_partition) == {11: [0, 1, 2, 3, 4]}
    assert calls == keys[:5]


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


async def test_missing_timestamp_is_stamped_by_the_sdk(
    settings: Settings, fresh_topic: TopicFactory, make_consumer: ConsumerFactory
) -> None:
    topic = await fresh_topic("producer-stamp")
    fixed = datetime(2026, 5, 1, 12, tzinfo=UTC)
    async with NotificationProducer(settings, topic=topic, clock=lambda: fixed) as producer:
        data = event("u1")
        del data["timestamp"]
        assert (await producer.publish(data)).offset == 0
    record = await asyncio.wait_for((await make_consumer(topic)).getone(), timeout=30)
    stamped = datetime.fromisoformat(orjson.loads(record.value)["timestamp"].replace("Z", "+00:00"))
    assert stamped == fixed


async def test_unknown_topic_is_a_topic_error(settings: Settings) -> None:
    quick = settings.model_copy(update={"connect_timeout_s": 2.0})
    async with NotificationProducer(quick, topic=f"absent-{uuid.uuid4().hex[:8]}") as producer:
        with pytest.raises(TopicError, match="does not exist"):
            await producer.publish(event("u1"))
        with pytest.raises(TopicError, match="does not exist"):
            await producer.publish_many([event(f"u{i}") for i in range(BATCH_API_MIN_RECORDS)])


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
