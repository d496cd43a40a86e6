"""The existing application's protocol ("compat") on the real gateway, with real Redis and python-socketio
clients: selection per connection, `notification:new`, counts, reads across devices and protocols, inbox
changes from the pipeline, replay, isolation and refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import socketio

import herald.auth
from herald import keys, live
from herald.auth import TokenClaims, mint_token
from herald.config import Settings, load_settings
from herald.gateway import Gateway
from herald.gateway.compat import ALL_READ_EVENT, COUNT_EVENT, DELETED_EVENT, NEW_EVENT, READ_EVENT
from herald.gateway.protocol import DELETED_EVENT as NATIVE_DELETED
from herald.gateway.protocol import READ_EVENT as NATIVE_READ
from herald.gateway.protocol import UNREAD_EVENT
from herald.live import INBOX_EVENT
from tests.integration.gateway_harness import (
    TEST_SECRET,
    WAIT_S,
    Emitter,
    Recorder,
    Seeder,
    body,
    gateway_settings,
    new_user,
    running_gateway,
    wait_until,
)
from tests.support.events import make_event

pytestmark = pytest.mark.integration

NATIVE_ONLY = ("notification", UNREAD_EVENT, NATIVE_READ, NATIVE_DELETED)
COMPAT_ONLY = (NEW_EVENT, COUNT_EVENT, READ_EVENT, DELETED_EVENT, ALL_READ_EVENT)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return gateway_settings()


class Client(Recorder):
    """A Recorder that records every event, of either protocol, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.client.on("*", self._on_any)

    async def _on_any(self, event: str, data: Any = None) -> None:
        self.events.append((event, data))

    def of(self, event: str) -> list[Any]:
        return [data for name, data in self.events if name == event]

    def counts(self) -> list[int]:
        return [data["unreadCount"] for data in self.of(COUNT_EVENT)]

    def names(self) -> list[str]:
        return [name for name, _data in self.events]


@asynccontextmanager
async def opened(
    url: str, token: str, *, protocol: str | None = "compat", since: int | None = None
) -> AsyncIterator[Client]:
    """A connected client, once it has its connect-time count (the last thing the server sends on connect)."""
    client = Client()
    extra: dict[str, Any] = {} if protocol is None else {"protocol": protocol}
    await client.connect(url, token, since, **extra)
    try:
        await wait_until(lambda: bool(client.of(COUNT_EVENT) or client.unread), what="the connect-time count")
        yield client
    finally:
        await client.close()


async def seed(seeder: Seeder, user: str, targets: int, at: timedelta = timedelta(0)) -> list[dict[str, Any]]:
    """`targets` notifications for `user` (one like each), through the real InboxApplier; oldest first."""
    events = [
        make_event(user=user, actor=f"a{i}", actor_name=f"Actor{i}", target=f"p{i}", at=at + timedelta(seconds=i))
        for i in range(targets)
    ]
    await seeder.apply(*events)
    return await seeder.store.notifications_after(user, 0, 1000)


def assert_only_compat(client: Client) -> None:
    names = set(client.names())
    assert not names & set(NATIVE_ONLY), client.events
    assert INBOX_EVENT not in names


def assert_only_native(client: Client) -> None:
    names = set(client.names())
    assert not names & set(COMPAT_ONLY), client.events
    assert INBOX_EVENT not in names


# -- selection -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["auth", "query"])
async def test_compat_is_chosen_per_connection(
    settings: Settings, gateway: tuple[Gateway, str], emitter: Emitter, seeder: Seeder, how: str
) -> None:
    _gw, url = gateway
    user = new_user("compat")
    await seed(seeder, user, 1)
    token = mint_token(settings, user)
    where, auth_protocol = {"auth": (url, "compat"), "query": (f"{url}/?protocol=compat", None)}[how]
    async with opened(where, token, protocol=auth_protocol) as client, opened(url, token, protocol=None) as native:
        assert client.events == [(COUNT_EVENT, {"unreadCount": 1})]
        assert native.events == [(UNREAD_EVENT, {"unread": 1})]
        await emitter.notification(user, body("live", 1, 100))
        await wait_until(lambda: bool(client.of(NEW_EVENT)), what="notification:new")
        await wait_until(lambda: bool(native.notifications), what="the native notification")
        assert client.of(NEW_EVENT)[0]["notification"]["id"] == "live"
        assert_only_compat(client)
        assert_only_native(native)


