"""A Socket.IO client that behaves like a user's device: it reconnects by itself with `since`, and remembers
every (id, version) it was shown, so a test can count what it saw twice and what it never saw."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import socketio


class Device:
    """Reconnects after its gateway vanished or after `drop()`, with the cursor of the newest notification it
    saw as `since` (what the browser inbox and the SDKs do; docs/architecture.md, "Socket.IO protocol").
    `url` is a gateway URL, or a function giving a live one per attempt (a load balancer in front of gateways)."""

    def __init__(self, url: str | Callable[[], str], token: str) -> None:
        self._url, self.token = url, token
        self.gateways: list[str] = []  # the URL of every connection made, in order
        self.received: list[tuple[str, int, int]] = []  # (id, version, cursor), across every connection
        self.received_on: list[int] = []  # for each of `received`, the attempt (1, 2, ...) it arrived on
        self._attempt = 0
        self.connections = 0
        self._client: socketio.AsyncClient | None = None
        self._stopped = False

    @property
    def url(self) -> str:
        return self._url if isinstance(self._url, str) else self._url()

    @property
    def since(self) -> int:
        return max((cursor for _id, _version, cursor in self.received), default=0)

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def run(self) -> None:
        while not self._stopped:
            client = socketio.AsyncClient(reconnection=False)
            self._attempt += 1
            client.on("notification", self._receiver(client, self._attempt))
            self._client = client
            url = self.url
            try:
                await client.connect(
                    url, auth={"token": self.token, "since": self.since}, transports=["websocket"], wait_timeout=15
                )
            except socketio.exceptions.ConnectionError:
                # A connect that timed out may still be open underneath: close it, so that an app that gave up on
                # a connection never shows what arrives on it (and neither does this device).
                with contextlib.suppress(Exception):
                    await client.disconnect()
                await _close_session(client)
                await asyncio.sleep(0.2)  # the gateway is being restarted
                continue
            self.connections += 1
            self.gateways.append(url)
            await client.wait()  # returns when the connection is gone
            await _close_session(client)

    def _receiver(self, client: socketio.AsyncClient, attempt: int) -> Callable[[dict[str, Any]], Awaitable[None]]:
        async def on_notification(body: dict[str, Any]) -> None:
            if client is self._client:  # not a connection given up on
                self.received.append((body["id"], int(body["version"]), int(body["cursor"])))
                self.received_on.append(attempt)

        return on_notification

    def newest(self) -> dict[str, int]:
        """The newest version seen of each notification."""
        versions: dict[str, int] = {}
        for notification_id, version, _cursor in self.received:
            versions[notification_id] = max(version, versions.get(notification_id, 0))
        return versions

    def seen_twice(self) -> list[tuple[str, int]]:
        """(id, version) pairs this device was shown more than once."""
        return [key for key, times in Counter((i, v) for i, v, _c in self.received).items() if times > 1]

    async def drop(self) -> bool:
        """Close the connection from the client side (a phone losing its network); `run` reconnects."""
        client = self._client
        if client is None or not client.connected:
            return False
        await client.disconnect()
        return True

    async def stop(self) -> None:
        self._stopped = True
        if self._client is not None and self._client.connected:
            await self._client.disconnect()


async def _close_session(client: socketio.AsyncClient) -> None:
    # A failed or ended connection leaves its aiohttp session open, and asyncio logs each one at exit.
    session = getattr(client.eio, "http", None)
    if session is not None and not session.closed:
        await session.close()
