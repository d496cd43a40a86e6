"""Ray runs each concurrency group of an async actor on its own event loop (its own thread). Control calls
(health, drain) arrive on the default loop but must touch objects owned by the loop group's loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import ray

T = TypeVar("T")


def node_id() -> str:
    """The Ray node this actor runs on (in its health: where Ray placed or restarted it); "" outside Ray, where
    asking would start a Ray runtime."""
    if not ray.is_initialized():
        return ""
    return str(ray.get_runtime_context().get_node_id())


class OwnedLoop:
    """Remembers the loop that owns an actor's I/O objects and runs coroutines there from any loop."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def claim(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._loop
        if loop is None or loop is asyncio.get_running_loop():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))
