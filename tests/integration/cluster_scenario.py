"""Run by test_cluster_growth in its own process: a multi-node Ray cluster on this machine (one raylet per
node), the pipeline on it, then a node joins and leaves. Prints what the pipeline did, as JSON."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from typing import Any

import ray
from aiokafka import AIOKafkaConsumer, TopicPartition
from ray.cluster_utils import Cluster

from actors.reader import READER_GROUP
from herald.config import Settings, load_settings
from herald.topics import EVENTS_TOPIC
from pipeline import Pipeline

DEADLINE_S = 90.0


async def start_group_at_end(settings: Settings) -> None:
    """The scenario's readers start at the end of the topic: they are here to be placed, not to work."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.reader_group or READER_GROUP,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(EVENTS_TOPIC, p) for p in range(settings.events_partitions)]
        consumer.assign(partitions)
        await consumer.commit(dict(await consumer.end_offsets(partitions)))
    finally:
        await consumer.stop()


def wait_for(pipeline: Pipeline, accept: Any, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        pipeline.supervise_once(0.5)
        status = pipeline.status()
        if accept(status):
            return status
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}: {json.dumps(status, default=str)[:2000]}")


def serving(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [g for g in status["gateways"] if g.get("serving")]


def main() -> None:
    settings = load_settings(
        gateway_port=0, reader_group=f"herald-cluster-test-{uuid.uuid4().hex[:6]}", aggregators=1, delivery_actors=1
    )
    asyncio.run(start_group_at_end(settings))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    ray.init(address=cluster.address, namespace="herald")
    pipeline = Pipeline(settings, name="cluster").start()
    report: dict[str, Any] = {}
    try:
        status = wait_for(pipeline, lambda s: len(serving(s)) == 1, "one gateway")
        report["before"] = {"gateways": len(status["gateways"]), "readers": len(status["readers"])}

        joined = cluster.add_node(num_cpus=8)
        status = wait_for(pipeline, lambda s: len(serving(s)) == 2, "a gateway on the new node")
        report["joined"] = {
            "gateways": len(status["gateways"]),
            "gateway_nodes": len(pipeline.gateways),
            "ports": sorted(g["port"] for g in serving(status)),
            "readers": len(status["readers"]),
        }

        cluster.remove_node(joined)
        status = wait_for(pipeline, lambda s: len(pipeline.gateways) == 1 and len(serving(s)) == 1, "node gone")
        report["left"] = {"gateways": len(status["gateways"]), "readers": len(status["readers"])}
    finally:
        pipeline.drain()
        ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
