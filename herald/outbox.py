"""Consumes a channel's outbox streams and hands each entry to the channel's provider.

At-least-once: an entry is acknowledged (XACK + XDEL) only after its outcome is recorded; entries pending on
a consumer that died are claimed by another after `reclaim_idle_ms`. Each entry carries a stable delivery id,
and clients replace a notification by (id, version), so a redelivery shows nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from herald import keys
from herald.channels.base import ChannelProvider, DeliveryJob, Outcome

log = logging.getLogger(__name__)

Entry = tuple[str, str, dict[str, str], int]  # stream, entry id, fields, deliveries tried before
MAX_SETTLING_BATCHES = 8
OutcomeSink = Callable[[Sequence[tuple[Outcome, DeliveryJob]]], Awaitable[None]]


@dataclass
class OutboxStats:
    delivered: int = 0
    failed: int = 0
    reclaimed: int = 0
    redis_errors: int = 0
    last_error: str | None = None
    recent_latency_ms: list[float] = field(default_factory=list)


class OutboxWorker:
    def __init__(
        self,
        client: aioredis.Redis,
        provider: ChannelProvider,
        *,
        consumer_name: str,
        outbox_shards: int,
        on_outcomes: OutcomeSink,
        batch_size: int = 200,
        block_ms: int = 500,
        reclaim_idle_ms: int = 30_000,
        concurrency: int = 64,
    ) -> None:
        self._redis = client
        self._provider = provider
        self._consumer = consumer_name
        self._streams = [keys.outbox_key(provider.channel, s) for s in range(outbox_shards)]
        self._on_outcomes = on_outcomes
        self._batch_size = batch_size
        self._block_ms = block_ms
        self._reclaim_idle_ms = reclaim_idle_ms
        self._limit = asyncio.Semaphore(concurrency)
        self._stopping = asyncio.Event()
        # Receipts and acknowledgements of delivered batches, finishing while the next batch is read: a
        # delivery never waits for the previous batch's receipts to reach Kafka.
        self._settling: set[asyncio.Task[None]] = set()
        self.stats = OutboxStats()

    async def ensure_groups(self) -> None:
        for stream in self._streams:
            try:
                await self._redis.xgroup_create(stream, keys.OUTBOX_GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def stop(self) -> None:
        self._stopping.set()

    async def run(self, *, until_empty: bool = False) -> None:
        """Deliver until stop(); with `until_empty`, return once nothing new or pending is left (tests)."""
        await self._provider.start()
        try:
            await self.ensure_groups()
            since_reclaim = 0.0
            while not self._stopping.is_set():
                if since_reclaim <= 0:
                    await self._reclaim()
                    since_reclaim = self._reclaim_idle_ms / 4000
                loop = asyncio.get_running_loop()
                started = loop.time()
                handled = await self._read_and_deliver()
                since_reclaim -= loop.time() - started
                if until_empty and handled == 0 and not self._settling:
                    return
        finally:
            await asyncio.gather(*self._settling, return_exceptions=True)
            await self._provider.close()

    async def _read_and_deliver(self) -> int:
        try:
            replies = await self._redis.xreadgroup(
                keys.OUTBOX_GROUP,
                self._consumer,
                dict.fromkeys(self._streams, ">"),
                count=self._batch_size,
                block=self._block_ms,
            )
        except RedisError as exc:
            await self._note_redis_error(exc)
            return 0
        streams = cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], replies or [])
        entries: list[Entry] = [
            (stream, entry_id, fields, 0) for stream, items in streams for entry_id, fields in items
        ]
        await self._deliver(entries)
        return len(entries)

    async def _reclaim(self) -> None:
        """Take over entries a dead or stuck consumer left pending; they keep their attempt count."""
        for stream in self._streams:
            try:
                reply = await self._redis.xautoclaim(
                    stream, keys.OUTBOX_GROUP, self._consumer, self._reclaim_idle_ms, "0-0", count=self._batch_size
                )
                claimed = cast(list[tuple[str, dict[str, str]]], reply[1])
                if not claimed:
                    continue
                counts = await self._delivery_counts(stream, [entry_id for entry_id, _ in claimed])
            except RedisError as exc:
                await self._note_redis_error(exc)
                continue
            self.stats.reclaimed += len(claimed)
            await self._deliver(
                [(stream, entry_id, fields, counts.get(entry_id, 1) - 1) for entry_id, fields in claimed if fields]
            )

    async def _delivery_counts(self, stream: str, ids: list[str]) -> dict[str, int]:
        pending = await self._redis.xpending_range(
            stream, keys.OUTBOX_GROUP, min=ids[0], max=ids[-1], count=len(ids) * 2, consumername=self._consumer
        )
        return {str(p["message_id"]): int(p["times_delivered"]) for p in cast(list[dict[str, Any]], pending)}

    async def _deliver(self, entries: list[Entry]) -> None:
        if not entries:
            return

        async def one(entry: Entry) -> tuple[Outcome, DeliveryJob]:
            _stream, _entry_id, fields, attempts_before = entry
            job = DeliveryJob(
                delivery_id=fields["id"],
                user_id=fields["u"],
                payload=orjson.loads(fields["d"]),
                attempts_before=attempts_before,
            )
            async with self._limit:
                return await self._provider.deliver(job), job

        results = await asyncio.gather(*(one(e) for e in entries))
        for outcome, _job in results:
            if outcome.delivered:
                self.stats.delivered += 1
                self.stats.recent_latency_ms = [*self.stats.recent_latency_ms[-99:], outcome.latency_ms]
            else:
                self.stats.failed += 1
        settle = asyncio.create_task(self._settle(entries, results))
        self._settling.add(settle)
        settle.add_done_callback(self._settling.discard)
        if len(self._settling) >= MAX_SETTLING_BATCHES:
            await asyncio.wait(self._settling, return_when=asyncio.FIRST_COMPLETED)

    async def _settle(self, entries: list[Entry], results: list[tuple[Outcome, DeliveryJob]]) -> None:
        """Record the outcomes (receipts, dead letters), then acknowledge. If recording fails the entries stay
        pending and are delivered again after `reclaim_idle_ms`: at-least-once, deduplicated by clients."""
        try:
            await self._on_outcomes(results)
        except Exception as exc:  # noqa: BLE001 - whatever the sink raised, the entries stay pending and come back
            self.stats.last_error = f"recording outcomes failed: {exc}"
            log.warning("outbox: %s", self.stats.last_error)
            return
        await self._acknowledge(entries)

    async def _acknowledge(self, entries: list[Entry]) -> None:
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id, _fields, _ in entries:
            by_stream.setdefault(stream, []).append(entry_id)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for stream, ids in by_stream.items():
                    pipe.xack(stream, keys.OUTBOX_GROUP, *ids)
                    pipe.xdel(stream, *ids)
                await pipe.execute()
        except RedisError as exc:
            # Not acknowledged means delivered again later: at-least-once, and clients dedupe by (id, version).
            await self._note_redis_error(exc)

    async def _note_redis_error(self, exc: RedisError) -> None:
        self.stats.redis_errors += 1
        self.stats.last_error = str(exc)
        log.warning("outbox: Redis error: %s", exc)
        await asyncio.sleep(0.5)

    def health(self) -> dict[str, Any]:
        latencies = sorted(self.stats.recent_latency_ms)
        return {
            "channel": self._provider.channel,
            "consumer": self._consumer,
            "delivered": self.stats.delivered,
            "failed": self.stats.failed,
            "reclaimed": self.stats.reclaimed,
            "redis_errors": self.stats.redis_errors,
            "last_error": self.stats.last_error,
            "p50_send_ms": latencies[len(latencies) // 2] if latencies else None,
        }
