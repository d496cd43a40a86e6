"""The Socket.IO gateway against real Redis (and Kafka for analytics) with the python-socketio client:
auth, isolation, live delivery across gateways, replay with `since`, acks, and bad client input."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import timedelta
from functools import partial
from typing import Any

import aiohttp
import jwt
import orjson
import pytest
import redis.asyncio as aioredis
import socketio
from aiokafka import AIOKafkaConsumer, TopicPartition
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from actors.gateway import GatewayActor
from herald import keys, live
from herald.auth import mint_token
from herald.config import Settings
from herald.gateway import Gateway
from herald.push_subscriptions import PushSubscriptionStore
from herald.topics import ANALYTICS_TOPIC, ensure_topics, topic_specs
from tests.integration.gateway_harness import (
    TEST_SECRET,
    Emitter,
    Recorder,
    Seeder,
    alg_none_token,
    bad_signature_token,
    body,
    connected,
    expired_token,
    gateway_settings,
    new_user,
    running_gateway,
    wait_until,
)
from tests.support.events import make_event

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings() -> Settings:
    return gateway_settings()


async def test_healthz_and_page_are_served(gateway: tuple[Gateway, str]) -> None:
    _gw, url = gateway
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/healthz") as response:
            assert response.status == 200
            health = await response.json()
        assert health["ok"] is True
        assert health["subscribed"] is True
        async with http.get(f"{url}/") as response:
            assert response.status == 200
            assert "Herald inbox" in await response.text()
        async with http.get(f"{url}/static/../gateway/server.py") as response:
            assert response.status == 404


async def test_live_notification_and_its_update(
    settings: Settings, gateway: tuple[Gateway, str], emitter: Emitter
) -> None:
    _gw, url = gateway
    user = new_user()
    async with connected(url, mint_token(settings, user)) as client:
        await emitter.notification(user, body("n1", 1, 1, "John liked your post"))
        await emitter.notification(user, body("n1", 2, 2, "John and Sarah liked your post"))
        await wait_until(lambda: client.versions("n1") == [1, 2], what="n1 v1 then v2")
        # A stale copy (the pipeline delivers at least once) is not shown again; a control emit proves
        # the stale one had time to arrive.
        await emitter.notification(user, body("n1", 1, 1))
        await emitter.notification(user, body("n2", 1, 3))
        await wait_until(lambda: client.versions("n2") == [1], what="control n2")
        assert client.versions("n1") == [1, 2]
        assert client.notifications[1]["text"] == "John and Sarah liked your post"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("bad signature", "signature"),
        ("expired", "expired"),
        ("alg none", "algorithm"),
        ("missing sub", "sub"),
        ("payload forged to another user", "signature"),
        ("missing token", "missing token"),
        ("garbage token", "invalid token"),
        ("since not a cursor", "since"),
    ],
)
async def test_refused_connections_get_a_clear_reason(
    settings: Settings, gateway: tuple[Gateway, str], case: str, expected: str
) -> None:
    gw, url = gateway
    user = new_user()
    token: str | None
    extra: dict[str, Any] = {}
    if case == "bad signature":
        token = bad_signature_token(user)
    elif case == "expired":
        token = expired_token(settings, user)
    elif case == "alg none":
        token = alg_none_token(user)
    elif case == "missing sub":
        now = int(time.time())
        token = jwt.encode({"iat": now, "exp": now + 600}, TEST_SECRET, algorithm="HS256")
    elif case == "payload forged to another user":
        # A valid token of one user whose payload is swapped for another user's keeps the old signature.
        header, _, signature = mint_token(settings, user).split(".")
        claims = {"sub": new_user("victim"), "iat": int(time.time()), "exp": int(time.time()) + 600}
        forged = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
        token = f"{header}.{forged}.{signature}"
    elif case == "missing token":
        token = None
    elif case == "garbage token":
        token = "not.a.jwt"
    else:
        token, extra = mint_token(settings, user), {"since": "yesterday"}
    recorder = Recorder()
    refused_before = gw.counters.refused
    with pytest.raises(socketio.exceptions.ConnectionError):
        await recorder.connect(url, token, **extra)
    assert recorder.refusal is not None
    assert expected in str(recorder.refusal["message"]).lower()
    assert gw.counters.refused == refused_before + 1
    assert not recorder.client.connected


async def test_a_connection_does_not_outlive_its_token(settings: Settings, gateway: tuple[Gateway, str]) -> None:
    gw, url = gateway
    async with connected(url, mint_token(settings, new_user("brief"), ttl_s=2)) as client:
        assert client.client.connected
        await wait_until(lambda: not client.client.connected, timeout_s=10, what="disconnect at token expiry")
    assert gw.counters.expired >= 1


async def test_a_lost_live_subscription_is_filled_from_the_inbox(
    settings: Settings, gateway: tuple[Gateway, str], seeder: Seeder
) -> None:
    gw, url = gateway
    user = new_user("resync")
    async with connected(url, mint_token(settings, user)) as client:
        admin = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
        try:
            ours = [c for c in await admin.client_list() if c.get("name") == gw.redis_client_name]
            assert any("subscribe" in c.get("cmd", "") for c in ours), ours
            for connection in ours:
                await admin.client_kill_filter(_id=connection["id"])
            # Committed while the gateway may not be listening: the publish can be lost, the inbox has it.
            await seeder.apply(make_event(user=user, actor="u9", actor_name="Gap", target="p9"))
        finally:
            await admin.aclose()
        await wait_until(lambda: gw.counters.resubscriptions >= 1, timeout_s=15, what="the re-subscription")
        await wait_until(lambda: len(client.notifications) == 1, what="the commit made during the gap")
        assert client.notifications[0]["text"] == "Gap liked your post"
        assert client.client.connected, "a gap is filled in place, not by sending the client away"
        # And the feed is live again.
        await seeder.apply(make_event(user=user, actor="u10", actor_name="Next", target="p10"))
        await wait_until(lambda: len(client.notifications) == 2, what="live after the gap")
        assert [n["version"] for n in client.notifications] == [1, 1]
        assert gw.health()["subscribed"]


async def test_a_client_cannot_receive_another_users_notifications(
    settings: Settings, gateway: tuple[Gateway, str], emitter: Emitter
) -> None:
    gw, url = gateway
    alice, bob = new_user("alice"), new_user("bob")
    async with connected(url, mint_token(settings, alice)) as a:
        # No client event joins rooms: asking is an unknown event, answered with an error.
        ack = await a.call("join", {"room": f"user:{bob}"})
        assert ack == {"ok": False, "error": "unknown event 'join'"}
        await emitter.notification(bob, body("secret", 1, 1, "for bob only"))
        # Even a live entry for bob published on this very gateway's channel reaches no one: bob is not here.
        entry = live.encode_entry(bob, notes=[body("secret2", 1, 2)])
        await emitter.redis.publish(keys.live_channel(gw.gateway_id), orjson.dumps([entry]))
        await emitter.notification(alice, body("mine", 1, 1, "for alice"))
        await wait_until(lambda: [n["id"] for n in a.notifications] == ["mine"], what="alice's control emit")
        # No wait needed: bob's entries were published before alice's on the same channel, handled in order.
        assert [n["id"] for n in a.notifications] == ["mine"]


async def test_a_client_cannot_read_or_mark_another_users_inbox(
    settings: Settings, gateway: tuple[Gateway, str], seeder: Seeder
) -> None:
    _gw, url = gateway
    alice, bob = new_user("alice"), new_user("bob")
    await seeder.apply(make_event(user=bob, actor="u7", actor_name="Eve", target="p-bob"))
    [bobs] = await seeder.store.notifications_before(bob, None, 10)
    async with connected(url, mint_token(settings, alice)) as a:
        # Ids are the only handle a client has: naming bob's notification reads nothing of bob's.
        ack = await a.call("mark_read", {"ids": [bobs["id"]]})
        assert ack == {"ok": True, "unread": 0}
        assert (await a.call("fetch", {"before": None, "limit": 100}))["items"] == []
        # A payload naming another user is not how a user is chosen: the token's sub is.
        ack = await a.call("fetch", {"before": None, "limit": 100, "userId": bob})
        assert ack.get("items", []) == []
    assert await seeder.store.unread_count(bob) == 1
    assert a.notifications == []


async def test_an_hs256_token_is_refused_when_the_gateway_verifies_rs256(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = tmp_path_factory.mktemp("rs256") / "public.pem"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    rs_settings = settings.model_copy(update={"jwt_algorithm": "RS256", "jwt_public_key_file": public})
    async with running_gateway(rs_settings) as (gw, url):
        recorder = Recorder()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await recorder.connect(url, mint_token(settings, new_user()))  # HS256 with the shared secret
        assert recorder.refusal is not None
        assert "algorithm" in str(recorder.refusal["message"]).lower()
        assert gw.counters.refused == 1


async def test_two_gateways_share_emits_and_read_counts(settings: Settings, emitter: Emitter, seeder: Seeder) -> None:
    user = new_user()
    await seeder.apply(
        make_event(user=user, actor="u1", actor_name="John", target="p1"),
        make_event(user=user, actor="u2", actor_name="Sarah", target="p2"),
    )
    inbox = await seeder.store.notifications_before(user, None, 10)
    assert len(inbox) == 2
    async with (
        running_gateway(settings) as (gw1, url1),
        running_gateway(settings) as (gw2, url2),
        connected(url1, mint_token(settings, user)) as device1,
        connected(url2, mint_token(settings, user)) as device2,
    ):
        assert url1 != url2
        assert device1.unread[-1] == device2.unread[-1] == 2
        # Both gateways hold the user: a live entry is published to each of them, once.
        assert await emitter.notification(user, body("live1", 1, 100)) == 2
        assert await emitter.notification(user, body("live2", 1, 101)) == 2
        for device in (device1, device2):
            await wait_until(partial(_ids_are, device, {"live1", "live2"}), what="both emits")
        ack = await device1.call("mark_read", {"ids": [inbox[0]["id"]]})
        assert ack == {"ok": True, "unread": 1}
        await wait_until(lambda: device2.unread[-1] == 1, what="unread_count 1 on device 2 (gateway 2)")
        ack = await device2.call("mark_all_read", {})
        assert ack == {"ok": True, "unread": 0}
        await wait_until(lambda: device1.unread[-1] == 0, what="unread_count 0 on device 1 (gateway 1)")
        assert gw1.health()["connections"] == gw2.health()["connections"] == 1


def _ids_are(recorder: Recorder, ids: set[str]) -> bool:
    return {n["id"] for n in recorder.notifications} == ids


async def test_reconnect_with_since_gets_exactly_the_missed_items_newest_versions_once(
    settings: Settings, gateway: tuple[Gateway, str], seeder: Seeder
) -> None:
    _gw, url = gateway
    user = new_user()
    names = ["John", "Sarah", "Mike", "Anna", "Lee"]
    await seeder.apply(make_event(user=user, actor="a0", actor_name=names[0], target="trip"))
    token = mint_token(settings, user)
    async with connected(url, token, since=0) as first:
        await wait_until(lambda: len(first.notifications) == 1, what="the first like")
    seen = first.notifications[0]
    assert seen["version"] == 1
    assert seen["text"] == "John liked your post"
    # Offline: the group grows from 1 to 5 actors, one batch per like, and an unrelated follow arrives.
    for i in range(1, 5):
        await seeder.apply(
            make_event(user=user, actor=f"a{i}", actor_name=names[i], target="trip", at=timedelta(seconds=i))
        )
    await seeder.apply(make_event(user=user, kind="USER_FOLLOWED", actor="f1", actor_name="Zoe", target=user))
    async with connected(url, token, since=seen["cursor"]) as second:
        # `connected` returned after unread_count, which the server sends after the whole replay.
        replayed = [(n["id"], n["version"]) for n in second.notifications]
        assert replayed == [(seen["id"], 5), (replayed[1][0], 1)]
        assert replayed[1][0] != seen["id"]
        assert second.notifications[0]["text"] == "John and 4 others liked your post"
        assert second.notifications[0]["count"] == 5
        assert second.notifications[1]["text"] == "Zoe started following you"
        assert second.notifications[0]["cursor"] < second.notifications[1]["cursor"]
        assert [e for e, _ in second.events] == ["notification", "notification", "unread_count"]
        assert second.unread == [2]


async def test_replay_racing_live_emits_shows_no_duplicate_and_no_older_version(
    settings: Settings, gateway: tuple[Gateway, str], seeder: Seeder, emitter: Emitter
) -> None:
    _gw, url = gateway
    user = new_user()
    for i in range(3):
        await seeder.apply(make_event(user=user, actor=f"a{i}", actor_name=f"N{i}", at=timedelta(seconds=i)))
    [stored] = await seeder.store.notifications_after(user, 0, 10)
    assert stored["version"] == 3

    stop = asyncio.Event()

    async def redeliver() -> None:
        # The pipeline redelivering every version at least once while the client connects and replays.
        while not stop.is_set():
            for version in (1, 2, 3):
                await emitter.notification(user, stored | {"version": version})
            await asyncio.sleep(0.001)

    task = asyncio.create_task(redeliver())
    try:
        async with connected(url, mint_token(settings, user), since=0) as client:
            await wait_until(lambda: 3 in client.versions(stored["id"]), what="version 3")
            await asyncio.sleep(0.05)  # keep redelivering while live, too
    finally:
        stop.set()
        await task
    versions = client.versions(stored["id"])
    assert versions == sorted(set(versions)), f"duplicate or older version after a newer one: {versions}"
    assert versions[-1] == 3


async def test_fetch_pages_older_items_newest_first(
    settings: Settings, gateway: tuple[Gateway, str], seeder: Seeder
) -> None:
    _gw, url = gateway
    user = new_user()
    await seeder.apply(*(make_event(user=user, actor=f"a{i}", target=f"p{i}") for i in range(5)))
    async with connected(url, mint_token(settings, user)) as client:
        pages: list[list[dict[str, Any]]] = []
        before = None
        while True:
            ack = await client.call("fetch", {"before": before, "limit": 2})
            assert ack["ok"] is True
            pages.append(ack["items"])
            before = ack["nextCursor"]
            if before is None:
                break
        cursors = [n["cursor"] for page in pages for n in page]
        assert [len(p) for p in pages] == [2, 2, 1]
        assert cursors == sorted(cursors, reverse=True)
        assert len(set(cursors)) == 5
        assert (await client.call("fetch"))["ok"] is True  # no payload: the newest page


async def test_mark_read_publishes_notification_read_to_analytics(
    settings: Settings, gateway: tuple[Gateway, str], seeder: Seeder
) -> None:
    gw, url = gateway
    [report] = await ensure_topics(settings, [s for s in topic_specs(settings) if s.name == ANALYTICS_TOPIC])
    assert report.partitions
    user = new_user()
    await seeder.apply(make_event(user=user))
    [note] = await seeder.store.notifications_before(user, None, 1)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(ANALYTICS_TOPIC, p) for p in range(report.partitions)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp, offset in ends.items():
            consumer.seek(tp, offset)
        async with connected(url, mint_token(settings, user)) as client:
            assert await client.call("mark_read", {"ids": [note["id"]]}) == {"ok": True, "unread": 0}
            await asyncio.wait_for(gw.analytics.idle(), timeout=30)
        assert gw.analytics.counters.published >= 1
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + 15
        while not found and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    event = orjson.loads(record.value)
                    if event.get("userId") == user:
                        found.append(event)
        assert found, "no NOTIFICATION_READ for the user on notification-analytics"
        assert found[0]["type"] == "NOTIFICATION_READ"
        assert found[0]["notificationIds"] == [note["id"]]
    finally:
        await consumer.stop()


@pytest.mark.parametrize(
    ("event", "args", "error"),
    [
        ("mark_read", None, "mark_read needs a payload {ids"),
        ("mark_read", {}, "ids: Field required"),
        ("mark_read", "n1", "payload must be an object"),
        ("mark_read", {"ids": "n1"}, "ids: Input should be a valid list"),
        ("mark_read", {"ids": [1, 2]}, "ids.0: Input should be a valid string"),
        ("mark_read", {"ids": []}, "ids: List should have at least 1 item"),
        ("mark_read", {"ids": ["x"], "admin": True}, "admin: Extra inputs are not permitted"),
        ("mark_read", {"ids": ["x" * 300]}, "each id must be 1 to 256 characters"),
        ("mark_all_read", [1], "payload must be an object"),
        ("fetch", {"limit": "ten"}, "limit: Input should be a valid integer"),
        ("fetch", {"limit": 0}, "limit: Input should be greater than or equal to 1"),
        ("fetch", {"limit": 101}, "limit: at most 100"),
        ("fetch", {"before": -1}, "before: Input should be greater than or equal to 0"),
        ("fetch", {"before": 1.5}, "before: Input should be a valid integer"),
        ("delete_everything", {"all": True}, "unknown event 'delete_everything'"),
    ],
)
async def test_malformed_client_events_get_an_error_ack(
    settings: Settings, gateway: tuple[Gateway, str], event: str, args: Any, error: str
) -> None:
    _gw, url = gateway
    async with connected(url, mint_token(settings, new_user())) as client:
        ack = await client.call(event, args)
        assert ack["ok"] is False
        assert error in ack["error"]
        assert (await client.call("mark_all_read"))["ok"] is True  # the connection still works


async def test_oversized_payload_closes_that_connection_only(
    settings: Settings, gateway: tuple[Gateway, str], emitter: Emitter
) -> None:
    gw, url = gateway
    big_user, other_user = new_user(), new_user()
    async with (
        connected(url, mint_token(settings, big_user)) as big,
        connected(url, mint_token(settings, other_user)) as other,
    ):
        await big.client.emit("mark_read", {"ids": ["x" * (gw.limits.max_payload_bytes * 3)]})
        await wait_until(lambda: not big.client.connected, what="the oversized sender to be disconnected")
        await emitter.notification(other_user, body("still", 1, 1))
        await wait_until(lambda: other.versions("still") == [1], what="the other client still served")
        assert (await other.call("mark_all_read"))["ok"] is True


async def test_a_flood_of_mark_read_is_rate_limited_and_others_are_served(
    settings: Settings, gateway: tuple[Gateway, str]
) -> None:
    gw, url = gateway
    async with (
        connected(url, mint_token(settings, new_user())) as flooder,
        connected(url, mint_token(settings, new_user())) as bystander,
    ):
        started = time.monotonic()
        acks = await asyncio.gather(*(flooder.call("mark_read", {"ids": [f"n{i}"]}) for i in range(2000)))
        elapsed_s = time.monotonic() - started
        accepted = sum(1 for a in acks if a["ok"])
        limited = sum(1 for a in acks if a == {"ok": False, "error": "rate limited"})
        assert accepted + limited == 2000
        # burst plus refill over the time the flood took, with a token of slack
        assert accepted <= gw.limits.burst + gw.limits.events_per_s * elapsed_s + 1
        assert limited >= 2000 - accepted
        assert limited > 1000
        assert (await bystander.call("mark_all_read")) == {"ok": True, "unread": 0}
        assert gw.counters.rate_limited >= limited


async def test_gateway_actor_starts_reports_health_and_stops(settings: Settings) -> None:
    actor = GatewayActor(settings, port=0)
    assert (await actor.health())["ok"] is False
    port = await actor.start()
    assert await actor.start() == port  # idempotent
    health = await actor.health()
    assert health["ok"] is True
    assert health["port"] == port
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as response:
        assert response.status == 200
    await actor.stop()
    assert (await actor.health())["serving"] is False
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz"):
            pass


async def test_register_push_stores_a_checked_subscription_for_the_connected_user(
    settings: Settings, gateway: tuple[Gateway, str]
) -> None:
    _gw, url = gateway
    user = new_user()
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    subscription = {
        "endpoint": "https://push.example/send/abc",
        "keys": {"p256dh": _b64url(point), "auth": _b64url(b"a" * 16)},
    }
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        async with connected(url, mint_token(settings, user)) as device:
            assert (await device.call("register_push", subscription))["ok"] is True
            refused = await device.call("register_push", {"endpoint": "https://push.example/x", "keys": {}})
            assert refused["ok"] is False
            assert "p256dh" in refused["error"]
            assert (await device.call("register_push", {"fcmToken": "device-token-1"}))["ok"] is True
            stored = (await PushSubscriptionStore(client).list_for([user]))[user]
            assert sorted(str(s.get("endpoint") or s.get("fcmToken")) for s in stored) == [
                "device-token-1",
                "https://push.example/send/abc",
            ]
            assert (await device.call("unregister_push", {"fcmToken": "device-token-1"}))["removed"] is True
            assert len((await PushSubscriptionStore(client).list_for([user]))[user]) == 1
    finally:
        await client.delete(keys.user_key(user, "push"))
        await client.aclose()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
