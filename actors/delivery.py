"""DeliveryActor: runs an OutboxWorker for one channel; receipts to `notification-delivery`, failures to the DLQ."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from actors.loops import OwnedLoop
from herald.channels.base import ChannelProvider, DeliveryJob, Outcome, RetryPolicy
from herald.channels.in_app import InAppProvider
from herald.config import Settings
from herald.kafka import make_producer, start_bounded
from herald.outbox import OutboxWorker
from herald.topics import DELIVERY_TOPIC, DLQ_TOPIC

log = logging.getLogger(__name__)


def provider_for(channel: str, settings: Settings) -> ChannelProvider:
    policy = RetryPolicy(max_attempts=settings.delivery_max_attempts)
    providers = {"IN_APP": lambda: InAppProvider(settings.redis_url, policy)}
    if channel not in providers:
        raise ValueError(f"no provider for channel {channel}")
    return providers[channel]()


class DeliveryActor:
    def __init__(self, settings: Settings, channel: str, index: int) -> None:
        self._settings = settings
        self._channel = channel
        self._name = f"delivery-{channel.lower()}-{index}"
        self._redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
        self._worker = OutboxWorker(
            self._redis,
            provider_for(channel, settings),
            consumer_name=self._name,
            outbox_shards=settings.outbox_shards,
            on_outcomes=self._record,
            reclaim_idle_ms=int(settings.delivery_reclaim_idle_s * 1000),
        )
        self._producer: AIOKafkaProducer | None = None
        self._running = False
        self._owner = OwnedLoop()

    async def run(self) -> None:
        """The delivery loop (its own concurrency group); returns after drain()."""
        self._owner.claim()
        self._producer = make_producer(self._settings, client_id=self._name)
        await start_bounded(self._producer, self._settings, "delivery receipts producer")
        self._running = True
        try:
            await self._worker.run()
        finally:
            self._running = False
            await self._producer.stop()

    async def _record(self, results: Sequence[tuple[Outcome, DeliveryJob]]) -> None:
        if self._producer is None:
            raise RuntimeError("delivery producer not started")
        sends = []
        for outcome, job in results:
            key = outcome.user_id.encode()
            sends.append(await self._producer.send(DELIVERY_TOPIC, orjson.dumps(outcome.receipt()), key=key))
            if not outcome.delivered:
                dead = {"receipt": outcome.receipt(), "payload": job.payload}
                headers = [
                    ("herald-dlq-reason", (outcome.error or "delivery failed").encode()[:4000]),
                    ("herald-dlq-stage", f"delivery:{self._channel}".encode()),
                ]
                sends.append(await self._producer.send(DLQ_TOPIC, orjson.dumps(dead), key=key, headers=headers))
        # Acknowledging the outbox entries waits on these, so a failure is never forgotten.
        for future in sends:
            await future

    async def drain(self) -> None:
        async def stop() -> None:
            self._worker.stop()

        await self._owner.run(stop())

    async def health(self) -> dict[str, Any]:
        return {"actor": self._name, "ok": self._running, "pid": os.getpid(), **self._worker.health()}
