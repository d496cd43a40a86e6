"""Helpers for the gateway tests: in-process gateways on free ports, recording Socket.IO clients, an emitter
that publishes live entries like the pipeline's commits, tokens good and bad, and seeding through the
InboxApplier."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
import socketio

from herald import live
from herald.applier import InboxApplier
from herald.auth import mint_token
from herald.config import Settings, load_settings
from herald.events import NotificationEvent
from herald.gateway import Gateway, GatewayLimits
from herald.store_redis import RedisStore

TEST_SECRET = "gateway-tests-secret-0123456789abcdef"
WAIT_S = 10.0


def gateway_settings() -> Settings:
    return load_settings(jwt_secret=TEST_SECRET)


def new_user(prefix: str = "gw") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def alg_none_token(user_id: str) -> str:
    now = int(datetime.now(UTC).timestamp())
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({'sub': user_id, 'iat': now, 'exp': now + 3600})}."


def bad_signature_token(user_id: str) -> str:
    return mint_token(load_settings(jwt_secret="not-the-gateway-secret-0123456789"), user_id)


def expired_token(settings: Settings, user_id: str) -> str:
    return mint_token(settings, user_id, ttl_s=60, now=datetime.now(UTC) - timedelta(hours=2))


@asynccontextmanager
async def running_gateway(
    settings: Settings, limits: GatewayLimits | None = None
) -> AsyncIterator[tuple[Gateway, str]]:
    store = RedisStore.from_url(settings.redis_url)
    gateway = Gateway(settings, store, limits=limits)
    try:
        port = await gateway.serve(host="127.0.0.1", port=0)
        yield gateway, f"http://127.0.0.1:{port}"
    finally:
        await gateway.shutdown()
        await store.close()


class Emitter:
    """Publishes live entries the way a commit does (herald/live.py): to every gateway holding the user."""

    def __init__(self, settings: Settings) -> None:
        self.redis = aioredis.Redis.from_url(settings.redis_url)

    async def notification(self, user_id: str, body: dict[str, Any], *, unread: int | None = None) -> int:
        entry = live.encode_entry(user_id, notes=[body], unread=unread)
        return await live.announce(self.redis, user_id, entry, now_ms=_now_ms())

    async def inbox(self, user_id: str, change: dict[str, Any], *, unread: int | None = None) -> int:
        entry = live.encode_entry(user_id, inbox=change, unread=unread)
        return await live.announce(self.redis, user_id, entry, now_ms=_now_ms())

    async def close(self) -> None:
        await self.redis.aclose()


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def body(notification_id: str, version: int, cursor: int, text: str = "John liked it") -> dict[str, Any]:
    return {
        "id": notification_id,
        "version": version,
        "cursor": cursor,
        "text": text,
        "type": "POST_LIKED",
        "count": version,
        "actors": [],
        "target": {"type": "post", "id": "p1"},
        "read": False,
        "createdAt": "2026-11-26T10:00:00.000Z",
        "updatedAt": "2026-11-26T10:00:00.000Z",
    }


async def wait_until(predicate: Callable[[], bool], timeout_s: float = WAIT_S, what: str = "it") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        await asyncio.sleep(0.01)


class Recorder:
    """A python-socketio AsyncClient that records what it receives, in order."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.notifications: list[dict[str, Any]] = []
        self.unread: list[int] = []
        self.events: list[tuple[str, Any]] = []
        self.refusal: Any = None
        self.client.on("notification", self._on_notification)
        self.client.on("unread_count", self._on_unread)
        self.client.on("connect_error", self._on_connect_error)

    async def _on_notification(self, data: dict[str, Any]) -> None:
        self.notifications.append(data)
        self.events.append(("notification", data))

    async def _on_unread(self, data: dict[str, Any]) -> None:
        self.unread.append(int(data["unread"]))
        self.events.append(("unread_count", data))

    async def _on_connect_error(self, data: Any) -> None:
        self.refusal = data

    async def connect(self, url: str, token: str | None, since: int | None = None, **extra: Any) -> None:
        auth: dict[str, Any] | None = None if token is None else {"token": token, **extra}
        if auth is not None and since is not None:
            auth["since"] = since
        await self.client.connect(url, auth=auth, transports=["websocket"], wait_timeout=WAIT_S)

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.client.call(event, data, timeout=WAIT_S)

    def versions(self, notification_id: str) -> list[int]:
        return [n["version"] for n in self.notifications if n["id"] == notification_id]

    async def close(self) -> None:
        if self.client.connected:
            await self.client.disconnect()


@asynccontextmanager
async def connected(url: str, token: str, since: int | None = None) -> AsyncIterator[Recorder]:
    recorder = Recorder()
    await recorder.connect(url, token, since)
    try:
        # The server sends unread_count last in its connect sequence: after it, the client is live.
        await wait_until(lambda: bool(recorder.unread), what="the initial unread_count")
        yield recorder
    finally:
        await recorder.close()


class Seeder:
    """Applies events through the real InboxApplier, as the pipeline's aggregator actors do."""

    def __init__(self, settings: Settings) -> None:
        self.store = RedisStore.from_url(settings.redis_url)
        self.now_ms = int(datetime(2026, 11, 26, 10, 0, tzinfo=UTC).timestamp() * 1000)
        self.aggregator = InboxApplier(self.store, clock_ms=lambda: self.now_ms, delivery_channels=("IN_APP",))

    async def apply(self, *events: NotificationEvent) -> None:
        report = await self.aggregator.apply(list(events))
        assert not report.rejected, report.rejected

    async def close(self) -> None:
        await self.store.close()
