"""Consumes a channel's outbox streams and hands each entry to the channel's provider.

At-least-once: an entry is acknowledged (XACK + XDEL) only after its outcome is recorded; entries pending on
a consumer that died are claimed by another after `reclaim_idle_ms`. Each entry carries a stable delivery id,
and clients replace a notification by (id, version), so a redelivery shows nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from herald import keys
from herald.channels.base import ChannelProvider, DeliveryJob, Outcome
from herald.delivery_gate import DeliveryGate
from herald.preferences import Decision, Verdict
from herald.schedule import Schedule, latest_versions

log = logging.getLogger(__name__)

Entry = tuple[str, str, dict[str, str], int]  # stream, entry id, fields, deliveries tried before
MAX_SETTLING_BATCHES = 8
OutcomeSink = Callable[[Sequence[tuple[Outcome, DeliveryJob]]], Awaitable[None]]
RELEASE_INTERVAL_S = 1.0  # how often due deferrals and digests move back into the outbox
SETTLE_RETRY_FIRST_S = 0.2  # recording outcomes failed: first retry, doubling up to SETTLE_RETRY_MAX_S
SETTLE_RETRY_MAX_S = 5.0
SEND_NOW = Decision(Verdict.SEND)


@dataclass
class OutboxStats:
    delivered: int = 0
    failed: int = 0
    suppressed: int = 0
    deferred: int = 0
    digested: int = 0
    released: int = 0
    reclaimed: int = 0
    settle_retries: int = 0  # recording outcomes failed and was tried again (the broker was away)
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
        gate: DeliveryGate | None = None,
        schedule: Schedule | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._provider = provider
        self._consumer = consumer_name
        self._shards = range(outbox_shards)
        self._streams = [keys.outbox_key(provider.channel, s) for s in self._shards]
        self._gate = gate
        self._schedule = schedule
        self._clock = clock
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

    @property
    def provider(self) -> ChannelProvider:
        return self._provider

    def stop(self) -> None:
        self._stopping.set()

    async def run(self, *, until_empty: bool = False) -> None:
        """Deliver until stop(); with `until_empty`, return once nothing new or pending is left (tests)."""
        await self._provider.start()
        try:
            await self.ensure_groups()
            since_reclaim = since_release = 0.0
            while not self._stopping.is_set():
                if since_reclaim <= 0:
                    await self._reclaim()
                    since_reclaim = self._reclaim_idle_ms / 4000
                if since_release <= 0:
                    await self.release_due()
                    since_release = RELEASE_INTERVAL_S
                loop = asyncio.get_running_loop()
                started = loop.time()
                handled = await self._read_and_deliver()
                since_reclaim -= loop.time() - started
                since_release -= loop.time() - started
                if until_empty and handled == 0 and not self._settling:
                    return
        finally:
            await asyncio.gather(*self._settling, return_exceptions=True)
            await self._provider.close()

    async def release_due(self) -> int:
        """Move due deferrals and digests back into the outbox (any delivery actor may; each moves once)."""
        if self._schedule is None:
            return 0
        try:
            moved = await self._schedule.release_due(self._shards, int(self._clock() * 1000))
        except RedisError as exc:
            await self._note_redis_error(exc)
            return 0
        self.stats.released += moved
        return moved

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

        try:
            settled = await self._send_or_hold(entries)
        except RedisError as exc:
            # Nothing was acknowledged: the entries stay pending and are reclaimed; holding is idempotent.
            await self._note_redis_error(exc)
            return
        entries = [e for e, r in zip(entries, settled, strict=True) if r is not None]
        results = [r for r in settled if r is not None]
        if not results:
            return
        for outcome, _job in results:
            if outcome.delivered:
                self.stats.delivered += 1
                self.stats.recent_latency_ms = [*self.stats.recent_latency_ms[-99:], outcome.latency_ms]
            elif outcome.suppressed is not None:
                self.stats.suppressed += 1
            else:
                self.stats.failed += 1
        settle = asyncio.create_task(self._settle(entries, results))
        self._settling.add(settle)
        settle.add_done_callback(self._settling.discard)
        if len(self._settling) >= MAX_SETTLING_BATCHES:
            await asyncio.wait(self._settling, return_when=asyncio.FIRST_COMPLETED)

    async def _send_or_hold(self, entries: list[Entry]) -> list[tuple[Outcome, DeliveryJob] | None]:
        """Per entry: its outcome (sent, failed or suppressed), or None when it left the stream for later."""
        jobs = [_job(fields, attempts_before) for _stream, _entry_id, fields, attempts_before in entries]
        decided = await self._gate.prepare(jobs) if self._gate else [(job, SEND_NOW) for job in jobs]

        async def one(entry: Entry, job: DeliveryJob, decision: Decision) -> tuple[Outcome, DeliveryJob] | None:
            if decision.verdict is Verdict.SUPPRESS:
                return self._provider.suppressed(job, decision.reason), job
            if decision.verdict in (Verdict.DEFER, Verdict.DIGEST):
                await self._hold(entry, decision)
                return None
            async with self._limit:
                return await self._provider.deliver(job), job

        return await asyncio.gather(*(one(e, j, d) for e, (j, d) in zip(entries, decided, strict=True)))

    async def _hold(self, entry: Entry, decision: Decision) -> None:
        assert self._schedule is not None, "a gate that defers needs a schedule"
        assert decision.at is not None
        stream, entry_id, fields, _ = entry
        due_ms = int(decision.at.timestamp() * 1000)
        if decision.verdict is Verdict.DEFER:
            if await self._schedule.defer(stream, entry_id, fields, due_ms):
                self.stats.deferred += 1
        elif await self._schedule.add_to_digest(stream, entry_id, fields, due_ms):
            self.stats.digested += 1

    async def _settle(self, entries: list[Entry], results: list[tuple[Outcome, DeliveryJob]]) -> None:
        """Record the outcomes (receipts, dead letters), then acknowledge.

        The deliveries already happened, so a failed recording (Kafka down) is retried with backoff while this
        worker keeps the entries claimed (their idle time reset below `reclaim_idle_ms`): otherwise every
        reclaim would send them again for as long as the broker is away. Only if this worker stops or dies do
        they stay pending and go out again: at-least-once, deduplicated by clients."""
        longest_s = min(SETTLE_RETRY_MAX_S, self._reclaim_idle_ms / 4000)  # well inside the reclaim window
        delay_s = min(SETTLE_RETRY_FIRST_S, longest_s)
        while True:
            try:
                await self._on_outcomes(results)
                break
            except Exception as exc:  # noqa: BLE001 - whatever the sink raised, the outcomes are recorded again
                self.stats.last_error = f"recording outcomes failed: {exc}"
                self.stats.settle_retries += 1
                log.warning("outbox: %s; retrying in %.1fs", self.stats.last_error, delay_s)
            if self._stopping.is_set():
                return  # pending: the next owner delivers them again
            await self._keep_claimed(entries)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, longest_s)
        await self._acknowledge(entries)

    async def _keep_claimed(self, entries: list[Entry]) -> None:
        """Reset the entries' idle time (XCLAIM to ourselves, JUSTID: no delivery count added)."""
        by_stream: dict[str, list[Any]] = {}  # ids as redis-py's stub types them (any encodable)
        for stream, entry_id, _fields, _ in entries:
            by_stream.setdefault(stream, []).append(entry_id)
        try:
            for stream, ids in by_stream.items():
                await self._redis.xclaim(stream, keys.OUTBOX_GROUP, self._consumer, 0, ids, justid=True)
        except RedisError as exc:
            await self._note_redis_error(exc)

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
            "suppressed": self.stats.suppressed,
            "deferred": self.stats.deferred,
            "digested": self.stats.digested,
            "released": self.stats.released,
            "reclaimed": self.stats.reclaimed,
            "settle_retries": self.stats.settle_retries,
            "redis_errors": self.stats.redis_errors,
            "last_error": self.stats.last_error,
            "p50_send_ms": latencies[len(latencies) // 2] if latencies else None,
        }


def _job(fields: dict[str, str], attempts_before: int) -> DeliveryJob:
    payload = orjson.loads(fields["d"])
    digest = payload.get("digest")
    if isinstance(digest, dict):
        # The digest list may hold several versions of one notification: show each once, at its newest.
        items = latest_versions([i for i in digest.get("items", []) if isinstance(i, dict)])
        payload = {"digest": {**digest, "count": len(items), "items": items}}
    produced = fields.get("p")
    return DeliveryJob(
        delivery_id=fields["id"],
        user_id=fields["u"],
        payload=payload,
        attempts_before=attempts_before,
        produced_ms=int(produced) if produced and produced.isdigit() else None,
    )
