"""Garbage from Socket.IO clients at a real gateway (docs/reliability.md, Bad input): random payloads on every
client event of both protocols get an ack, `{ok: false, error}` for the malformed ones; malformed Engine.IO and
Socket.IO packets on a raw websocket cost at most that connection; and afterwards every client is served
correctly (live notifications, reads, counts)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import aiohttp
import orjson
import pytest
import socketio

from herald.auth import mint_token
from herald.config import Settings
from herald.gateway import Gateway, GatewayLimits
from tests.integration.gateway_harness import (
    Emitter,
    body,
    connected,
    gateway_settings,
    new_user,
    running_gateway,
    wait_until,
)

pytestmark = pytest.mark.integration

HERALD_EVENTS = ["mark_read", "mark_all_read", "fetch", "register_push", "unregister_push", "no_such_event"]
COMPAT_EVENTS = [
    "notification:mark_read",
    "notification:mark_all_read",
    "notification:get_count",
    "join:notifications",
    "mark_read",
]


@pytest.fixture(scope="module")
def settings() -> Settings:
    return gateway_settings()


def garbage(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value, biased towards the shapes the handlers look at."""
    pick = rng.randrange(12 if depth < 3 else 7)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False, 0, -1, 2**62, 1.5e308, -0.0])
    if pick == 2:
        return "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(0, 40)))
    if pick == 3:
        return "x" * rng.randrange(200, 3000)
    if pick == 4:
        return {"ids": [rng.choice(["", "n1", "x" * 300, 7]) for _ in range(rng.randrange(0, 600))]}
    if pick == 5:
        # (Integers beyond 64 bits: the client's encoder cannot send them; RAW_FRAMES does.)
        return {"before": rng.choice([-1, "1", 2**63 - 1, None]), "limit": rng.choice([0, 101, "5", 1.5, 10])}
    if pick == 6:
        return {"notificationId": garbage(rng, 3), "notificationIds": garbage(rng, 3), "userId": "someone-else"}
    if pick < 9:
        return [garbage(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {str(garbage(rng, 3))[:20]: garbage(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


async def barrage(client: socketio.AsyncClient, events: list[str], rng: random.Random, count: int) -> list[Any]:
    """`count` random calls, paced under the rate limit so every one is answered for its content."""
    acks = []
    for _ in range(count):
        event, args = rng.choice(events), [garbage(rng) for _ in range(rng.choice([0, 1, 1, 1, 2]))]
        if len(orjson.dumps(args)) > 48 * 1024:
            continue  # over max_payload_bytes the connection is closed, by design (tested in test_gateway.py)
        try:
            acks.append(await client.call(event, tuple(args) if len(args) != 1 else args[0], timeout=10))
        except socketio.exceptions.TimeoutError:
            pytest.fail(f"no ack for {event} {str(args)[:300]}")
    return acks


@pytest.mark.timeout(300)
async def test_random_payloads_on_every_client_event_then_correct_service(settings: Settings, emitter: Emitter) -> None:
    limits = GatewayLimits(events_per_s=1000, burst=1000)  # this test is about content, not rate
    async with running_gateway(settings, limits) as (gw, url):
        user = new_user("garbage")
        rng = random.Random(20261129)
        compat = socketio.AsyncClient(reconnection=False)
        await compat.connect(url, auth={"token": mint_token(settings, user), "protocol": "compat"}, wait_timeout=10)
        try:
            async with connected(url, mint_token(settings, user)) as herald_client:
                herald_acks = await barrage(herald_client.client, HERALD_EVENTS, rng, 300)
                compat_acks = await barrage(compat, COMPAT_EVENTS, rng, 300)
                for ack in [*herald_acks, *compat_acks]:
                    assert isinstance(ack, dict), ack
                    assert ack["ok"] is True or (ack["ok"] is False and ack["error"]), ack
                refused = sum(1 for a in [*herald_acks, *compat_acks] if not a["ok"])
                assert refused > 300  # most of it is garbage, and was answered as such
                assert gw.counters.bad_requests + gw.counters.unknown_events == refused - gw.counters.store_errors
                assert gw.counters.store_errors == 0

                # Then correct service on both protocols, on the same connections.
                received: list[Any] = []
                compat.on("notification:new", received.append)
                await emitter.notification(user, body("after-garbage", 1, 1), unread=1)
                await wait_until(lambda: herald_client.versions("after-garbage") == [1], what="herald live")
                await wait_until(lambda: len(received) == 1, what="compat live")
                assert await herald_client.call("mark_read", {"ids": ["after-garbage"]}) == {"ok": True, "unread": 0}
                ack = await compat.call("notification:get_count", None, timeout=10)
                assert ack == {"ok": True, "unreadCount": 0}
        finally:
            await compat.disconnect()


RAW_FRAMES: list[str | bytes] = [
    "42[",  # a Socket.IO EVENT whose JSON is cut
    '42{"not": "an array"}',
    "42[]",
    "42[null]",
    '421["fetch",{"before":123456789012345678901234567890}]',
    '421["mark_read",{"ids":[NaN]}]',
    '42["mark_read",' + "[" * 3000 + "]" * 3000 + "]",
    "4x",
    "49",
    '40{"token": 5}',
    "9",
    "",
    "6",
    b"\x00\xff\xfe",
    "4" + "\ud7ff" * 10,
]


@pytest.mark.timeout(120)
async def test_malformed_packets_on_a_raw_websocket_cost_at_most_that_connection(
    settings: Settings, gateway: tuple[Gateway, str], emitter: Emitter
) -> None:
    _gw, url = gateway
    bystander_user, raw_user = new_user("bystander"), new_user("raw")
    ws_url = url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    async with connected(url, mint_token(settings, bystander_user)) as bystander, aiohttp.ClientSession() as http:
        for frame in RAW_FRAMES:
            async with http.ws_connect(ws_url, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
                opened = await ws.receive(timeout=10)
                assert str(opened.data).startswith("0{"), opened  # the Engine.IO open packet
                await ws.send_str('40{"token": "' + mint_token(settings, raw_user) + '"}')
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame)
                # Whatever the server answers (an error, a close, nothing), it must keep serving others.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ws.receive(), timeout=0.5)
        await emitter.notification(bystander_user, body("still-served", 1, 1), unread=1)
        await wait_until(lambda: bystander.versions("still-served") == [1], what="the bystander served")
        assert await bystander.call("mark_all_read") == {"ok": True, "unread": 0}
    async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as response:
        assert response.status == 200
        assert (await response.json())["ok"] is True
