"""Dead letters on the real broker: listed with stage and reason, redriven into the outbox once however often
the redrive runs."""

from __future__ import annotations

import uuid
from typing import cast

import orjson
import pytest
import redis.asyncio as aioredis

from herald import keys
from herald.config import Settings
from herald.dlq import dlq_headers
from herald.dlq_admin import REDRIVEN_KEY, read_dead_letters, redrive
from herald.kafka import close_client, make_producer, start_bounded
from herald.topics import DLQ_TOPIC

pytestmark = pytest.mark.integration


async def _entries(client: aioredis.Redis, stream: str) -> list[tuple[str, dict[str, str]]]:
    return cast(list[tuple[str, dict[str, str]]], await client.xrange(stream))


async def test_a_failed_delivery_is_listed_and_redriven_into_its_outbox_once(settings: Settings) -> None:
    user = f"dlq-{uuid.uuid4().hex[:8]}"
    delivery_id = f"{user}-n1:1:EMAIL"
    receipt = {"deliveryId": delivery_id, "userId": user, "status": "FAILED", "error": "550 mailbox unavailable"}
    value = orjson.dumps({"receipt": receipt, "payload": {"id": f"{user}-n1", "version": 1, "text": "hi"}})
    producer = make_producer(settings, client_id="test-dlq")
    await start_bounded(producer, settings, "test producer")
    try:
        headers = dlq_headers(reason="550 mailbox unavailable", stage="delivery:EMAIL")
        await (await producer.send(DLQ_TOPIC, value, key=user.encode(), headers=headers))
        await (
            await producer.send(
                DLQ_TOPIC, b"{truncated", key=user.encode(), headers=dlq_headers(reason="bad JSON", stage="reader")
            )
        )
    finally:
        await close_client(producer)

    mine = [d for d in await read_dead_letters(settings) if d.key == user]
    assert [(d.stage, d.reason) for d in mine] == [
        ("delivery:EMAIL", "550 mailbox unavailable"),
        ("reader", "bad JSON"),
    ]
    stream = keys.outbox_key("EMAIL", keys.outbox_shard_of(user, settings.outbox_shards))
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        first = await redrive(settings, mine)
        second = await redrive(settings, mine)
        assert first.redriven == [mine[0].ref]
        assert "malformed" in first.refused[mine[1].ref]
        assert second.redriven == []
        assert second.already == [mine[0].ref]
        entries = [fields for _id, fields in await _entries(client, stream) if fields.get("u") == user]
        assert [e["id"] for e in entries] == [delivery_id], "the delivery did not come back once, with its id"
        assert orjson.loads(entries[0]["d"])["text"] == "hi"
    finally:
        for entry_id, fields in await _entries(client, stream):
            if fields.get("u") == user:
                await client.xdel(stream, entry_id)
        await client.srem(REDRIVEN_KEY, *(d.ref for d in mine))
        await client.aclose()
