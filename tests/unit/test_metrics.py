"""herald/metrics.py: the recorder, merging snapshots, percentiles from buckets, what an exporter replays,
and the /dashboard view built from them."""

from __future__ import annotations

import pytest

from herald import metrics
from herald.gateway.dashboard import view
from herald.metrics import (
    CONSUMER_LAG,
    DEAD_LETTERED,
    DELIVERIES,
    EVENTS_APPLIED,
    EVENTS_IN,
    LATENCY_BUCKETS_S,
    PRODUCE_TO_APPLY,
    PRODUCE_TO_DELIVERY,
    MetricsRecorder,
)


def test_every_metric_is_a_valid_prometheus_name_with_sorted_positive_buckets() -> None:
    for spec in metrics.ALL_METRICS:
        assert spec.name.startswith("herald_")
        assert spec.name.replace("_", "").isalnum()
        if spec.kind is metrics.Kind.HISTOGRAM:
            assert list(spec.buckets) == sorted(spec.buckets)
            assert spec.buckets[0] > 0
        else:
            assert spec.buckets == ()


def test_recorder_counts_per_series_and_rejects_wrong_tags_or_kind() -> None:
    rec = MetricsRecorder("reader-0")
    rec.inc(EVENTS_IN, 5)
    rec.inc(EVENTS_IN, 3)
    rec.inc(DELIVERIES, channel="EMAIL", outcome="DELIVERED")
    rec.inc(DELIVERIES, 2, channel="EMAIL", outcome="FAILED")
    snap = rec.snapshot(now_ms=1000)
    assert snap["source"] == "reader-0"
    assert snap["at_ms"] == 1000
    assert snap["counters"][EVENTS_IN.name] == {"": 8}
    assert snap["counters"][DELIVERIES.name] == {
        "channel=EMAIL,outcome=DELIVERED": 1,
        "channel=EMAIL,outcome=FAILED": 2,
    }
    with pytest.raises(ValueError, match="takes tags"):
        rec.inc(DELIVERIES, channel="EMAIL")
    with pytest.raises(TypeError, match="is a counter"):
        rec.observe(EVENTS_IN, 1.0)
    with pytest.raises(ValueError, match="only grows"):
        rec.inc(EVENTS_IN, -1)


def test_histogram_buckets_are_upper_inclusive_with_inf_last() -> None:
    rec = MetricsRecorder("agg")
    rec.observe_many(PRODUCE_TO_APPLY, [0.005, 0.006, 1000.0])
    hist = rec.snapshot(now_ms=0)["histograms"][PRODUCE_TO_APPLY.name][""]
    assert len(hist["counts"]) == len(LATENCY_BUCKETS_S) + 1
    assert hist["counts"][0] == 1  # le=0.005 holds 0.005
    assert hist["counts"][1] == 1  # le=0.01
    assert hist["counts"][-1] == 1  # +Inf
    assert hist["sum"] == pytest.approx(1000.011)


def test_gauges_are_replaced_whole() -> None:
    rec = MetricsRecorder("reader-0")
    rec.set_gauges(CONSUMER_LAG, {"t:0": 5, "t:1": 7}, "partition")
    rec.set_gauges(CONSUMER_LAG, {"t:1": 2}, "partition")  # t:0 moved to another reader
    assert rec.snapshot(now_ms=0)["gauges"][CONSUMER_LAG.name] == {"partition=t:1": 2.0}


def test_percentile_interpolates_inside_the_bucket_like_histogram_quantile() -> None:
    bounds = [1.0, 2.0, 4.0]
    assert metrics.percentile(bounds, [0, 0, 0, 0], 0.5) is None
    assert metrics.percentile(bounds, [10, 0, 0, 0], 0.5) == pytest.approx(0.5)
    assert metrics.percentile(bounds, [0, 10, 0, 0], 0.5) == pytest.approx(1.5)
    assert metrics.percentile(bounds, [5, 0, 5, 0], 0.99) == pytest.approx(2.0 + 2.0 * (4.9 / 5))
    assert metrics.percentile(bounds, [0, 0, 0, 3], 0.5) == 4.0  # in +Inf: the highest bound
    with pytest.raises(ValueError, match="quantile"):
        metrics.percentile(bounds, [1, 0, 0, 0], 1.5)
    with pytest.raises(ValueError, match="counts"):
        metrics.percentile(bounds, [1, 0], 0.5)


def test_merge_sums_counters_and_buckets_and_the_newest_gauge_wins() -> None:
    a, b = MetricsRecorder("reader-0"), MetricsRecorder("reader-1")
    a.inc(EVENTS_IN, 10)
    b.inc(EVENTS_IN, 5)
    a.inc(DEAD_LETTERED, 1, stage="reader")
    a.observe(PRODUCE_TO_APPLY, 0.02)
    b.observe_many(PRODUCE_TO_APPLY, [0.02, 0.2])
    a.set_gauges(CONSUMER_LAG, {"t:0": 100}, "partition")
    b.set_gauges(CONSUMER_LAG, {"t:0": 3}, "partition")
    merged = metrics.merge([b.snapshot(now_ms=2000), a.snapshot(now_ms=1000)])
    assert merged["sources"] == 2
    assert merged["counters"][EVENTS_IN.name] == {"": 15}
    assert merged["counters"][DEAD_LETTERED.name] == {"stage=reader": 1}
    counts = merged["histograms"][PRODUCE_TO_APPLY.name][""]["counts"]
    assert sum(counts) == 3
    assert merged["gauges"][CONSUMER_LAG.name] == {"partition=t:0": 3.0}  # b's report is newer


