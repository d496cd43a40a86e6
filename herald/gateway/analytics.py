"""Publishes NOTIFICATION_READ engagement events to `notification-analytics` off the request path: a bounded
queue drained by one task that starts its Kafka producer lazily; failures are logged and counted, never raised
into a client's handler."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from herald.config import Settings
from herald.errors import HeraldError
from herald.events import EventType, encode_event, validate_event
from herald.kafka import close_client, make_producer, start_bounded
from herald.topics import ANALYTICS_TOPIC

log = logging.getLogger(__name__)

QUEUE_BOUND = 10_000
RESTART_BACKOFF_S = 5.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class AnalyticsCounters:
    published: int = 0
    failed: int = 0
    dropped: int = 0


def read_event(user_id: str, ids: Sequence[str] | None, *, at: datetime, source: str) -> bytes:
    """A NOTIFICATION_READ event in the wire format; `ids` None means "all read" (metadata.all = true).

    A superset: the existing application's analytics consumers read `{notificationId, userId, action,
    channel(s), timestamp}`, so those fields are there too (`notificationId` the first id, null for all)."""
    event = validate_event(
        {
            "type": EventType.NOTIFICATION_READ.value,
            "eventId": uuid.uuid4().hex,
            "userId": user_id,
            "notificationIds": list(ids or []),
            "notificationId": ids[0] if ids else None,
            "action": "read",
            "channel": "IN_APP",
            "timestamp": at,
            "source": source,
            "channels": ["IN_APP"],
            "metadata": {"all": ids is None},
        }
    )
    return encode_event(event)


class AnalyticsPublisher:
    def __init__(
        self,
        settings: Settings,
        *,
        topic: str = ANALYTICS_TOPIC,
        source: str = "gateway",
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._source = source
        self._clock = clock
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=QUEUE_BOUND)
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._retry_at_s = 0.0
        self.counters = AnalyticsCounters()

    def publish_read(self, user_id: str, ids: Sequence[str] | None) -> None:
        """Queue one NOTIFICATION_READ event; never blocks and never raises."""
        record = read_event(user_id, ids, at=self._clock(), source=self._source)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="herald-analytics")
        try:
            self._queue.put_nowait((user_id, record))
        except asyncio.QueueFull:
            self.counters.dropped += 1
            log.warning("analytics queue full; NOTIFICATION_READ for %s dropped", user_id)

    async def idle(self) -> None:
        """Wait until everything queued so far was published or given up on (for tests and shutdown)."""
        await self._queue.join()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        producer, self._producer = self._producer, None
        if producer is not None:
            await close_client(producer)

    async def _drain(self) -> None:
        while True:
            user_id, record = await self._queue.get()
            try:
                await self._send(user_id, record)
            finally:
                self._queue.task_done()

    async def _send(self, user_id: str, record: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._producer is None:
                if loop.time() < self._retry_at_s:
                    raise HeraldError("Kafka producer is backing off after a failed start")
                producer = make_producer(self._settings, client_id="herald-gateway-analytics")
                await start_bounded(producer, self._settings, "starting the analytics producer")
                self._producer = producer
            future = await self._producer.send(self._topic, record, key=user_id.encode())
            await future
            self.counters.published += 1
        except (HeraldError, KafkaError, OSError) as exc:
            self.counters.failed += 1
            if self._producer is None:
                self._retry_at_s = loop.time() + RESTART_BACKOFF_S
            log.warning("publishing NOTIFICATION_READ for %s to %s failed: %s", user_id, self._topic, exc)
