"""What /dashboard/data answers: the cluster's merged metrics (herald/metrics_board.py) shaped for the page.

Counters are totals since each source started; the page computes rates from successive polls. Latency
percentiles here cover everything since the sources started; each latency also carries its bucket counts
(bounds in `buckets_s`, +Inf last), from which the page computes the percentiles of the last poll interval."""

from __future__ import annotations

from typing import Any

from herald import metrics
from herald.metrics import Snapshot

QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def view(merged: Snapshot, *, now_ms: int) -> dict[str, Any]:
    counters = merged.get("counters", {})
    histograms = merged.get("histograms", {})
    return {
        "at_ms": now_ms,
        "sources": merged.get("sources", 0),
        "buckets_s": list(metrics.LATENCY_BUCKETS_S),
        "events_in": _total(counters, metrics.EVENTS_IN),
        "applied": _total(counters, metrics.EVENTS_APPLIED),
        "dead_lettered": _by_tag(counters, metrics.DEAD_LETTERED, "stage"),
        "deliveries": _deliveries(counters),
        "latency": {
            "produce_to_apply": _latency(histograms.get(metrics.PRODUCE_TO_APPLY.name, {}).get("")),
            "produce_to_delivery": {
                metrics.parse_series(key).get("channel", "?"): _latency(hist)
                for key, hist in sorted(histograms.get(metrics.PRODUCE_TO_DELIVERY.name, {}).items())
            },
        },
        "lag": {
            metrics.parse_series(key).get("partition", "?"): int(value)
            for key, value in sorted(merged.get("gauges", {}).get(metrics.CONSUMER_LAG.name, {}).items())
        },
    }


def _total(counters: dict[str, dict[str, float]], spec: metrics.MetricSpec) -> int:
    return int(sum(counters.get(spec.name, {}).values()))


def _by_tag(counters: dict[str, dict[str, float]], spec: metrics.MetricSpec, tag: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in counters.get(spec.name, {}).items():
        name = metrics.parse_series(key).get(tag, "?")
        out[name] = out.get(name, 0) + int(value)
    return dict(sorted(out.items()))


def _deliveries(counters: dict[str, dict[str, float]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for key, value in counters.get(metrics.DELIVERIES.name, {}).items():
        tags = metrics.parse_series(key)
        per_channel = out.setdefault(tags.get("channel", "?"), {})
        outcome = tags.get("outcome", "?")
        per_channel[outcome] = per_channel.get(outcome, 0) + int(value)
    return {channel: dict(sorted(o.items())) for channel, o in sorted(out.items())}


def _latency(hist: dict[str, Any] | None) -> dict[str, Any]:
    bounds = metrics.LATENCY_BUCKETS_S
    counts = list(hist["counts"]) if hist else []
    if len(counts) != len(bounds) + 1:
        counts = [0] * (len(bounds) + 1)
    out: dict[str, Any] = {"count": sum(counts), "counts": counts}
    for label, q in QUANTILES.items():
        value = metrics.percentile(bounds, counts, q)
        out[f"{label}_ms"] = None if value is None else round(value * 1000, 1)
    return out