async def test_the_gateway_protocol_setting_makes_compat_the_default(emitter: Emitter, seeder: Seeder) -> None:
    settings = load_settings(jwt_secret=TEST_SECRET, gateway_protocol="compat")
    user = new_user("default")
    token = mint_token(settings, user)
    async with (
        running_gateway(settings) as (_gw, url),
        opened(url, token, protocol=None) as client,
        opened(url, token, protocol="herald") as native,
    ):
        assert client.counts() == [0]
        assert native.unread == [0]
        await emitter.notification(user, body("n1", 1, 1))
        await wait_until(lambda: bool(client.of(NEW_EVENT)) and bool(native.notifications), what="both")
        assert_only_compat(client)
        assert_only_native(native)


@pytest.mark.parametrize(
    ("auth_protocol", "query"), [("socket.io", ""), (None, "?protocol=v2"), ("", ""), ("COMPAT", "")]
)
async def test_an_unknown_protocol_is_refused(
    settings: Settings, gateway: tuple[Gateway, str], auth_protocol: str | None, query: str
) -> None:
    gw, url = gateway
    client = Client()
    extra: dict[str, Any] = {} if auth_protocol is None else {"protocol": auth_protocol}
    refused = gw.counters.refused
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(f"{url}/{query}", mint_token(settings, new_user()), **extra)
    assert "unknown protocol" in str(client.refusal["message"])
    assert "'herald' or 'compat'" in str(client.refusal["message"])
    assert gw.counters.refused == refused + 1


