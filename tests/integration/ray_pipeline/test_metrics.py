"""Metrics through ray.util.metrics: Ray's metrics agent on each node serves them in Prometheus format at the
node's MetricsExportPort; the session pipeline's events show up there with their tags (docs/architecture.md,
"Metrics and dashboard")."""

from __future__ import annotations

from typing import Any

import pytest
import ray

from herald.config import Settings
from herald.producer import NotificationProducer
from pipeline import Pipeline
from tests.integration.gateway_harness import wait_until
from tests.support.metrics_traffic import Sample, Traffic, growth, scrape, total
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.ray]

EVENTS = 30
INVALID = 3
# The actors export every 2 s and Ray's agent flushes on an interval of its own (~10 s seen here).
SCRAPE_TIMEOUT_S = 90


def metrics_urls() -> list[str]:
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return [
        f"http://{n['NodeManagerAddress']}:{n['MetricsExportPort']}/metrics"
        for n in nodes
        if n.get("Alive") and n.get("MetricsExportPort")
    ]


async def test_pipeline_metrics_are_scraped_from_rays_prometheus_endpoint(
    pipeline: Pipeline, pipeline_settings: Settings, producer: NotificationProducer
) -> None:
    urls = metrics_urls()
    assert urls, "no alive Ray node exports metrics"
    before = await scrape(urls)
    async with Traffic(pipeline_settings, producer) as traffic:
        await traffic.publish(EVENTS)
        await traffic.publish_invalid(INVALID)
        await wait_until(lambda: len(traffic.client.notifications) >= EVENTS, timeout_s=60, what="pushes")

    def grown(samples: list[Sample], name: str, by: float, **labels: str) -> bool:
        return growth(before, samples, name, **labels) >= by

    def all_there(samples: list[Sample]) -> bool:
        return (
            grown(samples, "ray_herald_events_in_total", EVENTS + INVALID)
            and grown(samples, "ray_herald_events_applied_total", EVENTS)
            and grown(samples, "ray_herald_dead_lettered_total", INVALID, stage="reader")
            and grown(samples, "ray_herald_deliveries_total", EVENTS, channel="IN_APP", outcome="DELIVERED")
            and grown(samples, "ray_herald_produce_to_apply_seconds_count", 1)
            and grown(samples, "ray_herald_produce_to_delivery_seconds_count", 1, channel="IN_APP")
            and any(s.name == "ray_herald_consumer_lag" for s in samples)
        )

    samples = await eventually(
        lambda: scrape(urls), all_there, timeout_s=SCRAPE_TIMEOUT_S, interval_s=1.0, what="herald_* series"
    )
    # Other pipelines of the session (their own topics) export lag too: this pipeline's partitions are named.
    ours = {f"{pipeline_settings.events_topic}:{p}" for p in range(pipeline_settings.events_partitions)}
    lag_partitions = {s.labels["partition"] for s in samples if s.name == "ray_herald_consumer_lag"} & ours
    assert lag_partitions, "no partition's lag reported"
    # Latencies are real: positive, and below the time this test has been running.
    apply_sum = total(samples, "ray_herald_produce_to_apply_seconds_sum")
    apply_count = total(samples, "ray_herald_produce_to_apply_seconds_count")
    assert 0 < apply_sum / apply_count < SCRAPE_TIMEOUT_S
    buckets = [s for s in samples if s.name == "ray_herald_produce_to_delivery_seconds_bucket"]
    assert {s.labels["channel"] for s in buckets} >= {"IN_APP"}
    assert any(s.labels["le"] == "+Inf" for s in buckets)
