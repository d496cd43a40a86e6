"""Herald's metrics in one place (names, descriptions, tags, buckets) and a small in-process recorder.

Actors record into a MetricsRecorder (cheap: a dict update per batch, a bisect per latency sample); its
snapshots are what leaves the process: actors/metrics_export.py mirrors them to ray.util.metrics (Prometheus,
through Ray's metrics agent) and publishes them to Redis, where the gateway's /dashboard merges them
(docs/architecture.md, "Metrics and dashboard"). No I/O and no Ray here.

A snapshot is plain JSON: {"source", "at_ms", "counters": {name: {series: n}}, "gauges": {name: {series: v}},
"histograms": {name: {series: {"counts": [per bucket, +Inf last], "sum": s}}}}; a series is its tags as
"k=v,k2=v2" in the metric's tag order ("" without tags).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


# Produce -> apply is milliseconds in steady state and minutes behind a backlog; the top buckets keep a
# backlog's latency distinguishable from a stall.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    description: str
    tags: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    def series(self, tags: Mapping[str, str]) -> str:
        """The series key of `tags`, which must name exactly this metric's tags."""
        if set(tags) != set(self.tags):
            raise ValueError(f"{self.name} takes tags {list(self.tags)}, got {sorted(tags)}")
        return ",".join(f"{key}={tags[key]}" for key in self.tags)


EVENTS_IN = MetricSpec("herald_events_in", Kind.COUNTER, "Records read from the events topic by the readers")
EVENTS_APPLIED = MetricSpec(
    "herald_events_applied", Kind.COUNTER, "Events applied to inboxes by the aggregators (duplicates excluded)"
)
DEAD_LETTERED = MetricSpec(
    "herald_dead_lettered",
    Kind.COUNTER,
    "Records written to notification-dlq, by stage (reader, aggregator, apply, delivery:<channel>)",
    ("stage",),
)
DELIVERIES = MetricSpec(
    "herald_deliveries",
    Kind.COUNTER,
    "Deliveries by channel and outcome (DELIVERED, FAILED, SUPPRESSED); IN_APP counts versions pushed per user",
    ("channel", "outcome"),
)
PRODUCE_TO_APPLY = MetricSpec(
    "herald_produce_to_apply_seconds",
    Kind.HISTOGRAM,
    "Kafka record timestamp -> the aggregator's commit of the event",
    buckets=LATENCY_BUCKETS_S,
)
PRODUCE_TO_DELIVERY = MetricSpec(
    "herald_produce_to_delivery_seconds",
    Kind.HISTOGRAM,
    "Kafka record timestamp of the newest event of a commit -> provider receipt (IN_APP: the gateway's send)",
    ("channel",),
    LATENCY_BUCKETS_S,
)
CONSUMER_LAG = MetricSpec(
    "herald_consumer_lag",
    Kind.GAUGE,
    "Records not yet read by the readers, per partition of the events topic",
    ("partition",),
)

ALL_METRICS: tuple[MetricSpec, ...] = (
    EVENTS_IN,
    EVENTS_APPLIED,
    DEAD_LETTERED,
    DELIVERIES,
    PRODUCE_TO_APPLY,
    PRODUCE_TO_DELIVERY,
    CONSUMER_LAG,
)
BY_NAME: dict[str, MetricSpec] = {spec.name: spec for spec in ALL_METRICS}

Snapshot = dict[str, Any]


def parse_series(series: str) -> dict[str, str]:
    """The tags of a series key ("" -> {})."""
    if not series:
        return {}
    return dict(part.split("=", 1) for part in series.split(","))


