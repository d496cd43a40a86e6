"""A gateway's side of the live path (herald/live.py): its presence in the users' presence hashes, and its
subscription to its own live channel.

Presence writes go through one writer task, in the order they were asked for, each turn's writes in one
pipeline: a user who disconnects and reconnects at once must end present, and 10,000 clients connecting
together must not cost 10,000 round trips.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from herald import keys
from herald.cancelling import cancel_and_wait
from herald.live import PRESENCE_TTL_MS, LiveEntry, MalformedLiveMessage, parse_message

log = logging.getLogger(__name__)

RESUBSCRIBE_BACKOFF_S = (0.1, 0.5, 1.0, 2.0)


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class Presence:
    """Which users this gateway holds, written to Redis so commits know where to publish."""

    def __init__(
        self,
        client: aioredis.Redis,
        gateway_id: str,
        *,
        on_lapsed: Callable[[str], None],
        ttl_ms: int = PRESENCE_TTL_MS,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self._redis = client
        self._gateway_id = gateway_id
        self._on_lapsed = on_lapsed  # a user whose entry had lapsed: commits meanwhile were not published here
        self._ttl_ms = ttl_ms
        self._clock_ms = clock_ms
        self._holders: dict[str, int] = {}  # user -> connections on this gateway
        self._registered: dict[str, asyncio.Future[int]] = {}  # user -> its seq when presence was written
        self._queue: list[tuple[str, str, asyncio.Future[Any]]] = []  # (op, user, result)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def users(self) -> list[str]:
        return list(self._holders)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="herald-presence-writer"),
            asyncio.create_task(self._refresh_loop(), name="herald-presence-refresh"),
        ]

    def claim(self, user_id: str) -> asyncio.Future[int]:
        """Count a connection of `user_id` (pair it with one release()). The future resolves once commits
        publish to this gateway for the user, to the user's sequence number at that moment: everything up to
        it is in the inbox, everything after it comes live."""
        self._holders[user_id] = self._holders.get(user_id, 0) + 1
        registered = self._registered.get(user_id)
        if registered is None or (registered.done() and registered.exception() is not None):
            registered = self._enqueue("hold", user_id)
            self._registered[user_id] = registered
        return registered

    def release(self, user_id: str) -> None:
        count = self._holders.get(user_id, 0) - 1
        if count > 0:
            self._holders[user_id] = count
            return
        self._holders.pop(user_id, None)
        self._registered.pop(user_id, None)
        self._enqueue("release", user_id)

    def _enqueue(self, op: str, user_id: str) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((op, user_id, future))
        self._wake.set()
        return future

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[tuple[str, str, asyncio.Future[Any]]]) -> None:
        try:
            replies = await self._execute(batch)
        except (RedisError, OSError) as exc:
            for _op, _user, future in batch:
                if not future.done():
                    future.set_exception(exc)
                # Nobody awaits a failed release or refresh: retrieve it so asyncio does not report it lost.
                future.exception()
            return
        for op, user_id, future in batch:
            if op == "release":
                future.set_result(next(replies))
                continue
            added, _expire = next(replies), next(replies)
            if op == "hold":
                future.set_result(int(next(replies) or 0))
                continue
            future.set_result(None)
            if int(added) and user_id in self._holders:
                self._on_lapsed(user_id)

    async def _execute(self, batch: list[tuple[str, str, asyncio.Future[Any]]]) -> Iterator[Any]:
        expiry = str(self._clock_ms() + self._ttl_ms)
        async with self._redis.pipeline(transaction=False) as pipe:
            for op, user_id, _future in batch:
                presence = keys.presence_key(user_id)
                if op == "release":
                    pipe.hdel(presence, self._gateway_id)
                    continue
                pipe.hset(presence, self._gateway_id, expiry)
                pipe.pexpire(presence, 2 * self._ttl_ms)
                if op == "hold":
                    pipe.get(keys.seq_key(user_id))
            return iter(await pipe.execute())

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            for user_id in list(self._holders):
                self._enqueue("refresh", user_id)

    async def close(self) -> None:
        await cancel_and_wait(self._tasks, what="presence writer")
        users, self._holders = list(self._holders), {}
        self._registered.clear()
        if users:
            # Leave no claims behind; if this fails they lapse by themselves.
            with contextlib.suppress(RedisError, OSError):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for user_id in users:
                        pipe.hdel(keys.presence_key(user_id), self._gateway_id)
                    await pipe.execute()


class LiveSubscription:
    """Listens on this gateway's live channel; after losing the subscription, re-subscribes and calls
    `on_resubscribed` (what was published meanwhile never arrived)."""

    def __init__(
        self,
        client: aioredis.Redis,
        gateway_id: str,
        *,
        on_entries: Callable[[list[LiveEntry]], Awaitable[None]],
        on_resubscribed: Callable[[], None],
        on_malformed: Callable[[str], None],
    ) -> None:
        self._redis = client
        self.channel = keys.live_channel(gateway_id)
        self._on_entries = on_entries
        self._on_resubscribed = on_resubscribed
        self._on_malformed = on_malformed
        self._pubsub: Any = None
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False  # ends the loops even if a cancellation arrives as a Redis error

    async def start(self, timeout_s: float) -> None:
        self._task = asyncio.create_task(self._run(), name=f"herald-live-{self.channel}")
        await asyncio.wait_for(self.subscribed.wait(), timeout_s)

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            try:
                await self._subscribe()
                if failures:
                    log.warning("live channel %s subscribed again: filling gaps from the inbox", self.channel)
                    self._on_resubscribed()
                failures = 0
                await self._listen()
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                if self._closing:
                    return
                failures += 1
                log.warning("live channel %s lost (%s); re-subscribing", self.channel, exc)
                await self._close_pubsub()
                await asyncio.sleep(RESUBSCRIBE_BACKOFF_S[min(failures, len(RESUBSCRIBE_BACKOFF_S)) - 1])

    async def _subscribe(self) -> None:
        self._pubsub = self._redis.pubsub()
        await self._pubsub.subscribe(self.channel)
        # The confirmation: from here on every message published on the channel reaches this listener.
        while True:
            message = await self._pubsub.get_message(timeout=5.0)
            if message is not None and message["type"] == "subscribe":
                break
        self.subscribed.set()

    async def _listen(self) -> None:
        while not self._closing:
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=30.0)
            if message is None or message["type"] != "message":
                continue
            try:
                entries = parse_message(message["data"])
            except MalformedLiveMessage as exc:
                self._on_malformed(str(exc))
                continue
            await self._on_entries(entries)

    async def _close_pubsub(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()
            self._pubsub = None

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            await cancel_and_wait([self._task], what=f"live channel {self.channel}")
        await self._close_pubsub()
