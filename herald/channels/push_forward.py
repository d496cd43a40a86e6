"""Hands push deliveries to an existing push service through a Kafka topic instead of sending them here.

The record is keyed by the user (one partition per user keeps a user's notifications in order for the consumer)
and carries the delivery id as a header too, so a consumer can discard a repeat without parsing the value.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from herald.channels.base import ChannelProvider, DeliveryJob, RetryPolicy
from herald.config import Settings
from herald.errors import BrokerUnavailableError, DeliveryError
from herald.kafka import close_client, make_producer, start_bounded


def forward_record(job: DeliveryJob) -> dict[str, Any]:
    record: dict[str, Any] = {"deliveryId": job.delivery_id, "userId": job.user_id, "notification": job.payload}
    if job.recipient is not None and job.recipient.push_subscriptions:
        record["subscriptions"] = list(job.recipient.push_subscriptions)
    return record


class PushForwardProvider(ChannelProvider):
    channel = "PUSH"

    def __init__(
        self,
        settings: Settings,
        topic: str,
        policy: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], Any] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(policy, sleep=sleep, rng=rng)
        self.topic = topic
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def start(self) -> None:
        async with self._starting:
            if self._producer is not None:
                return
            producer = make_producer(self._settings, client_id="herald-push-forward")
            await start_bounded(producer, self._settings, f"push forwarding to {self.topic}")
            self._producer = producer

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await close_client(producer)

    async def send(self, job: DeliveryJob) -> None:
        if self._producer is None:
            try:
                await self.start()
            except BrokerUnavailableError as exc:
                raise DeliveryError(str(exc), retriable=True) from exc
        assert self._producer is not None
        try:
            await asyncio.wait_for(
                self._producer.send_and_wait(
                    self.topic,
                    value=orjson.dumps(forward_record(job)),
                    key=job.user_id.encode(),
                    headers=[("deliveryId", job.delivery_id.encode())],
                ),
                timeout=self._settings.delivery_timeout_s,
            )
        except TimeoutError as exc:
            raise DeliveryError(f"forwarding to {self.topic} timed out", retriable=True) from exc
        except KafkaError as exc:
            raise DeliveryError(
                f"forwarding to {self.topic}: {type(exc).__name__} {exc}", retriable=exc.retriable
            ) from exc
