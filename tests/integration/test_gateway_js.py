"""The gateway with the official JavaScript socket.io-client v4 (pinned in tests/e2e/js) under Node: connect,
live notification and its update, refusals, isolation from another user's rooms, and the existing
application's protocol ("compat")."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from herald.auth import mint_token
from herald.config import Settings
from herald.gateway import Gateway
from tests.integration.gateway_harness import (
    WAIT_S,
    Emitter,
    Seeder,
    alg_none_token,
    bad_signature_token,
    body,
    expired_token,
    gateway_settings,
    new_user,
)
from tests.support.events import make_event

pytestmark = pytest.mark.integration

JS_DIR = Path(__file__).resolve().parents[1] / "e2e" / "js"
CLIENT = JS_DIR / "client.mjs"


@pytest.fixture(scope="module")
def node() -> str:
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "socket.io-client").is_dir():
        pytest.fail(f"needs node and `npm ci --prefix {JS_DIR}` (scripts/dev setup does both)")
    return node


@pytest.fixture(scope="module")
def settings() -> Settings:
    return gateway_settings()


class NodeClient:
    """One `node client.mjs` process: its stdout lines are the events the JS client saw."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(
        cls,
        node: str,
        url: str,
        token: str | None,
        since: int | None = None,
        transports: str = "websocket",
        protocol: str = "",
    ) -> NodeClient:
        args = [str(CLIENT), url, token or "-", *([] if since is None else [str(since)])]
        proc = await asyncio.create_subprocess_exec(
            node,
            *args,
            cwd=JS_DIR,
            env={**os.environ, "HERALD_TRANSPORTS": transports, "HERALD_PROTOCOL": protocol},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(json.loads(raw))

    def of(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["event"] == event]

    async def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while not predicate():
            if loop.time() > deadline:
                raise AssertionError(f"JS client: timed out waiting for {what}; saw {self.lines}")
            if self._reader.done() and not predicate():
                raise AssertionError(f"JS client exited ({self.proc.returncode}) before {what}; saw {self.lines}")
            await asyncio.sleep(0.01)

    async def call(self, event: str, data: Any) -> Any:
        call_id = next(self._ids)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": call_id, "event": event, "data": data}).encode() + b"\n")
        await self.proc.stdin.drain()
        await self.wait_for(lambda: any(a["id"] == call_id for a in self.of("ack")), f"ack {call_id}")
        [ack] = [a for a in self.of("ack") if a["id"] == call_id]
        assert ack["error"] is None, ack
        return ack["ack"]

    async def close(self) -> int:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout=WAIT_S)
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        await self._reader
        return code


async def test_js_client_connects_and_receives_live_notification_and_update(
    node: str, settings: Settings, gateway: tuple[Gateway, str], emitter: Emitter
) -> None:
    _gw, url = gateway
    user = new_user("js")
    client = await NodeClient.start(node, url, mint_token(settings, user))
    try:
        await client.wait_for(lambda: bool(client.of("unread_count")), "connect and unread_count")
        assert client.of("connect")
        await emitter.notification(user, body("n1", 1, 1, "John liked your post"))
        await emitter.notification(user, body("n1", 2, 2, "John and Sarah liked your post"))
        await emitter.notification(user, body("n1", 1, 1))  # a stale redelivery
        await emitter.notification(user, body("n2", 1, 3))  # control
        await client.wait_for(lambda: len(client.of("notification")) >= 3, "three notifications")
        seen = [(n["data"]["id"], n["data"]["version"]) for n in client.of("notification")]
        assert seen == [("n1", 1), ("n1", 2), ("n2", 1)]
        assert client.of("notification")[1]["data"]["text"] == "John and Sarah liked your post"
        assert await client.call("mark_all_read", {}) == {"ok": True, "unread": 0}
        assert await client.call("fetch", {"limit": "x"}) == {
            "ok": False,
            "error": "limit: Input should be a valid integer",
        }
    finally:
        assert await client.close() == 0


