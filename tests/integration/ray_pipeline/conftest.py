"""One Ray runtime and one running pipeline for the whole session; tests isolate themselves by user id."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import ray

from herald.config import Settings, load_settings
from herald.producer import NotificationProducer
from herald.store_redis import RedisStore
from pipeline import Pipeline, connect_ray

pytestmark = [pytest.mark.integration, pytest.mark.ray]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def pipeline_settings() -> Settings:
    # Small batches keep the kill test's window for mid-stream failures wide; the gateway gets a free port.
    return load_settings(reader_max_records=500, delivery_reclaim_idle_s=5.0, gateway_port=free_port())


@pytest.fixture(scope="session")
def ray_runtime(pipeline_settings: Settings) -> Iterator[None]:
    connect_ray(pipeline_settings)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def pipeline(ray_runtime: None, pipeline_settings: Settings) -> Iterator[Pipeline]:
    running = Pipeline(pipeline_settings, name="test").start()
    yield running
    running.drain()


@pytest.fixture
async def store(pipeline_settings: Settings) -> AsyncIterator[RedisStore]:
    redis_store = RedisStore.from_url(pipeline_settings.redis_url)
    yield redis_store
    await redis_store.close()


@pytest.fixture(scope="session")
async def producer(pipeline_settings: Settings) -> AsyncIterator[NotificationProducer]:
    async with NotificationProducer(pipeline_settings) as sdk:
        yield sdk


@pytest.fixture
def user_id() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"
