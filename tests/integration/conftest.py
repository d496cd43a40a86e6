"""Real Kafka and Redis from the local stack, reached through session fixtures and factory fixtures.

The stack must already run (`herald stack up`): a missing stack fails the tier with instructions, it does not
skip it, so a green run always means the integration tests ran.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from herald.config import Settings
from herald.errors import BrokerUnavailableError
from herald.kafka import close_client, make_admin, start_bounded
from tests.support.waiting import eventually

ConsumerFactory = Callable[..., Awaitable[AIOKafkaConsumer]]
TopicFactory = Callable[..., Awaitable[str]]
STACK_HINT = "the local stack is not running: start it with `herald stack up` (check with `herald doctor`)"


@pytest.fixture(scope="session")
def kafka_bootstrap(settings: Settings) -> str:
    return settings.kafka_bootstrap


@pytest.fixture(scope="session")
async def admin(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    client = make_admin(settings)
    try:
        await start_bounded(client, settings, "integration tests")
    except BrokerUnavailableError as exc:
        pytest.fail(f"{STACK_HINT}\n{exc}", pytrace=False)
    yield client
    await close_client(client)


@pytest.fixture
async def make_consumer(kafka_bootstrap: str) -> AsyncIterator[ConsumerFactory]:
    """Plain aiokafka consumers (not Herald code), reading from the beginning, closed at teardown."""
    consumers: list[AIOKafkaConsumer] = []

    async def factory(*topics: str, **options: Any) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            *topics,
            **{
                "bootstrap_servers": kafka_bootstrap,
                "group_id": f"test-{uuid.uuid4().hex[:8]}",
                "auto_offset_reset": "earliest",
                "enable_auto_commit": False,
                **options,
            },
        )
        consumers.append(consumer)
        await consumer.start()
        return consumer

    yield factory
    for consumer in consumers:
        await consumer.stop()


@pytest.fixture
async def fresh_topic(admin: AIOKafkaAdminClient) -> AsyncIterator[TopicFactory]:
    """Create uniquely named topics for one test; deleted afterwards."""
    created: list[str] = []

    async def factory(prefix: str = "test", partitions: int = 3, configs: dict[str, str] | None = None) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        response = await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])
        errors = [e for e in response.to_object()["topic_errors"] if e["error_code"] != 0]
        assert not errors, errors
        created.append(name)
        # CreateTopics answers before every broker's metadata lists the topic: wait until a describe shows
        # all its partitions, or a test reading it at once may find it missing.
        await eventually(
            lambda: admin.describe_topics([name]),
            lambda described: len(described[0].get("partitions") or []) == partitions,
            timeout_s=30,
            interval_s=0.05,
            what=f"topic {name} visible with {partitions} partitions",
        )
        return name

    yield factory
    if created:
        await admin.delete_topics(created)


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=settings.connect_timeout_s)
    try:
        await client.ping()
    except (OSError, aioredis.ConnectionError) as exc:
        await client.aclose()
        pytest.fail(f"{STACK_HINT}\nRedis at {settings.redis_url}: {exc}", pytrace=False)
    yield client
    await client.aclose()