@pytest.mark.parametrize(
    ("case", "expected"),
    [("bad signature", "signature"), ("expired", "expired"), ("alg none", "algorithm"), ("missing", "missing")],
)
async def test_js_client_is_refused_with_a_clear_reason(
    node: str, settings: Settings, gateway: tuple[Gateway, str], case: str, expected: str
) -> None:
    _gw, url = gateway
    user = new_user("js")
    token = {
        "bad signature": bad_signature_token(user),
        "expired": expired_token(settings, user),
        "alg none": alg_none_token(user),
        "missing": None,
    }[case]
    client = await NodeClient.start(node, url, token)
    try:
        await client.wait_for(lambda: bool(client.of("connect_error")), "connect_error")
        assert expected in client.of("connect_error")[0]["message"].lower()
        assert not client.of("connect")
    finally:
        assert await client.close() == 0


async def test_js_client_cannot_receive_another_users_notifications(
    node: str, settings: Settings, gateway: tuple[Gateway, str], emitter: Emitter
) -> None:
    _gw, url = gateway
    alice, bob = new_user("alice"), new_user("bob")
    client = await NodeClient.start(node, url, mint_token(settings, alice))
    try:
        await client.wait_for(lambda: bool(client.of("unread_count")), "connect")
        assert (await client.call("join", {"room": f"user:{bob}"}))["ok"] is False
        await emitter.notification(bob, body("secret", 1, 1))
        await emitter.notification(alice, body("mine", 1, 1))
        await client.wait_for(lambda: bool(client.of("notification")), "alice's control notification")
        assert [n["data"]["id"] for n in client.of("notification")] == ["mine"]
    finally:
        assert await client.close() == 0


async def test_js_client_over_long_polling_only(
    node: str, settings: Settings, gateway: tuple[Gateway, str], emitter: Emitter
) -> None:
    _gw, url = gateway
    user = new_user("poll")
    client = await NodeClient.start(node, url, mint_token(settings, user), transports="polling")
    try:
        await client.wait_for(lambda: bool(client.of("unread_count")), "connect and unread_count")
        assert client.of("connect")[0]["transport"] == "polling"
        await emitter.notification(user, body("p1", 1, 1))
        await client.wait_for(lambda: bool(client.of("notification")), "a notification over polling")
        assert client.of("notification")[0]["data"]["id"] == "p1"
        assert await client.call("mark_all_read", {}) == {"ok": True, "unread": 0}
    finally:
        assert await client.close() == 0


async def test_js_client_speaks_the_existing_applications_protocol(
    node: str, settings: Settings, gateway: tuple[Gateway, str], emitter: Emitter
) -> None:
    _gw, url = gateway
    user = new_user("jscompat")
    seeder = Seeder(settings)
    try:
        await seeder.apply(make_event(user=user, actor="u1", actor_name="John", target="p1"))
        [stored] = await seeder.store.notifications_after(user, 0, 10)
        client = await NodeClient.start(node, url, mint_token(settings, user), protocol="compat")
        try:
            await client.wait_for(lambda: bool(client.of("notification:count_updated")), "connect and count")
            assert client.of("notification:count_updated")[0]["data"] == {"unreadCount": 1}
            # Live, as a later commit would carry it: above the sequence number the gateway read with its claim.
            await emitter.notification(user, stored | {"cursor": stored["cursor"] + 1000})
            await client.wait_for(lambda: bool(client.of("notification:new")), "notification:new")
            new = client.of("notification:new")[0]["data"]
            assert new["notification"]["id"] == stored["id"]
            assert new["notification"]["message"] == "John liked your post"
            assert new["notification"]["entityId"] == "p1"
            assert new["notification"]["aggregatedActors"] == ["u1"]
            assert new["timestamp"] == stored["updatedAt"]
            # A count follows every new notification.
            await client.wait_for(lambda: len(client.of("notification:count_updated")) >= 2, "count after it")
            counts_before = len(client.of("notification:count_updated"))
            ack = await client.call("notification:mark_read", {"notificationId": stored["id"]})
            assert ack == {"ok": True, "unreadCount": 0}
            await client.wait_for(
                lambda: len(client.of("notification:count_updated")) > counts_before, "count after the read"
            )
            assert client.of("notification:count_updated")[-1]["data"] == {"unreadCount": 0}
            assert client.of("notification:read")[-1]["data"] == {"notificationId": stored["id"]}
            # Only the application's events: none of Herald's own, and never the internal inbox change.
            assert not client.of("notification")
            assert not client.of("unread_count")
            assert not client.of("herald:inbox")
        finally:
            assert await client.close() == 0
    finally:
        await seeder.close()
