"""The existing application's events, published the way it publishes them (kafkajs: raw JSON, keyed by the
record id, no eventId), through the real pipeline to Redis and to a client that speaks its protocol."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import orjson
import pytest
import socketio
from aiokafka import AIOKafkaProducer

from herald.auth import mint_token
from herald.config import Settings
from herald.directory import RedisUserDirectory, UserProfile
from herald.store_redis import RedisStore
from herald.topics import EVENTS_TOPIC
from pipeline import Pipeline
from tests.support import app_events
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.ray]
WAIT_S = 60


async def publish_like_the_application(settings: Settings, *events: dict[str, Any]) -> None:
    """The application's publishEvent(): key = the record's id or Date.now(), value = JSON.stringify(event)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            key = str(event.get("id") or int(time.time() * 1000)).encode()
            await producer.send_and_wait(EVENTS_TOPIC, orjson.dumps(event), key=key)
    finally:
        await producer.stop()


async def inbox_of(store: RedisStore, user: str) -> list[dict[str, Any]]:
    return await store.notifications_after(user, 0, 100)


class CompatClient:
    """A python-socketio client that speaks the application's protocol and records what it hears."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        for name in (
            "notification:new",
            "notification:count_updated",
            "notification:read",
            "notification:deleted",
            "notification:all_read",
            "notification",
            "unread_count",
            "herald:inbox",
        ):
            self.client.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        async def record(data: Any = None) -> None:
            self.events.append((name, data))

        return record

    def named(self, name: str) -> list[Any]:
        return [data for event, data in self.events if event == name]

    def counts(self) -> list[int]:
        return [int(data["unreadCount"]) for data in self.named("notification:count_updated")]


async def test_application_events_fold_and_reach_its_clients(
    pipeline: Pipeline, pipeline_settings: Settings, store: RedisStore, user_id: str
) -> None:
    directory = RedisUserDirectory.from_url(pipeline_settings.redis_url)
    try:
        # As `herald users import` would: the application's events carry actor ids only.
        await directory.remember([UserProfile("john", "John", None), UserProfile("sarah", "Sarah", None)])
    finally:
        await directory.close()
    client = CompatClient()
    url = f"http://127.0.0.1:{pipeline_settings.gateway_port}"
    token = mint_token(pipeline_settings, user_id)
    await client.client.connect(url, auth={"token": token, "protocol": "compat"}, transports=["websocket"])
    try:
        await eventually(lambda: _value(client.counts()), lambda c: c == [0], timeout_s=WAIT_S, what="first count")
        john = app_events.prisma_created(user_id, actor="john", entity_id="p1", notification_id="app-1")
        sarah = app_events.prisma_created(
            user_id, actor="sarah", entity_id="p1", at=timedelta(minutes=1), notification_id="app-2"
        )
        mike = app_events.prisma_created(user_id, actor="mike", entity_id="p2", notification_id="app-3")
        mike["notification"]["data"] = {"actorName": "Mike"}
        await publish_like_the_application(
            pipeline_settings,
            john,
            sarah,
            mike,
            app_events.prisma_created(
                user_id,
                actor="ops",
                kind="SYSTEM_ALERT",
                entity_type=None,
                entity_id=None,
                priority="CRITICAL",
                channels=("IN_APP", "WEBHOOK"),
                message="Disk full",
                notification_id="app-4",
            ),
            app_events.processor_event(user_id, actor="sarah", kind="POST_COMMENTED", entity_id="p7"),
            app_events.prisma_created(user_id, actor=user_id, entity_id="p1"),  # liked their own post: skipped
        )
        # The application keys records by their own id, so john's and sarah's likes may sit in different
        # partitions and be applied in either order: the text names whoever was applied first.
        pair = {"John and Sarah liked your post", "Sarah and John liked your post"}

        def summary(notes: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
            return {
                (n["type"], (n["target"] or {}).get("id"), n["count"], "PAIR" if n["text"] in pair else n["text"])
                for n in notes
            }

        expected = {
            ("POST_LIKED", "p1", 2, "PAIR"),
            ("POST_LIKED", "p2", 1, "Mike liked your post"),
            ("SYSTEM_ALERT", None, 1, "Disk full"),
            ("POST_COMMENTED", "p7", 1, "Sarah commented on your post"),
        }
        notes = await eventually(
            lambda: inbox_of(store, user_id), lambda n: summary(n) == expected, timeout_s=WAIT_S, what="inbox"
        )
        group = next(n for n in notes if n["count"] == 2)
        assert group["target"] == {"type": "post", "id": "p1"}
        assert next(n for n in notes if n["type"] == "SYSTEM_ALERT")["id"] == "app-4"  # the application's id

        # Its clients hear notification:new for each, in its shape, and the count after each change.
        def latest_new() -> dict[str, dict[str, Any]]:
            return {n["notification"]["id"]: n["notification"] for n in client.named("notification:new")}

        await eventually(lambda: _value(latest_new()), lambda s: len(s) == 4, timeout_s=WAIT_S, what="4 new")
        await eventually(lambda: _value(client.counts()), lambda c: c[-1:] == [4], timeout_s=WAIT_S, what="count 4")
        shown = latest_new()[group["id"]]
        assert shown["aggregatedCount"] == 2
        assert sorted(shown["aggregatedActors"]) == ["john", "sarah"]
        assert shown["title"] == shown["message"] == group["text"]
        assert (shown["entityType"], shown["entityId"], shown["actionUrl"]) == ("post", "p1", "/posts/p1")

        # Reads and deletes through Kafka, naming the application's ids: sarah's like was folded into the group.
        await publish_like_the_application(pipeline_settings, app_events.read(user_id, "app-2"))
        await eventually(lambda: _value(client.counts()), lambda c: c[-1:] == [3], timeout_s=WAIT_S, what="count 3")
        assert {"notificationId": group["id"]} in client.named("notification:read")
        await publish_like_the_application(pipeline_settings, app_events.deleted(user_id, "app-3"))
        await eventually(
            lambda: _value(client.named("notification:deleted")),
            lambda d: len(d) == 1,
            timeout_s=WAIT_S,
            what="deleted",
        )
        await publish_like_the_application(pipeline_settings, app_events.bulk_read(user_id))
        await eventually(lambda: _value(client.counts()), lambda c: c[-1:] == [0], timeout_s=WAIT_S, what="count 0")
        assert client.named("notification:all_read")
        assert await store.unread_count(user_id) == 0
        assert [n["type"] for n in await inbox_of(store, user_id)].count("POST_LIKED") == 1
        assert not client.named("notification")
        assert not client.named("herald:inbox")
    finally:
        await client.client.disconnect()


async def _value(value: Any) -> Any:
    return value
