"""AggregatorActor: hosts the users of some shards; forwards batches to herald.applier.InboxApplier."""

from __future__ import annotations

import os
import time

from actors.gc_tuning import HeapTrim, tune_gc_for_event_path
from actors.loops import node_id
from actors.metrics_export import MetricsExport, source_name
from herald import metrics
from herald.applier import ApplyReport, InboxApplier
from herald.config import Settings
from herald.contracts import ActorHealth, ApplyResult
from herald.directory import RedisUserDirectory
from herald.prepared import PreparedEvent, decode_batch
from herald.store_redis import RedisStore


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class AggregatorActor:
    def __init__(self, settings: Settings, index: int, delivery_channels: tuple[str, ...]) -> None:
        # Nothing here touches the network: the Redis client connects on first use.
        self._index = index
        self._store = RedisStore.from_url(
            settings.redis_url,
            inbox_capacity=settings.inbox_capacity,
            dedup_horizon_ms=settings.dedup_horizon_s * 1000,
            outbox_shards=settings.outbox_shards,
        )
        self._directory = RedisUserDirectory.from_url(settings.redis_url)
        self._aggregator = InboxApplier(
            self._store,
            clock_ms=wall_clock_ms,
            late_allowance_ms=settings.late_allowance_s * 1000,
            delivery_channels=delivery_channels,
            directory=self._directory,
            cache_users=settings.aggregator_cache_users,
        )
        self._totals = ApplyReport()
        self._batches = 0
        self._metrics = metrics.MetricsRecorder(source_name(f"aggregator-{index}"))
        self._heap_trim = HeapTrim()
        self._export = MetricsExport(self._metrics, settings.redis_url, before_tick=self._on_metrics_tick)
        tune_gc_for_event_path()

    async def apply(self, batch: bytes) -> ApplyResult:
        """Apply one batch (herald.prepared.encode_batch); returns counters and the (wire id, reason) of events
        the domain rejected."""
        self._export.start()  # idempotent; the actor's one event loop is running now
        events = decode_batch(batch)
        report = await self._aggregator.apply_prepared(events)
        self._record(events, report)
        self._batches += 1
        rejected = [(e.wire_id or e.event_id, reason) for e, reason in report.rejected]
        report.rejected = []
        self._totals.merge(report)
        return {
            "applied": report.applied,
            "duplicates": report.duplicates,
            "changed": report.notifications_changed,
            "self_skipped": report.self_skipped,
            "rejected": rejected,
        }

    async def _on_metrics_tick(self) -> None:
        self._heap_trim()

    def _record(self, events: list[PreparedEvent], report: ApplyReport) -> None:
        """Per batch: events applied, and each event's produce -> commit latency (the commit has just returned)."""
        now_ms = wall_clock_ms()
        self._metrics.inc(metrics.EVENTS_APPLIED, report.applied)
        self._metrics.observe_many(
            metrics.PRODUCE_TO_APPLY,
            [max(0, now_ms - e.produced_ms) / 1000 for e in events if e.produced_ms is not None],
        )

    async def health(self) -> ActorHealth:
        self._export.start()
        return {
            "actor": f"aggregator-{self._index}",
            "ok": True,
            "pid": os.getpid(),
            "node": node_id(),
            "batches": self._batches,
            "applied": self._totals.applied,
            "duplicates": self._totals.duplicates,
            "notifications_changed": self._totals.notifications_changed,
            "conflicts_retried": self._totals.conflicts_retried,
            "self_skipped": self._totals.self_skipped,
            "channels_without_provider": self._totals.channels_without_provider,
            "cache_users": len(self._aggregator.cache),
            "cache_hits": self._aggregator.cache.hits,
            "cache_misses": self._aggregator.cache.misses,
        }
