"""Runs the pipeline's own ReaderActor on a private topic and consumer group.

The readers of `pipeline.Pipeline` always read `notification-events` in the group `herald-readers`. On a box
shared with a CI run, that group and topic are live: a benchmark there would both steal the CI pipeline's events
and have its 200k events chewed by the CI pipeline. So the bench swaps `pipeline.Reader` for a subclass that
reads the bench topic in a bench group; everything else (routing, aggregators, commits, Ray options) is the
pipeline's code, unchanged. The subclass can also hold its poll loop until `go()`, so the drain timing starts at
consumption and not at Ray start-up.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import ray

import actors.reader as reader_module
import pipeline
from actors.factory import LOOP_GROUP
from actors.reader import ReaderActor
from herald.config import Settings
from herald.topics import EVENTS_TOPIC


def bench_reader_class(topic: str, group: str, *, gated: bool) -> Any:
    """A Ray actor class like `actors.factory.Reader`, bound to `topic` and `group`."""

    class BenchReaderActor(ReaderActor):
        def __init__(self, settings: Settings, index: int, aggregators: list[Any]) -> None:
            # run() reads the module global; this worker process hosts only this actor.
            reader_module.READER_GROUP = group
            super().__init__(settings, index, aggregators)
            self._go = threading.Event()
            if not gated:
                self._go.set()

        async def go(self) -> None:
            self._go.set()

        async def run(self, topic_ignored: str = EVENTS_TOPIC) -> None:
            while not self._go.is_set():  # noqa: ASYNC110 - set from go() on another loop (thread)
                await asyncio.sleep(0.01)
            await super().run(topic)

        async def health(self) -> dict[str, Any]:
            if not self._go.is_set():
                return {"actor": self.name, "ok": True, "gated": True, "lag": {}, "pid": os.getpid()}
            return await super().health()

    remote: Any = ray.remote
    return remote(concurrency_groups={LOOP_GROUP: 1}, max_restarts=-1, max_task_retries=0, num_cpus=0)(BenchReaderActor)


def install(topic: str, group: str, *, gated: bool) -> None:
    """Make every Pipeline created afterwards in this process use bench readers."""
    # setattr: `pipeline` imports Reader without re-exporting it, so mypy would refuse the plain assignment.
    setattr(pipeline, "Reader", bench_reader_class(topic, group, gated=gated))  # noqa: B010
