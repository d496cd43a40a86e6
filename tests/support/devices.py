"""A Socket.IO device as the SDKs and the browser inbox behave: it reconnects by itself when its gateway goes,
to whichever gateway `url` names at that moment, with the cursor of the newest notification it saw as `since`."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import socketio


class Device:
    """One python-socketio client of one user. `url` is a gateway URL, or a function giving a live one per
    attempt (what a load balancer in front of several gateways does)."""

    def __init__(self, url: str | Callable[[], str], token: str) -> None:
        self._url = url
        self.token = token
        self.received: list[tuple[str, int, int]] = []  # (id, version, cursor)
        self.connections = 0
        self.gateways: list[str] = []  # the URL of every connection made, in order
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
            client.on("notification", self._on_notification)
            self._client = client
            url = self.url
            try:
                await client.connect(
                    url, auth={"token": self.token, "since": self.since}, transports=["websocket"], wait_timeout=5
                )
            except socketio.exceptions.ConnectionError:
                await asyncio.sleep(0.2)  # the gateway is being restarted, or its node is gone
                continue
            self.connections += 1
            self.gateways.append(url)
            await client.wait()  # returns when the connection is gone

    async def _on_notification(self, body: dict[str, Any]) -> None:
        self.received.append((body["id"], int(body["version"]), int(body["cursor"])))

    def newest(self) -> dict[str, int]:
        versions: dict[str, int] = {}
        for notification_id, version, _cursor in self.received:
            versions[notification_id] = max(version, versions.get(notification_id, 0))
        return versions

    def seen_twice(self) -> list[tuple[str, int]]:
        """(id, version) pairs this device was sent more than once: each must reach a screen once."""
        return [key for key, times in Counter((i, v) for i, v, _c in self.received).items() if times > 1]

    async def stop(self) -> None:
        self._stopped = True
        if self._client is not None and self._client.connected:
            await self._client.disconnect()
