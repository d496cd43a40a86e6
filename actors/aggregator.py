"""AggregatorActor: hosts the users of some shards; forwards batches to herald.applier.InboxApplier."""

from __future__ import annotations

import os
import time

from actors.loops import node_id
from herald.applier import ApplyReport, InboxApplier
from herald.config import Settings
from herald.contracts import ActorHealth, ApplyResult
from herald.directory import RedisUserDirectory
from herald.prepared import decode_batch
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

    async def apply(self, batch: bytes) -> ApplyResult:
        """Apply one batch (herald.prepared.encode_batch); returns counters and the (wire id, reason) of events
        the domain rejected."""
        report = await self._aggregator.apply_prepared(decode_batch(batch))
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

    async def health(self) -> ActorHealth:
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
