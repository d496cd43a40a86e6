"""Listens on the live channels of some gateway ids, as gateways do, and collects what commits publish."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from herald import keys
from herald.live import LiveEntry, parse_message

WAIT_S = 10.0


class Tap:
    """Subscribes to the live channels of some gateway ids and collects what arrives on each."""

    def __init__(self, client: aioredis.Redis, gateways: list[str]) -> None:
        self._pubsub = client.pubsub()
        self._gateways = gateways
        self.messages: dict[str, list[list[LiveEntry]]] = {g: [] for g in gateways}

    async def __aenter__(self) -> Tap:
        await self._pubsub.subscribe(*(keys.live_channel(g) for g in self._gateways))
        confirmed = 0
        while confirmed < len(self._gateways):
            message = await self._pubsub.get_message(timeout=WAIT_S)
            if message is not None and message["type"] == "subscribe":
                confirmed += 1
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def collect(self, messages: int) -> None:
        """Read until `messages` messages arrived in all, or fail after WAIT_S."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while sum(len(m) for m in self.messages.values()) < messages:
            if loop.time() > deadline:
                raise AssertionError(f"expected {messages} live messages, got {self.messages}")
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is not None:
                gateway = message["channel"].decode().removeprefix(keys.live_channel(""))
                self.messages[gateway].append(parse_message(message["data"]))

    async def nothing_more(self) -> None:
        """A PING through the same connection comes back after anything published before it: nothing else is
        on its way once the PONG is here."""
        await self._pubsub.ping()
        while True:
            message = await self._pubsub.get_message(timeout=WAIT_S)
            assert message is not None, "no PONG"
            if message["type"] == "pong":
                return
            assert message["type"] != "message", f"unexpected live message {message}"


async def present(client: aioredis.Redis, user: str, **claims: int) -> None:
    """Claim `user` for the given gateway ids, each until its expiry (epoch ms)."""
    await client.hset(keys.presence_key(user), mapping={g: str(expiry) for g, expiry in claims.items()})
