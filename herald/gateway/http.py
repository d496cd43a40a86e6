"""The plain HTTP side of the gateway: the browser inbox page and its assets from herald/static, and /healthz.
Only files that exist under the static directory are served, by exact path; everything else is a 404."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
VENDOR_CLIENT = "vendor/socket.io.min.js"
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


class HttpApp:
    def __init__(self, health: Callable[[], dict[str, Any]], static_dir: Path = STATIC_DIR) -> None:
        self._health = health
        self._static_dir = static_dir.resolve()

    def _file_for(self, path: str) -> Path | None:
        relative = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/")
        if relative == path or not relative:
            return None
        candidate = (self._static_dir / relative).resolve()
        if not candidate.is_relative_to(self._static_dir) or candidate.suffix not in _CONTENT_TYPES:
            return None
        return candidate if candidate.is_file() else None

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
        file = self._file_for(path)
        if file is None:
            await _respond(send, 404, b"not found\n", "text/plain")
            return
        body = await asyncio.to_thread(file.read_bytes)
        await _respond(send, 200, body, _CONTENT_TYPES[file.suffix])


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
