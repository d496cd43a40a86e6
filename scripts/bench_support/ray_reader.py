"""The bench's pipeline settings and, for the drain, a reader that holds its poll loop until `go()`.

On a box shared with a CI run, the default topic and consumer group are live: a benchmark there would both steal
the CI pipeline's events and have its events chewed by the CI pipeline. So every run reads its own topic in its
own group, passed as settings (`events_topic`, `reader_group`) like any deployment would; everything else
(routing, aggregators, commits, Ray options) is the pipeline's code, unchanged.

The drain also needs its timing to start at consumption and not at Ray start-up: `gated_reader()` is
`actors.factory.Reader` with a poll loop that waits for `go()`, handed to `Pipeline(reader_actor=...)`.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from typing import Any

import ray

from actors.factory import LOOP_GROUP
from actors.reader import ReaderActor
from herald.config import Settings
from herald.contracts import ActorHealth


def bench_settings(settings: Settings, *, topic: str, group: str) -> Settings:
    """`settings` reading `topic` in `group`."""
    return settings.model_copy(update={"events_topic": topic, "reader_group": group})


class GatedReaderActor(ReaderActor):
    def __init__(self, settings: Settings, index: int, aggregator_names: Sequence[str]) -> None:
        super().__init__(settings, index, aggregator_names)
        self._go = threading.Event()

    async def go(self) -> None:
        self._go.set()

    async def run(self) -> None:
        while not self._go.is_set():  # noqa: ASYNC110 - set from go() on another loop (thread)
            await asyncio.sleep(0.01)
        await super().run()

    async def health(self) -> ActorHealth:
        if not self._go.is_set():
            return {"actor": self.name, "ok": True, "gated": True, "lag": {}, "pid": os.getpid()}
        return await super().health()


def gated_reader() -> Any:
    """A Ray actor class like `actors.factory.Reader` whose poll loop starts at `go()`."""
    remote: Any = ray.remote
    return remote(concurrency_groups={LOOP_GROUP: 1}, max_restarts=-1, max_task_retries=0, num_cpus=0)(GatedReaderActor)
