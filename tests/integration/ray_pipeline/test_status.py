"""Pipeline.status() on the running pipeline: every actor answers, and actors that do not answer cost one shared
deadline, not one each."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import ray

from pipeline import Pipeline

pytestmark = [pytest.mark.integration, pytest.mark.ray]


def test_status_lists_every_actor_of_the_pipeline(pipeline: Pipeline) -> None:
    status = pipeline.status()

    assert len(status["readers"]) == len(pipeline.readers)
    assert len(status["aggregators"]) == len(pipeline.aggregators)
    assert len(status["delivery"]) == len(pipeline.delivery)
    assert len(status["gateways"]) == len(pipeline.gateways)
    every = [h for group in status.values() for h in group]
    assert all(h["ok"] for h in every), [h for h in every if not h["ok"]]
    assert [h.get("actor") for h in status["readers"]] == [f"reader-{i}" for i in range(len(pipeline.readers))]
    assert sum(len(h.get("partitions", [])) for h in status["readers"]) == pipeline.settings.events_partitions
    assert all("batches" in h for h in status["aggregators"])


def test_actors_that_do_not_answer_share_one_deadline_and_show_as_unreachable(pipeline: Pipeline) -> None:
    # Defined here so Ray ships the class by value: workers cannot import this test module by name.
    class SilentActor:
        """Stands for an actor that is alive but does not answer (stuck, or its node unreachable)."""

        async def ping(self) -> None:
            return None

        async def health(self) -> dict[str, object]:
            await asyncio.sleep(3600)
            return {"ok": True}

    remote: Any = ray.remote  # Ray's stubs do not know the num_cpus option on a class
    silent = [remote(num_cpus=0)(SilentActor).remote() for _ in range(3)]
    # A second view of the same actors plus the silent ones: the session's pipeline itself is left as it is.
    view = Pipeline(pipeline.settings, name="status-view")
    view.readers, view.aggregators = pipeline.readers, [*pipeline.aggregators, *silent]
    view.delivery, view.gateways = pipeline.delivery, pipeline.gateways
    try:
        ray.get([a.ping.remote() for a in silent], timeout=60)
        deadline_s = 3.0
        started = time.monotonic()
        status = view.status(timeout_s=deadline_s)
        elapsed_s = time.monotonic() - started
    finally:
        for actor in silent:
            ray.kill(actor)

    # Asked one after another, three silent actors would take three deadlines.
    assert elapsed_s < 2 * deadline_s, f"status() took {elapsed_s:.1f}s"
    real = len(pipeline.aggregators)
    assert [h["ok"] for h in status["aggregators"]] == [True] * real + [False] * 3
    unreachable = status["aggregators"][real:]
    assert [h.get("actor") for h in unreachable] == [f"aggregators[{real + i}]" for i in range(3)]
    assert all(h.get("error") == "no answer within 3s" for h in unreachable)
    assert all(h["ok"] for group in ("readers", "delivery", "gateways") for h in status[group])
