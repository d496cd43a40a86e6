"""Stopping background tasks without trusting every library to let a cancellation through.

A task that turns a CancelledError into an error it handles (a client library that reports a cancelled read as
a connection error, a loop that catches it and retries) survives `task.cancel()`, and `await gather(task)` then
waits forever: a drain that never ends. `cancel_and_wait` cancels, waits a bounded time, cancels again, and
gives up with a warning rather than hang the shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

CANCEL_ROUNDS = 3


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], *, what: str, timeout_s: float = 5.0) -> list[str]:
    """Cancel `tasks` and wait for them, at most CANCEL_ROUNDS times `timeout_s`; returns the names of those still
    running (logged), which the caller leaves behind."""
    pending = {task for task in tasks if not task.done()}
    for _ in range(CANCEL_ROUNDS):
        if not pending:
            return []
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=timeout_s)
    names = sorted(task.get_name() for task in pending)
    if names:
        log.warning("%s: %d task(s) ignored cancellation, left running: %s", what, len(names), ", ".join(names))
    return names
