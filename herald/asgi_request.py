"""The two things a bare ASGI app needs from a request (the demo's stand-in servers, the test sinks): its whole
body and its headers by lower-case name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


def header_map(scope: dict[str, Any]) -> dict[str, str]:
    """Headers by lower-case name; a repeated header keeps its last value."""
    return {k.decode().lower(): v.decode() for k, v in scope["headers"]}
