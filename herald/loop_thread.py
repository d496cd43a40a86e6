"""One async object on a private event-loop thread, for blocking facades over async clients
(SyncNotificationProducer, SyncUserDirectory).

Async clients (aiokafka, redis.asyncio) bind to the loop that opens them, so the object is created, used and
closed on one loop, run forever by a daemon thread; blocking callers hand it coroutines through
run_coroutine_threadsafe and wait for the result.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar


class AsyncClosable(Protocol):
    async def close(self) -> None: ...


T = TypeVar("T", bound=AsyncClosable)
R = TypeVar("R")


class LoopThread(Generic[T]):
    """Runs the object `create()` returns on a private loop thread named `name`, started on first use.

    `owner` names the facade in the error raised by call() once stopped. start() after stop() opens a new loop
    and a new object.
    """

    def __init__(self, owner: str, name: str, create: Callable[[], Coroutine[Any, Any, T]]) -> None:
        self._owner = owner
        self._name = name
        self._create = create
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._object: T | None = None
        self._lock = threading.Lock()

    def start(self) -> T:
        """The running object: starts the loop and creates the object first if needed (idempotent)."""
        running = self._object
        if running is not None:
            return running
        with self._lock:
            if self._object is None:
                self._object = self._open()
            return self._object

    def call(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run `coro` on the loop thread and wait for its result; RuntimeError if the loop is not running."""
        if self._loop is None:
            coro.close()  # never awaited, and never will be: close it rather than leak a warning
            raise RuntimeError(f"{self._owner} is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def stop(self) -> None:
        """Close the object on its loop, then stop the loop and join its thread; a no-op when not started."""
        with self._lock:
            running, self._object = self._object, None
            if running is not None:
                try:
                    self.call(running.close())
                finally:
                    self._stop_loop()

    def _open(self) -> T:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            # Created on the loop thread, not here: the async client binds to the loop that opens it.
            return self.call(self._create())
        except BaseException:
            self._stop_loop()
            raise

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()


class BlockingFacade(Generic[T]):
    """Base of the blocking facades: start() and close() (or a with block) around a LoopThread, and `_call` to
    run a coroutine of the running object there. start() is optional: the first call starts it."""

    def __init__(self, owner: str, thread_name: str, create: Callable[[], Coroutine[Any, Any, T]]) -> None:
        self._runner = LoopThread(owner, thread_name, create)

    def start(self) -> None:
        self._runner.start()

    def close(self) -> None:
        self._runner.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, use: Callable[[T], Coroutine[Any, Any, R]]) -> R:
        """Run `use(object)` on the loop thread, starting it first if needed, and wait for the result."""
        return self._runner.call(use(self._runner.start()))