class MetricsRecorder:
    """Counters, gauges and fixed-bucket histograms of one process. Not thread-safe: one event loop records."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._counters: dict[str, dict[str, float]] = {}
        self._gauges: dict[str, dict[str, float]] = {}
        self._histograms: dict[str, dict[str, _Buckets]] = {}

    def inc(self, spec: MetricSpec, value: float = 1, **tags: str) -> None:
        _expect(spec, Kind.COUNTER)
        if value < 0:
            raise ValueError(f"{spec.name}: a counter only grows (got {value})")
        if value:
            series = self._counters.setdefault(spec.name, {})
            key = spec.series(tags)
            series[key] = series.get(key, 0) + value

    def set_gauges(self, spec: MetricSpec, values: Mapping[str, float], tag: str) -> None:
        """Replace every series of a one-tag gauge: series no longer given (a partition moved away) disappear."""
        _expect(spec, Kind.GAUGE)
        self._gauges[spec.name] = {spec.series({tag: name}): float(value) for name, value in values.items()}

    def observe(self, spec: MetricSpec, value_s: float, **tags: str) -> None:
        self.observe_many(spec, (value_s,), **tags)

    def observe_many(self, spec: MetricSpec, values_s: Iterable[float], **tags: str) -> None:
        """Record many samples of one series at once (a batch's latencies)."""
        _expect(spec, Kind.HISTOGRAM)
        key = spec.series(tags)
        buckets = self._histograms.setdefault(spec.name, {}).get(key)
        if buckets is None:
            buckets = self._histograms[spec.name][key] = _Buckets(spec.buckets)
        buckets.add(values_s)

    def snapshot(self, now_ms: int) -> Snapshot:
        return {
            "source": self.source,
            "at_ms": now_ms,
            "counters": {name: dict(series) for name, series in self._counters.items()},
            "gauges": {name: dict(series) for name, series in self._gauges.items()},
            "histograms": {
                name: {key: {"counts": list(b.counts), "sum": b.total} for key, b in series.items()}
                for name, series in self._histograms.items()
            },
        }


class _Buckets:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def add(self, values: Iterable[float]) -> None:
        bounds, counts = self.bounds, self.counts
        for value in values:
            # Prometheus buckets are upper-inclusive (le): a value equal to a bound belongs to it.
            counts[bisect.bisect_left(bounds, value)] += 1
            self.total += value


def _expect(spec: MetricSpec, kind: Kind) -> None:
    if spec.kind is not kind:
        raise TypeError(f"{spec.name} is a {spec.kind}, not a {kind}")


def merge(snapshots: Sequence[Snapshot]) -> Snapshot:
    """Cluster-wide figures: counters and histogram buckets summed over sources; for a gauge series the newest
    snapshot's value wins (a partition moving between readers is briefly reported by both)."""
    merged: Snapshot = {"sources": len(snapshots), "counters": {}, "gauges": {}, "histograms": {}}
    for snap in sorted(snapshots, key=lambda s: int(s.get("at_ms", 0))):  # oldest first: newer gauges overwrite
        for name, series in snap.get("counters", {}).items():
            into = merged["counters"].setdefault(name, {})
            for key, value in series.items():
                into[key] = into.get(key, 0) + value
        for name, series in snap.get("gauges", {}).items():
            into = merged["gauges"].setdefault(name, {})
            for key, value in series.items():
                into[key] = value
        for name, series in snap.get("histograms", {}).items():
            into = merged["histograms"].setdefault(name, {})
            for key, hist in series.items():
                have = into.get(key)
                if have is None:
                    into[key] = {"counts": list(hist["counts"]), "sum": hist["sum"]}
                elif len(have["counts"]) == len(hist["counts"]):
                    have["counts"] = [a + b for a, b in zip(have["counts"], hist["counts"], strict=True)]
                    have["sum"] += hist["sum"]
    return merged


def percentile(bounds: Sequence[float], counts: Sequence[int], q: float) -> float | None:
    """The q-quantile (0..1) of a fixed-bucket histogram, interpolated linearly inside its bucket as
    Prometheus' histogram_quantile does; None without samples. A quantile in +Inf is the highest bound."""
    if not 0 <= q <= 1:
        raise ValueError(f"quantile must be within [0, 1], got {q}")
    if len(counts) != len(bounds) + 1:
        raise ValueError(f"{len(bounds)} bounds need {len(bounds) + 1} counts, got {len(counts)}")
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index == len(bounds):
                return bounds[-1]
            lower = bounds[index - 1] if index else 0.0
            return lower + (bounds[index] - lower) * ((rank - seen) / count)
        seen += count
    return bounds[-1]


def counter_deltas(previous: Snapshot | None, current: Snapshot) -> dict[tuple[str, str], float]:
    """What each counter series grew by since `previous` (same source): what an exporter adds."""
    before = (previous or {}).get("counters", {})
    deltas = {}
    for name, series in current.get("counters", {}).items():
        for key, value in series.items():
            grown = value - before.get(name, {}).get(key, 0)
            if grown > 0:
                deltas[(name, key)] = grown
    return deltas


def histogram_replay(
    previous: Snapshot | None, current: Snapshot, *, budget: int
) -> dict[tuple[str, str], list[tuple[float, int]]]:
    """Per histogram series, (value, times) to observe so that an exporter with only `observe(value)` ends
    with the same buckets as this recorder: each new sample is replayed as its bucket's midpoint.

    At most `budget` observations per series: beyond it every bucket is thinned by the same factor, so the
    exported quantiles stay right while its sample count falls short (counters carry the exact counts)."""
    before = (previous or {}).get("histograms", {})
    replay: dict[tuple[str, str], list[tuple[float, int]]] = {}
    for name, series in current.get("histograms", {}).items():
        bounds = BY_NAME[name].buckets if name in BY_NAME else ()
        for key, hist in series.items():
            old = before.get(name, {}).get(key, {}).get("counts") or [0] * len(hist["counts"])
            grown = [max(0, now - then) for now, then in zip(hist["counts"], old, strict=False)]
            total = sum(grown)
            if not total or len(grown) != len(bounds) + 1:
                continue
            scale = min(1.0, budget / total)
            plan = []
            for index, count in enumerate(grown):
                times = math.ceil(count * scale) if count else 0
                if times:
                    plan.append((_bucket_value(bounds, index), times))
            replay[(name, key)] = plan
    return replay


def _bucket_value(bounds: Sequence[float], index: int) -> float:
    if index == len(bounds):
        return bounds[-1] * 2  # +Inf: anything above the last bound lands in +Inf again
    lower = bounds[index - 1] if index else 0.0
    return (lower + bounds[index]) / 2


def fresh(snapshots: Iterable[Snapshot], *, now_ms: int, max_age_ms: int) -> list[Snapshot]:
    """Snapshots published within `max_age_ms`: a stopped or restarted actor's last one is left out."""
    return [s for s in snapshots if now_ms - int(s.get("at_ms", 0)) <= max_age_ms]
