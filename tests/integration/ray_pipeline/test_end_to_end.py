"""The three-likes example of docs/architecture.md through the whole system: SDK -> Kafka -> Ray -> Redis ->
Socket.IO client."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
import redis.asyncio as aioredis

from herald import keys
from herald.auth import mint_token
from herald.config import Settings
from herald.producer import NotificationProducer
from pipeline import Pipeline
from tests.integration.gateway_harness import Recorder, wait_until
from tests.support.events import event_dict

pytestmark = [pytest.mark.integration, pytest.mark.ray]


async def _forget_user(settings: Settings, user: str) -> None:
    """user123 is a fixed name: start from an empty inbox whatever earlier runs left in Redis."""
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        stale = [
            k async for k in client.scan_iter(match=keys.user_key(user, "*").replace("{", "\\{").replace("}", "\\}"))
        ]
        if stale:
            await client.delete(*stale)
    finally:
        await client.aclose()


async def test_three_likes_reach_the_client_as_one_growing_notification(
    pipeline: Pipeline, pipeline_settings: Settings, producer: NotificationProducer
) -> None:
    await _forget_user(pipeline_settings, "user123")
    client = Recorder()
    await client.connect(f"http://127.0.0.1:{pipeline_settings.gateway_port}", mint_token(pipeline_settings, "user123"))
    try:
        for minute, (actor, name) in enumerate([("u42", "John"), ("u43", "Sarah"), ("u44", "Mike")]):
            await producer.publish(event_dict("user123", actor=actor, actor_name=name, at=timedelta(minutes=minute)))
            # Each like is its own state change: wait for its version before the next one.
            version = minute + 1
            await wait_until(
                lambda: any(n["version"] == version for n in client.notifications),  # noqa: B023 - awaited here
                timeout_s=60,
                what=f"version {version}",
            )

        await wait_until(lambda: any(n["version"] == 3 for n in client.notifications), timeout_s=60, what="version 3")
    finally:
        await client.client.disconnect()
    final = max(client.notifications, key=lambda n: n["version"])
    assert final["text"] == "John and 2 others liked your post"
    assert (final["version"], final["count"]) == (3, 3)
    assert final["target"]["id"] == "p456"
    assert [a["name"] for a in final["actors"]] == ["Mike", "Sarah", "John"]
    assert {n["id"] for n in client.notifications} == {final["id"]}
    seen = Counter(n["version"] for n in client.notifications)
    assert all(times == 1 for times in seen.values()), seen
