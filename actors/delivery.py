"""DeliveryActor: runs an OutboxWorker for one channel; receipts to `notification-delivery`, failures to the DLQ."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import orjson

from actors.loops import OwnedLoop, node_id
from actors.metrics_export import MetricsExport, source_name
from herald import metrics
from herald.channels.base import ChannelProvider, DeliveryJob, Outcome
from herald.channels.breaker import CircuitBreaker
from herald.channels.registry import build_provider
from herald.config import Settings
from herald.delivery_gate import DeliveryGate
from herald.dlq import delivery_stage, dlq_headers
from herald.outbox import OutboxWorker
from herald.producer import OutgoingRecord, RecordSender
from herald.push_subscriptions import PushSubscriptionStore
from herald.redis_pool import redis_client
from herald.schedule import Schedule
from herald.topics import DELIVERY_TOPIC, DLQ_TOPIC

log = logging.getLogger(__name__)
RECEIPT_HEADERS = [("content-type", b"application/json")]


def provider_for(channel: str, settings: Settings) -> ChannelProvider:
    """The channel's provider (herald/channels/registry.py); the pipeline starts actors for configured ones only."""
    provider = build_provider(channel, settings)
    if provider is None:
        raise ValueError(f"channel {channel} is not configured")
    return provider


class DeliveryActor:
    def __init__(self, settings: Settings, channel: str, index: int) -> None:
        self._settings = settings
        self._channel = channel
        self._name = f"delivery-{channel.lower()}-{index}"
        self._redis = redis_client(settings.redis_url, decode_responses=True)
        gate = DeliveryGate(
            self._redis,
            channel,
            clock=time.time,
            hourly_limit=settings.delivery_hourly_limits.get(channel),
            digest_below=settings.email_digest_min_priority,
            push_subscriptions=PushSubscriptionStore(self._redis) if channel == "PUSH" else None,
        )
        provider = provider_for(channel, settings)
        provider.breaker = CircuitBreaker(
            threshold=settings.delivery_breaker_threshold, reset_after_s=settings.delivery_breaker_reset_s
        )
        self._worker = OutboxWorker(
            self._redis,
            provider,
            consumer_name=self._name,
            outbox_shards=settings.outbox_shards,
            on_outcomes=self._record,
            reclaim_idle_ms=int(settings.delivery_reclaim_idle_s * 1000),
            gate=gate,
            schedule=Schedule(self._redis, channel),
        )
        # The SDK's sender: receipts of a batch go out as per-partition Kafka batches, not one send() each.
        self._receipts = RecordSender(settings, DELIVERY_TOPIC, client_id=f"herald-{self._name}-receipts")
        self._dead_letters = RecordSender(settings, DLQ_TOPIC, client_id=f"herald-{self._name}-dlq")
        self._running = False
        self._owner = OwnedLoop()
        self._metrics = metrics.MetricsRecorder(source_name(self._name))
        self._export = MetricsExport(self._metrics, settings.redis_url)

    async def run(self) -> None:
        """The delivery loop (its own concurrency group); returns after drain()."""
        self._owner.claim()
        self._export.start()
        await self._receipts.start()
        await self._dead_letters.start()
        self._running = True
        try:
            await self._worker.run()
        finally:
            self._running = False
            await self._receipts.close()
            await self._dead_letters.close()
            await self._export.close()

    async def _record(self, results: Sequence[tuple[Outcome, DeliveryJob]]) -> None:
        """Receipts for every outcome, dead letters for failures; raising leaves the entries pending."""
        receipts = []
        dead = []
        for outcome, job in results:
            key = outcome.user_id.encode()
            receipt = outcome.receipt()
            receipts.append(OutgoingRecord(key, orjson.dumps(receipt), RECEIPT_HEADERS, None))
            if outcome.failed:
                headers = dlq_headers(reason=outcome.error or "delivery failed", stage=delivery_stage(self._channel))
                value = orjson.dumps({"receipt": receipt, "payload": job.payload})
                dead.append(OutgoingRecord(key, value, headers, None))
        await self._receipts.send(receipts)
        await self._dead_letters.send(dead)
        self._record_metrics(results)

    def _record_metrics(self, results: Sequence[tuple[Outcome, DeliveryJob]]) -> None:
        """Per outcome: the delivery by channel and outcome, dead letters, and produce -> provider receipt."""
        now_ms = time.time_ns() // 1_000_000
        latencies = []
        for outcome, job in results:
            self._metrics.inc(metrics.DELIVERIES, channel=outcome.channel, outcome=outcome.status)
            if outcome.failed:
                self._metrics.inc(metrics.DEAD_LETTERED, stage=delivery_stage(self._channel))
            elif outcome.delivered and job.produced_ms is not None:
                latencies.append(max(0, now_ms - job.produced_ms) / 1000)
        if latencies:
            self._metrics.observe_many(metrics.PRODUCE_TO_DELIVERY, latencies, channel=self._channel)

    async def drain(self) -> None:
        async def stop() -> None:
            self._worker.stop()

        await self._owner.run(stop())

    async def health(self) -> dict[str, Any]:
        breaker = self._worker.provider.breaker
        return {
            "actor": self._name,
            "ok": self._running,
            "pid": os.getpid(),
            "node": node_id(),
            "breaker": breaker.state.value if breaker else None,
            **self._worker.health(),
        }
