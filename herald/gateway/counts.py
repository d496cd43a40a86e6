"""Unread counts the gateway reads from the store itself, coalesced per user.

Some changes reach a connection without the count they lead to: a new notification (the application's
clients expect a fresh count after each), or a pipeline inbox change (whose count would be stale by the time it
arrives). Reading the count once per such emit would cost a store read per notification in a burst; instead
requests for a user gather over a short window and one read answers all of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from herald.errors import HeraldError

log = logging.getLogger(__name__)


class CountRefresher:
    def __init__(
        self,
        read: Callable[[str], Awaitable[int]],
        deliver: Callable[[str, int], Awaitable[None]],
        *,
        window_s: float,
        on_error: Callable[[Exception], None],
    ) -> None:
        self._read = read
        self._deliver = deliver  # (sid, unread)
        self._window_s = window_s
        self._on_error = on_error
        self._waiting: dict[str, set[str]] = {}  # user -> sids that want the count
        self._running: dict[str, asyncio.Task[None]] = {}
        self._generation: dict[str, int] = {}  # user -> counts sent by other paths while a read runs
        self.reads = 0

    @property
    def pending(self) -> int:
        """Users whose count is being gathered or read right now."""
        return len(self._running)

    def request(self, user_id: str, sid: str) -> None:
        self._waiting.setdefault(user_id, set()).add(sid)
        if user_id not in self._running:
            task = asyncio.create_task(self._run(user_id), name=f"herald-count-{user_id}")
            self._running[user_id] = task

    def superseded(self, user_id: str) -> None:
        """A count reached the user's connections another way (an emit carrying one, get_count); a read that
        started before it may be older and must not be delivered after it."""
        if user_id in self._running:
            self._generation[user_id] = self._generation.get(user_id, 0) + 1

    async def _run(self, user_id: str) -> None:
        try:
            while user_id in self._waiting:
                await asyncio.sleep(self._window_s)
                sids = self._waiting.pop(user_id, set())
                generation = self._generation.get(user_id, 0)
                self.reads += 1
                unread = await self._read(user_id)
                if self._generation.get(user_id, 0) != generation:
                    # Read again rather than overwrite a count that may be newer than this one.
                    self._waiting.setdefault(user_id, set()).update(sids)
                    continue
                for sid in sids:
                    await self._deliver(sid, unread)
        except (HeraldError, RedisError, OSError) as exc:
            # The next change brings another count; a client can also ask (notification:get_count).
            self._waiting.pop(user_id, None)
            self._on_error(exc)
        finally:
            self._running.pop(user_id, None)
            self._generation.pop(user_id, None)

    async def close(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._waiting.clear()