async def test_a_connection_without_a_token_is_authenticated_by_its_cookie(
    gateway: tuple[Gateway, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway hands the Cookie header to herald.auth.authenticate (Auth.js sessions); what the cookie
    holds is that function's business, so it is stood in for here."""
    _gw, url = gateway
    user = new_user("cookie")
    seen: list[tuple[str | None, str | None]] = []

    def authenticate(_settings: Settings, token: str | None, cookie_header: str | None) -> TokenClaims:
        seen.append((token, cookie_header))
        return TokenClaims(user_id=user, expires_at=datetime.now(UTC) + timedelta(hours=1))

    monkeypatch.setattr(herald.auth, "authenticate", authenticate)
    client = Client()
    await client.client.connect(
        url,
        auth={"protocol": "compat"},
        headers={"Cookie": "authjs.session-token=abc.def"},
        transports=["websocket"],
        wait_timeout=WAIT_S,
    )
    try:
        await wait_until(lambda: bool(client.of(COUNT_EVENT)), what="the connect-time count")
        assert seen == [(None, "authjs.session-token=abc.def")]
    finally:
        await client.close()


# -- server events ---------------------------------------------------------------------------------------


async def test_notification_new_and_the_counts_that_follow(
    settings: Settings, gateway: tuple[Gateway, str], seeder: Seeder
) -> None:
    gw, url = gateway
    user = new_user("shape")
    await seeder.apply(make_event(user=user, actor="john", actor_name="John", target="trip"))
    async with opened(url, mint_token(settings, user)) as client:
        assert client.counts() == [1]
        await seeder.apply(
            make_event(user=user, actor="sarah", actor_name="Sarah", target="trip", at=timedelta(seconds=1))
        )
        await seeder.apply(
            make_event(
                user=user, kind="USER_FOLLOWED", actor="zoe", actor_name="Zoe", target=user, at=timedelta(seconds=2)
            )
        )
        # The commits themselves push them to this gateway, which holds the user.
        grown, follow = await seeder.store.notifications_after(user, 0, 10)
        try:
            await wait_until(lambda: len(client.of(NEW_EVENT)) == 2 and client.counts()[-1] == 2, what="2 new, count 2")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the client heard {client.events!r}; gateway {gw.health()!r}") from None
        first = client.of(NEW_EVENT)[0]
        view = first["notification"]
        assert first["timestamp"] == grown["updatedAt"]
        assert first["priority"] == "NORMAL"
        assert view["id"] == grown["id"]
        assert view["title"] == view["message"] == view["text"] == "John and Sarah liked your post"
        assert view["type"] == "POST_LIKED"
        assert (view["entityType"], view["entityId"]) == ("post", "trip")
        assert view["aggregatedCount"] == 2
        assert view["aggregatedActors"] == [a["id"] for a in grown["actors"]]
        assert sorted(view["aggregatedActors"]) == ["john", "sarah"]
        assert view["actors"] == grown["actors"]
        assert view["groupKey"] == grown["groupKey"]
        assert view["isRead"] is False
        assert (view["version"], view["cursor"], view["userId"]) == (2, grown["cursor"], user)
        assert view["createdAt"] == grown["createdAt"]
        assert view["updatedAt"] == grown["updatedAt"]
        assert client.of(NEW_EVENT)[1]["notification"]["message"] == "Zoe started following you"
        assert client.of(NEW_EVENT)[1]["notification"]["id"] == follow["id"]
        # The count follows the notifications it counts.
        names = client.names()
        assert names.index(NEW_EVENT) < len(names) - 1 - names[::-1].index(COUNT_EVENT)
        # Each commit carries the user's exact unread count: the gateway never had to read one.
        assert gw.counters.count_reads == 0
        assert client.counts() == [1, 1, 2]
        assert_only_compat(client)


async def test_get_count_acks_and_emits_the_count(
    settings: Settings, gateway: tuple[Gateway, str], seeder: Seeder
) -> None:
    _gw, url = gateway
    user = new_user("count")
    await seed(seeder, user, 2)
    async with opened(url, mint_token(settings, user)) as client:
        assert await client.call("notification:get_count") == {"ok": True, "unreadCount": 2}
        await wait_until(lambda: client.counts() == [2, 2], what="the count emitted after get_count")
        assert await client.call("notification:get_count", {"userId": user}) == {"ok": True, "unreadCount": 2}


async def test_a_burst_of_notifications_costs_a_few_count_reads(
    settings: Settings, gateway: tuple[Gateway, str], emitter: Emitter, seeder: Seeder
) -> None:
    gw, url = gateway
    user = new_user("burst")
    stored = await seed(seeder, user, 100)
    async with opened(url, mint_token(settings, user)) as client:
        reads_before = gw.counters.count_reads
        # Live, as new commits would carry them: above the sequence number the gateway read with its claim (what
        # is at or below it is settled, sent by the replay or not asked for: herald/gateway/session.py).
        await asyncio.gather(*(emitter.notification(user, note | {"cursor": note["cursor"] + 1000}) for note in stored))
        await wait_until(lambda: len(client.of(NEW_EVENT)) == 100, what="100 notifications")
        await wait_until(lambda: client.counts()[1:][-1:] == [100], what="a count after them")
        await wait_until(lambda: gw.counts_pending == 0, what="no count read still on its way")
        reads = gw.counters.count_reads - reads_before
        assert 1 <= reads <= 10, f"{reads} count reads for a burst of 100"


# -- reads and inbox changes -----------------------------------------------------------------------------


async def test_a_read_reaches_every_device_of_the_user_in_its_own_protocol(
    settings: Settings, gateway: tuple[Gateway, str], seeder: Seeder
) -> None:
    _gw1, url1 = gateway
    user = new_user("devices")
    ids = [n["id"] for n in await seed(seeder, user, 3)]
    token = mint_token(settings, user)
    async with (
        running_gateway(settings) as (_gw2, url2),
        opened(url1, token) as phone,
        opened(url2, token) as tablet,  # compat, on another gateway
        opened(url2, token, protocol=None) as laptop,  # Herald's own protocol
    ):
        assert await phone.call("notification:mark_read", {"notificationId": ids[0]}) == {
            "ok": True,
            "unreadCount": 2,
        }
        await wait_until(lambda: tablet.of(READ_EVENT) == [{"notificationId": ids[0]}], what="tablet read")
        await wait_until(lambda: tablet.counts()[-1] == 2, what="tablet count 2")
        await wait_until(lambda: bool(laptop.of(NATIVE_READ)), what="laptop notifications_read")
        assert laptop.of(NATIVE_READ) == [{"ids": [ids[0]], "all": False, "before": None}]
        await wait_until(lambda: laptop.unread[-1] == 2, what="laptop unread_count 2")
        await wait_until(lambda: phone.counts()[-1] == 2, what="the reader's own count")

        ack = await phone.call("notification:mark_read", {"notificationIds": ids[1:]})
        assert ack == {"ok": True, "unreadCount": 0}
        await wait_until(lambda: len(tablet.of(READ_EVENT)) == 3 and tablet.counts()[-1] == 0, what="tablet 0")

        # A read from the Herald client reaches the compat ones as the application's events.
        assert await laptop.call("mark_all_read") == {"ok": True, "unread": 0}
        await wait_until(lambda: phone.of(ALL_READ_EVENT) == [{}], what="notification:all_read on the phone")
        await wait_until(lambda: tablet.of(ALL_READ_EVENT) == [{}], what="notification:all_read on the tablet")
        assert await tablet.call("notification:mark_all_read") == {"ok": True, "unreadCount": 0}
        await wait_until(lambda: len(laptop.of(NATIVE_READ)) == 4, what="the laptop hears all reads")
        assert laptop.of(NATIVE_READ)[-1] == {"ids": [], "all": True, "before": None}
        for device in (phone, tablet):
            assert_only_compat(device)
        assert_only_native(laptop)


async def test_an_inbox_change_from_the_pipeline_is_translated_for_both_protocols(
    settings: Settings, gateway: tuple[Gateway, str], emitter: Emitter, seeder: Seeder
) -> None:
    _gw, url = gateway
    user = new_user("inbox")
    ids = [n["id"] for n in await seed(seeder, user, 3)]
    token = mint_token(settings, user)
    async with opened(url, token) as client, opened(url, token, protocol=None) as native:
        # As the pipeline does it: the store changed first, then the change is emitted without a count.
        await seeder.store.mark_read(user, ids[:2])
        change = {"userId": user, "read": [ids[0]], "deleted": [ids[1]], "all": True, "before": "2026-11-26T10:00:00Z"}
        await emitter.inbox(user, change, unread=None)
        await wait_until(lambda: client.counts()[-1] == 1, what="compat count read from the store")
        await wait_until(lambda: native.unread[-1] == 1, what="native count read from the store")
        assert client.events[1:] == [
            (READ_EVENT, {"notificationId": ids[0]}),
            (DELETED_EVENT, {"notificationId": ids[1]}),
            (ALL_READ_EVENT, {"before": "2026-11-26T10:00:00Z"}),
            (COUNT_EVENT, {"unreadCount": 1}),
        ]
        assert native.events[1:] == [
            (NATIVE_READ, {"ids": [ids[0]], "all": True, "before": "2026-11-26T10:00:00Z"}),
            (NATIVE_DELETED, {"ids": [ids[1]]}),
            (UNREAD_EVENT, {"unread": 1}),
        ]
        # With the count in the change, it is passed on as is.
        await emitter.inbox(user, change | {"all": False}, unread=7)
        await wait_until(lambda: client.counts()[-1] == 7 and native.unread[-1] == 7, what="the given count")
        assert_only_compat(client)
        assert_only_native(native)


# -- replay and isolation --------------------------------------------------------------------------------


async def test_reconnect_with_since_replays_the_newest_versions_once(
    settings: Settings, gateway: tuple[Gateway, str], seeder: Seeder
) -> None:
    _gw, url = gateway
    user = new_user("replay")
    await seeder.apply(make_event(user=user, actor="a0", actor_name="John", target="trip"))
    token = mint_token(settings, user)
    async with opened(url, token, since=0) as first:
        assert first.names() == [NEW_EVENT, COUNT_EVENT]
    seen = first.of(NEW_EVENT)[0]["notification"]
    for i in range(1, 5):
        await seeder.apply(
            make_event(user=user, actor=f"a{i}", actor_name=f"N{i}", target="trip", at=timedelta(seconds=i))
        )
    await seeder.apply(make_event(user=user, kind="USER_FOLLOWED", actor="f1", actor_name="Zoe", target=user))
    async with opened(url, token, since=seen["cursor"]) as second:
        replayed = [(n["notification"]["id"], n["notification"]["version"]) for n in second.of(NEW_EVENT)]
        assert replayed == [(seen["id"], 5), (replayed[1][0], 1)]
        assert second.of(NEW_EVENT)[0]["notification"]["message"] == "John and 4 others liked your post"
        assert second.names() == [NEW_EVENT, NEW_EVENT, COUNT_EVENT]
        assert second.counts() == [2]


async def test_replay_racing_live_emits_shows_no_duplicate_and_no_older_version(
    settings: Settings, gateway: tuple[Gateway, str], seeder: Seeder, emitter: Emitter
) -> None:
    _gw, url = gateway
    user = new_user("race")
    for i in range(3):
        await seeder.apply(make_event(user=user, actor=f"a{i}", actor_name=f"N{i}", at=timedelta(seconds=i)))
    [stored] = await seeder.store.notifications_after(user, 0, 10)
    stop = asyncio.Event()

    async def redeliver() -> None:
        while not stop.is_set():
            for version in (1, 2, 3):
                await emitter.notification(user, stored | {"version": version})
            await asyncio.sleep(0.001)

    task = asyncio.create_task(redeliver())
    try:
        async with opened(url, mint_token(settings, user), since=0) as client:
            await wait_until(lambda: 3 in _versions(client, stored["id"]), what="version 3")
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    versions = _versions(client, stored["id"])
    assert versions == sorted(set(versions)), f"duplicate or older version after a newer one: {versions}"
    assert versions[-1] == 3


def _versions(client: Client, notification_id: str) -> list[int]:
    return [n["notification"]["version"] for n in client.of(NEW_EVENT) if n["notification"]["id"] == notification_id]


async def test_joining_another_users_notifications_does_not_leak_them(
    settings: Settings, gateway: tuple[Gateway, str], emitter: Emitter
) -> None:
    gw, url = gateway
    alice, bob = new_user("alice"), new_user("bob")
    async with opened(url, mint_token(settings, alice)) as a:
        assert await a.call("join:notifications", {"userId": bob}) == {"ok": True}
        assert await a.call("join:notifications") == {"ok": True}
        await emitter.notification(bob, body("secret", 1, 1, "for bob only"))
        bob_change = {"userId": bob, "read": ["secret"], "deleted": [], "all": False, "before": None}
        await emitter.inbox(bob, bob_change, unread=42)
        # Even published on alice's gateway's own channel, an entry for bob reaches none of alice's connections.
        entry = live.encode_entry(bob, notes=[body("secret2", 1, 2)], inbox=bob_change, unread=42)
        await emitter.redis.publish(keys.live_channel(gw.gateway_id), orjson.dumps([entry]))
        await emitter.notification(alice, body("mine", 1, 1, "for alice"))
        # Bob's entries went out before alice's on the same channel and the gateway handles them in order:
        # once alice has her notification and the count after it, anything for bob would have arrived.
        await wait_until(lambda: bool(a.of(NEW_EVENT)) and len(a.counts()) >= 2, what="alice's control and count")
        assert [n["notification"]["id"] for n in a.of(NEW_EVENT)] == ["mine"]
        assert not a.of(READ_EVENT)
        assert 42 not in a.counts()


@pytest.mark.parametrize(
    ("protocol", "event", "args", "error"),
    [
        ("compat", "notification:mark_read", None, "needs a payload {notificationId}"),
        ("compat", "notification:mark_read", {}, "exactly one of notificationId and notificationIds"),
        ("compat", "notification:mark_read", {"notificationIds": "n1"}, "notificationIds: Input should be"),
        ("compat", "notification:mark_all_read", "all", "payload must be an object"),
        ("compat", "mark_read", {"ids": ["n1"]}, "unknown event 'mark_read'"),
        ("compat", "fetch", {}, "unknown event 'fetch'"),
        (None, "notification:mark_read", {"notificationId": "n1"}, "unknown event 'notification:mark_read'"),
        (None, "join:notifications", {}, "unknown event 'join:notifications'"),
    ],
)
async def test_each_connection_uses_its_own_protocols_events(
    settings: Settings, gateway: tuple[Gateway, str], protocol: str | None, event: str, args: Any, error: str
) -> None:
    _gw, url = gateway
    async with opened(url, mint_token(settings, new_user()), protocol=protocol) as client:
        ack = await client.call(event, args)
        assert ack["ok"] is False
        assert error in ack["error"]


async def test_compat_events_are_rate_limited(settings: Settings, gateway: tuple[Gateway, str]) -> None:
    gw, url = gateway
    async with opened(url, mint_token(settings, new_user())) as client:
        acks = await asyncio.gather(*(client.call("join:notifications", {}) for _ in range(gw.limits.burst * 3)))
        assert {"ok": False, "error": "rate limited"} in acks
        assert sum(1 for a in acks if a["ok"]) < gw.limits.burst * 2