def test_fresh_leaves_out_stale_sources() -> None:
    snaps = [{"source": "a", "at_ms": 10_000}, {"source": "b", "at_ms": 1_000}]
    assert [s["source"] for s in metrics.fresh(snaps, now_ms=12_000, max_age_ms=5_000)] == ["a"]


def test_counter_deltas_since_the_previous_export() -> None:
    rec = MetricsRecorder("x")
    rec.inc(EVENTS_IN, 4)
    first = rec.snapshot(now_ms=0)
    assert metrics.counter_deltas(None, first) == {(EVENTS_IN.name, ""): 4}
    rec.inc(EVENTS_IN, 6)
    rec.inc(EVENTS_APPLIED, 2)
    assert metrics.counter_deltas(first, rec.snapshot(now_ms=1)) == {
        (EVENTS_IN.name, ""): 6,
        (EVENTS_APPLIED.name, ""): 2,
    }


def test_histogram_replay_lands_in_the_same_buckets_and_thins_past_the_budget() -> None:
    rec = MetricsRecorder("gw")
    rec.observe_many(PRODUCE_TO_DELIVERY, [0.003] * 30 + [0.7] * 10, channel="IN_APP")
    first = rec.snapshot(now_ms=0)
    [(key, plan)] = metrics.histogram_replay(None, first, budget=1000).items()
    assert key == (PRODUCE_TO_DELIVERY.name, "channel=IN_APP")
    replayed = MetricsRecorder("replay")
    for value, times in plan:
        replayed.observe_many(PRODUCE_TO_DELIVERY, [value] * times, channel="IN_APP")
    assert (
        replayed.snapshot(now_ms=0)["histograms"][PRODUCE_TO_DELIVERY.name]["channel=IN_APP"]["counts"]
        == first["histograms"][PRODUCE_TO_DELIVERY.name]["channel=IN_APP"]["counts"]
    )
    # Past the budget: fewer observations, same proportions.
    rec.observe_many(PRODUCE_TO_DELIVERY, [0.003] * 3000 + [0.7] * 1000, channel="IN_APP")
    [plan] = metrics.histogram_replay(first, rec.snapshot(now_ms=1), budget=400).values()
    thinned = dict(plan)
    assert sum(thinned.values()) == 400
    assert thinned[(0.0 + 0.005) / 2] == 300
    # Nothing new: nothing to replay.
    assert metrics.histogram_replay(first, first, budget=400) == {}


def test_dashboard_view_totals_deliveries_latency_and_lag() -> None:
    reader, agg, delivery = MetricsRecorder("r"), MetricsRecorder("a"), MetricsRecorder("d")
    reader.inc(EVENTS_IN, 100)
    reader.inc(DEAD_LETTERED, 2, stage="reader")
    reader.set_gauges(CONSUMER_LAG, {"notification-events:0": 7}, "partition")
    agg.inc(EVENTS_APPLIED, 98)
    agg.observe_many(PRODUCE_TO_APPLY, [0.02] * 100)
    delivery.inc(DELIVERIES, 3, channel="EMAIL", outcome="DELIVERED")
    delivery.inc(DEAD_LETTERED, 1, stage="delivery:EMAIL")
    delivery.observe(PRODUCE_TO_DELIVERY, 0.4, channel="EMAIL")
    merged = metrics.merge([s.snapshot(now_ms=5) for s in (reader, agg, delivery)])
    data = view(merged, now_ms=9)
    assert data["at_ms"] == 9
    assert data["events_in"] == 100
    assert data["applied"] == 98
    assert data["dead_lettered"] == {"delivery:EMAIL": 1, "reader": 2}
    assert data["deliveries"] == {"EMAIL": {"DELIVERED": 3}}
    apply = data["latency"]["produce_to_apply"]
    assert apply["count"] == 100
    assert 10.0 <= apply["p50_ms"] <= 25.0
    assert data["latency"]["produce_to_delivery"]["EMAIL"]["count"] == 1
    assert data["lag"] == {"notification-events:0": 7}
    empty = view(metrics.merge([]), now_ms=0)
    assert empty["latency"]["produce_to_apply"] == {
        "count": 0,
        "counts": [0] * (len(LATENCY_BUCKETS_S) + 1),
        "p50_ms": None,
        "p90_ms": None,
        "p99_ms": None,
    }
    assert empty["buckets_s"] == list(LATENCY_BUCKETS_S)
