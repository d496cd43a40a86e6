"""The plain HTTP side of the gateway that python-socketio does not serve: /healthz, /dashboard/data (the
cluster's merged metrics for the /dashboard page), and 404 for the rest.

The browser inbox page and its assets are python-socketio's `static_files` (see `static_files()`), so
only files under herald/static are served, and paths that climb out of it are refused by engine.io."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
VENDOR_CLIENT = "vendor/socket.io.min.js"


def static_files(static_dir: Path = STATIC_DIR) -> dict[str, Any]:
    """python-socketio's static file rules: `/` is the inbox page, `/static/...` its assets."""
    index = static_dir / "index.html"
    return {
        "/": {"filename": str(index), "content_type": "text/html; charset=utf-8"},
        "/index.html": {"filename": str(index), "content_type": "text/html; charset=utf-8"},
        # /dashboard/data is no file under it, so engine.io passes it on to HttpApp.
        "/dashboard": {"filename": str(static_dir / "dashboard.html"), "content_type": "text/html; charset=utf-8"},
        "/static": str(static_dir),
    }


class HttpApp:
    def __init__(
        self,
        health: Callable[[], dict[str, Any]],
        dashboard_data: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        self._health = health
        self._dashboard_data = dashboard_data

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope.get("path", "/")
        if scope.get("method") not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed\n", "text/plain")
            return
        if path == "/healthz":
            health = self._health()
            status = 200 if health.get("ok") else 503
            await _respond(send, status, json.dumps(health).encode(), "application/json")
            return
        if path == "/dashboard/data" and self._dashboard_data is not None:
            try:
                data = await self._dashboard_data()
            except (RedisError, OSError) as exc:
                await _respond(send, 503, json.dumps({"error": f"metrics board: {exc}"}).encode(), "application/json")
                return
            await _respond(send, 200, json.dumps(data).encode(), "application/json")
            return
        await _respond(send, 404, b"not found\n", "text/plain")


async def _respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
