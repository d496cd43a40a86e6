"""A real HTTP server on loopback for provider tests: records every request and answers from a script.

    async with HttpSink() as sink:
        sink.respond(429, headers={"Retry-After": "1"})   # the next request gets this, later ones 200
        ...
        request = await sink.wait_for(1)

It is uvicorn serving a bare ASGI app in the test's own event loop, so providers talk real HTTP over TCP.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

import orjson
import uvicorn

from herald.asgi_request import header_map, read_body


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})


Responder = Callable[[SeenRequest], Awaitable[Reply] | Reply]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HttpSink:
    def __init__(self, responder: Responder | None = None) -> None:
        self.requests: list[SeenRequest] = []
        self._scripted: list[Reply] = []
        self._responder = responder
        self._arrived = asyncio.Condition()
        self.port = free_port()
        config = uvicorn.Config(
            self._app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", interface="asgi3"
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def respond(self, status: int, body: bytes | dict[str, Any] = b"{}", headers: dict[str, str] | None = None) -> None:
        """Queue the reply to the next request that finds no earlier scripted reply."""
        raw = orjson.dumps(body) if isinstance(body, dict) else body
        self._scripted.append(Reply(status, raw, {"content-type": "application/json", **(headers or {})}))

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> list[SeenRequest]:
        """The first `count` requests, once they have arrived (or AssertionError after the deadline)."""
        async with self._arrived:
            try:
                await asyncio.wait_for(self._arrived.wait_for(lambda: len(self.requests) >= count), timeout_s)
            except TimeoutError:
                raise AssertionError(f"{len(self.requests)} requests arrived, expected {count}") from None
        return self.requests[:count]

    async def __aenter__(self) -> HttpSink:
        self._task = asyncio.create_task(self._server.serve())
        deadline = asyncio.get_running_loop().time() + 10
        while not self._server.started:
            if self._task.done() or asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"the HTTP sink did not start on port {self.port}")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        seen = SeenRequest(scope["method"], scope["path"], scope["query_string"].decode(), header_map(scope), body)
        if self._scripted:
            reply = self._scripted.pop(0)
        elif self._responder is not None:
            answer = self._responder(seen)
            reply = await answer if isinstance(answer, Awaitable) else answer
        else:
            reply = Reply()
        async with self._arrived:
            self.requests.append(seen)
            self._arrived.notify_all()
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(k.encode(), v.encode()) for k, v in reply.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})
