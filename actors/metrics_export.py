"""Takes an actor's MetricsRecorder (herald/metrics.py) out of the process every PUBLISH_INTERVAL_S: mirrored to
ray.util.metrics, which Ray's per-node metrics agent exports in Prometheus format (names prefixed `ray_`,
counters suffixed `_total`), and published to the Redis board that /dashboard merges.

Recording stays in the domain recorder (a dict update per batch); the Ray calls (microseconds each) happen here,
once per series per tick, never per event (docs/architecture.md, "Metrics and dashboard")."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import ray
from ray.util import metrics as ray_metrics
from redis.exceptions import RedisError

from herald import metrics, metrics_board
from herald.cancelling import cancel_and_wait
from herald.metrics import Kind, MetricsRecorder, Snapshot
from herald.redis_pool import redis_client

log = logging.getLogger(__name__)

# Observations replayed into a Ray histogram per series and tick: bounds the tick's cost under load.
REPLAY_BUDGET = 1000


def source_name(actor: str) -> str:
    """A board field per process: a restarted actor publishes afresh and its old entry goes stale."""
    return f"{actor}@{socket.gethostname()}:{os.getpid()}"


class RayMirror:
    """The ray.util.metrics twins of every Herald metric, fed from snapshot differences."""

    def __init__(self) -> None:
        self._metrics: dict[str, Any] = {}
        # Outside a Ray runtime (an actor class used in-process by a test or tool) there is no metrics agent,
        # and creating a ray.util.metrics object would start or join some Ray runtime on its own.
        self._enabled = ray.is_initialized()
        for spec in metrics.ALL_METRICS if self._enabled else ():
            if spec.kind is Kind.COUNTER:
                self._metrics[spec.name] = ray_metrics.Counter(spec.name, spec.description, spec.tags)
            elif spec.kind is Kind.GAUGE:
                self._metrics[spec.name] = ray_metrics.Gauge(spec.name, spec.description, spec.tags)
            else:
                self._metrics[spec.name] = ray_metrics.Histogram(
                    spec.name, spec.description, list(spec.buckets), spec.tags
                )
        self._previous: Snapshot | None = None
        self._gauge_series: dict[str, set[str]] = {}

    def export(self, snapshot: Snapshot) -> None:
        if not self._enabled:
            return
        for (name, series), grown in metrics.counter_deltas(self._previous, snapshot).items():
            self._metrics[name].inc(grown, tags=metrics.parse_series(series))
        for (name, series), plan in metrics.histogram_replay(self._previous, snapshot, budget=REPLAY_BUDGET).items():
            histogram, tags = self._metrics[name], metrics.parse_series(series)
            for value, times in plan:
                for _ in range(times):
                    histogram.observe(value, tags=tags)
        for name, values in snapshot.get("gauges", {}).items():
            gauge = self._metrics[name]
            for series, value in values.items():
                gauge.set(value, tags=metrics.parse_series(series))
            # A series that disappeared (a partition that moved to another reader) is set to 0, not left behind.
            for series in self._gauge_series.get(name, set()) - set(values):
                gauge.set(0, tags=metrics.parse_series(series))
            self._gauge_series[name] = set(values)
        self._previous = snapshot


class MetricsExport:
    """The periodic export of one actor's recorder; `start()` on the loop that records (it reads the recorder
    without locks), `close()` on drain."""

    def __init__(
        self,
        recorder: MetricsRecorder,
        redis_url: str,
        *,
        before_tick: Callable[[], Awaitable[None]] | None = None,
        interval_s: float = metrics_board.PUBLISH_INTERVAL_S,
    ) -> None:
        self.recorder = recorder
        self._redis_url = redis_url
        self._before_tick = before_tick
        self._interval_s = interval_s
        self._mirror = RayMirror()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.ticks = 0

    def start(self) -> None:
        """Idempotent; the task lives on the running loop."""
        self._closing = False
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="herald-metrics-export")

    async def close(self) -> None:
        # The flag as well as the cancel: a cancellation that lands in redis-py's publish can come out as a
        # RedisError, which tick() handles; the loop must still end (a drain hung here; herald/cancelling.py).
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task], what=f"{self.recorder.source} metrics export")

    async def _run(self) -> None:
        redis = redis_client(self._redis_url, max_connections=2)
        try:
            while not self._closing:
                await self.tick(redis)
                if not self._closing:
                    await asyncio.sleep(self._interval_s)
        finally:
            await redis.aclose()

    async def tick(self, redis: Any) -> None:
        """One export; a failure is logged and the next tick tries again (metrics never stop the pipeline)."""
        try:
            if self._before_tick is not None:
                await self._before_tick()
            snapshot = self.recorder.snapshot(now_ms=time.time_ns() // 1_000_000)
            self._mirror.export(snapshot)
            await metrics_board.publish(redis, snapshot)
            self.ticks += 1
        except (RedisError, OSError) as exc:
            log.warning("%s: publishing metrics failed: %s", self.recorder.source, exc)
        except Exception:
            log.exception("%s: exporting metrics failed", self.recorder.source)
