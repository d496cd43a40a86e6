"""Offered load: records sent at a fixed rate by a plain aiokafka producer with Herald's producer options.

The SDK (NotificationProducer) validates each event with pydantic; at 5,000-10,000 events/s on two shared cores
that would make the harness a bottleneck, so the load is encoded here with orjson in the wire format the SDK
writes (same key, headers and producer options) and the reader validates it as usual.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from herald.config import Settings
from herald.kafka import close_client, make_producer, start_bounded

TICK_S = 0.01
HEADERS = [
    ("content-type", b"application/json"),
    ("herald-event-type", b"NOTIFICATION_CREATED"),
    ("herald-schema", b"1"),
]


@dataclass
class Offered:
    rate: float
    seconds: float
    published: int = 0
    errors: int = 0
    publish_s: float = 0.0
    first_send_ns: int = 0
    last_send_ns: int = 0


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode(event: dict[str, Any]) -> tuple[bytes, bytes]:
    return event["userId"].encode(), orjson.dumps(event)


async def offer(
    settings: Settings, topic: str, make: Callable[[int], dict[str, Any]], *, rate: float, seconds: float
) -> Offered:
    """Send `rate * seconds` events built by `make(seq)` (called at send time), spread evenly over `seconds`."""
    result = Offered(rate=rate, seconds=seconds)
    total = int(rate * seconds)
    producer = make_producer(settings, client_id="herald-bench-load")
    await start_bounded(producer, settings, "bench load producer")
    futures: list[asyncio.Future[Any]] = []
    try:
        started = time.perf_counter()
        result.first_send_ns = time.time_ns()
        sent = 0
        while sent < total:
            due = min(total, int((time.perf_counter() - started) * rate) + 1)
            for seq in range(sent, due):
                key, value = encode(make(seq))
                futures.append(await producer.send(topic, value, key=key, headers=HEADERS))
            if due > sent:
                result.last_send_ns = time.time_ns()
            sent = due
            await asyncio.sleep(TICK_S)
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        result.errors = sum(1 for o in outcomes if isinstance(o, BaseException))
        result.publish_s = time.perf_counter() - started
        result.published = sent
    finally:
        await close_client(producer)
    return result


def mention(run: str, user: str, seq: int) -> dict[str, Any]:
    """A MENTIONED event (no aggregation rule: its own notification) stamped with its send time."""
    return {
        "type": "NOTIFICATION_CREATED",
        "eventId": f"{run}-e{seq}",
        "userId": user,
        "notification": {
            "type": "MENTIONED",
            "actor": {"id": "a1", "name": "John"},
            "target": {"type": "post", "id": f"p{seq}"},
            "message": "John mentioned you",
            "data": {"sentNs": time.time_ns()},
        },
        "channels": ["IN_APP"],
        "priority": "NORMAL",
        "timestamp": iso_now(),
        "source": "bench",
    }


def like(run: str, owner: str, post: str, seq: int) -> dict[str, Any]:
    """A like of `post` by a distinct actor: a viral post gets one like per person."""
    return {
        "type": "NOTIFICATION_CREATED",
        "eventId": f"{run}-like{seq}",
        "userId": owner,
        "notification": {
            "type": "POST_LIKED",
            "actor": {"id": f"{run}-fan{seq}", "name": f"Fan {seq}"},
            "target": {"type": "post", "id": post},
            "data": {},
        },
        "channels": ["IN_APP"],
        "priority": "NORMAL",
        "timestamp": iso_now(),
        "source": "bench",
    }
