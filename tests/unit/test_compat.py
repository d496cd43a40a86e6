"""The existing application's protocol ("compat"): the view of a notification, the translation of Herald's
internal emits per protocol, protocol selection at connect, compat payloads and coalesced count reads."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from herald.gateway import compat, protocol
from herald.gateway.counts import CountRefresher
from herald.gateway.fanout import Fanout
from herald.gateway.limits import TokenBucket
from herald.gateway.session import ClientSession
from herald.gateway.translate import Translation, count_event, inbox_change, translate
from herald.live import INBOX_EVENT


def single(**fields: Any) -> dict[str, Any]:
    return {
        "id": "n1",
        "version": 1,
        "cursor": 7,
        "userId": "u1",
        "type": "COMMENT_ADDED",
        "text": "Zoe commented",
        "title": "New comment",
        "message": "Zoe: nice trip!",
        "actors": [{"id": "zoe", "name": "Zoe", "avatarUrl": "https://x/zoe.png"}],
        "count": 1,
        "target": {"type": "post", "id": "p1"},
        "read": False,
        "priority": "HIGH",
        "category": "social",
        "actionUrl": "/posts/p1",
        "imageUrl": "https://x/p1.png",
        "data": {"commentId": "c9"},
        "createdAt": "2026-11-26T10:00:00.000Z",
        "updatedAt": "2026-11-26T10:00:05.000Z",
    } | fields


def group(**fields: Any) -> dict[str, Any]:
    return {
        "id": "g1",
        "version": 3,
        "cursor": 9,
        "userId": "u1",
        "type": "POST_LIKED",
        "text": "John and 2 others liked your post",
        "actors": [{"id": "john", "name": "John"}, {"id": "sarah", "name": "Sarah"}],
        "count": 3,
        "target": {"type": "post", "id": "p1"},
        "groupKey": "POST_LIKED:post:p1",
        "read": True,
        "priority": "NORMAL",
        "createdAt": "2026-11-26T10:00:00.000Z",
        "updatedAt": "2026-11-26T10:03:00.000Z",
    } | fields


# -- the view --------------------------------------------------------------------------------------------


def test_a_single_notification_keeps_its_title_and_message() -> None:
    view = compat.view(single())
    assert view == {
        "id": "n1",
        "title": "New comment",
        "message": "Zoe: nice trip!",
        "type": "COMMENT_ADDED",
        "category": "social",
        "priority": "HIGH",
        "entityType": "post",
        "entityId": "p1",
        "actionUrl": "/posts/p1",
        "imageUrl": "https://x/p1.png",
        "isRead": False,
        "createdAt": "2026-11-26T10:00:00.000Z",
        "aggregatedCount": 1,
        "aggregatedActors": ["zoe"],
        "groupKey": None,
        "version": 1,
        "cursor": 7,
        "updatedAt": "2026-11-26T10:00:05.000Z",
        "userId": "u1",
        "text": "Zoe commented",
        "actors": [{"id": "zoe", "name": "Zoe", "avatarUrl": "https://x/zoe.png"}],
        "data": {"commentId": "c9"},
    }


def test_without_title_or_message_the_text_stands_in() -> None:
    view = compat.view(single(title=None, message=None))
    assert view["title"] == view["message"] == "Zoe commented"
    view = compat.view({k: v for k, v in single().items() if k not in ("title", "message")})
    assert view["title"] == view["message"] == "Zoe commented"


@pytest.mark.parametrize(
    "body",
    [
        group(),
        # One occurrence so far, but a group: its title would describe only the first occurrence.
        group(count=1, title="John liked", message="John liked your post"),
        # Several occurrences without a group key (an older body): still the group's text.
        single(count=2),
    ],
)
def test_an_aggregated_notification_shows_its_text_as_title_and_message(body: dict[str, Any]) -> None:
    view = compat.view(body)
    assert view["title"] == view["message"] == body["text"]
    assert view["aggregatedCount"] == body["count"]


def test_a_group_lists_its_actor_ids_and_group_key() -> None:
    view = compat.view(group())
    assert view["aggregatedActors"] == ["john", "sarah"]
    assert view["actors"] == group()["actors"]
    assert view["groupKey"] == "POST_LIKED:post:p1"
    assert view["isRead"] is True


def test_missing_fields_default_to_none() -> None:
    view = compat.view({"id": "n2", "version": 1, "text": "hello", "type": "SYSTEM"})
    assert view["entityType"] is view["entityId"] is None
    assert view["category"] is view["actionUrl"] is view["imageUrl"] is view["groupKey"] is None
    assert view["isRead"] is False
    assert view["aggregatedCount"] == 1
    assert view["aggregatedActors"] == []
    assert view["priority"] == compat.DEFAULT_PRIORITY
    assert compat.view(single(target=None))["entityId"] is None


def test_notification_new_wraps_the_view_with_timestamp_and_priority() -> None:
    payload = compat.new_notification(single())
    assert payload["notification"] == compat.view(single())
    assert payload["timestamp"] == "2026-11-26T10:00:05.000Z"
    assert payload["priority"] == "HIGH"


def test_small_payloads() -> None:
    assert compat.count_updated(4) == {"unreadCount": 4}
    assert compat.read("n1") == compat.deleted("n1") == {"notificationId": "n1"}
    assert compat.all_read(None) == {}
    assert compat.all_read("2026-11-26T10:00:00.000Z") == {"before": "2026-11-26T10:00:00.000Z"}


# -- translation -----------------------------------------------------------------------------------------

INBOX = {"userId": "u1", "read": ["a", "b"], "deleted": ["c"], "all": True, "before": "2026-11-26", "unread": None}


def test_a_notification_per_protocol() -> None:
    body = single()
    native = translate(protocol.HERALD, protocol.NOTIFICATION_EVENT, body)
    assert native == Translation(sends=((protocol.NOTIFICATION_EVENT, body),))
    assert native.sends[0][1] is body  # untouched, not copied
    theirs = translate(protocol.COMPAT, protocol.NOTIFICATION_EVENT, body)
    assert theirs.sends == ((compat.NEW_EVENT, compat.new_notification(body)),)
    assert theirs.refresh_count  # the application's clients expect a count after each notification
    assert translate(protocol.COMPAT, protocol.NOTIFICATION_EVENT, "not a body") == Translation()


def test_an_unread_count_per_protocol() -> None:
    assert translate(protocol.HERALD, protocol.UNREAD_EVENT, {"unread": 3}).live() == (
        (protocol.UNREAD_EVENT, {"unread": 3}),
    )
    assert translate(protocol.COMPAT, protocol.UNREAD_EVENT, {"unread": 3}).live() == (
        (compat.COUNT_EVENT, {"unreadCount": 3}),
    )
    assert count_event(protocol.COMPAT, 0) == (compat.COUNT_EVENT, {"unreadCount": 0})
    assert count_event(protocol.HERALD, 0) == (protocol.UNREAD_EVENT, {"unread": 0})


def test_an_inbox_change_for_herald_clients() -> None:
    translation = translate(protocol.HERALD, INBOX_EVENT, INBOX)
    assert translation.sends == (
        (protocol.READ_EVENT, {"ids": ["a", "b"], "all": True, "before": "2026-11-26"}),
        (protocol.DELETED_EVENT, {"ids": ["c"]}),
    )
    assert translation.count is None
    assert translation.refresh_count  # no count in the change: the gateway reads it


def test_an_inbox_change_for_compat_clients() -> None:
    translation = translate(protocol.COMPAT, INBOX_EVENT, INBOX | {"unread": 2})
    assert translation.live() == (
        (compat.READ_EVENT, {"notificationId": "a"}),
        (compat.READ_EVENT, {"notificationId": "b"}),
        (compat.DELETED_EVENT, {"notificationId": "c"}),
        (compat.ALL_READ_EVENT, {"before": "2026-11-26"}),
        (compat.COUNT_EVENT, {"unreadCount": 2}),
    )
    assert not translation.refresh_count


def test_a_gateway_read_announces_an_inbox_change_with_its_count() -> None:
    change = inbox_change("u1", read=["a"], unread=4)
    assert change == {"userId": "u1", "read": ["a"], "deleted": [], "all": False, "before": None, "unread": 4}
    everything = inbox_change("u1", read=None, unread=0)
    assert everything["all"] is True
    assert translate(protocol.HERALD, INBOX_EVENT, everything).live() == (
        (protocol.READ_EVENT, {"ids": [], "all": True, "before": None}),
        (protocol.UNREAD_EVENT, {"unread": 0}),
    )


@pytest.mark.parametrize("payload", [None, "x", {"read": ["a"]}, {"userId": "u1", "read": "a"}, INBOX | {"unread": -1}])
@pytest.mark.parametrize("protocol_name", protocol.PROTOCOLS)
def test_a_malformed_inbox_change_is_dropped_never_forwarded(protocol_name: str, payload: Any) -> None:
    assert translate(protocol_name, INBOX_EVENT, payload) == Translation()


@pytest.mark.parametrize("protocol_name", protocol.PROTOCOLS)
def test_events_outside_herald_protocol_pass_untouched(protocol_name: str) -> None:
    assert translate(protocol_name, "announcement", {"x": 1}).live() == (("announcement", {"x": 1}),)


# -- connect ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "query", "default", "expected"),
    [
        ({"token": "t"}, "", protocol.HERALD, protocol.HERALD),
        ({"token": "t"}, "", protocol.COMPAT, protocol.COMPAT),
        ({"token": "t", "protocol": "compat"}, "", protocol.HERALD, protocol.COMPAT),
        ({"token": "t"}, "EIO=4&transport=websocket&protocol=compat", protocol.HERALD, protocol.COMPAT),
        ({"token": "t", "protocol": "herald"}, "protocol=compat", protocol.COMPAT, protocol.HERALD),
        ({"token": "t", "protocol": None}, "protocol=compat", protocol.HERALD, protocol.COMPAT),
    ],
)
def test_the_protocol_comes_from_auth_then_query_then_settings(
    auth: dict[str, Any], query: str, default: str, expected: str
) -> None:
    assert protocol.parse_connect_auth(auth, query, default).protocol == expected


@pytest.mark.parametrize(
    ("auth", "query"), [({"token": "t", "protocol": "socket.io"}, ""), ({"token": "t"}, "protocol=v1")]
)
def test_an_unknown_protocol_is_refused(auth: dict[str, Any], query: str) -> None:
    with pytest.raises(protocol.ProtocolError, match=r"unknown protocol .*'herald' or 'compat'"):
        protocol.parse_connect_auth(auth, query)


@pytest.mark.parametrize("auth", [None, {}, {"token": ""}, {"token": None, "since": "5"}])
def test_a_missing_token_is_left_to_the_authenticator(auth: Any) -> None:
    # A session cookie may still authenticate the client: auth.authenticate refuses when there is none.
    assert protocol.parse_connect_auth(auth).token is None


def test_auth_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(protocol.ProtocolError, match="invalid auth"):
        protocol.parse_connect_auth("token")


# -- compat client payloads ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "ids"),
    [
        ({"notificationId": "n1"}, ["n1"]),
        ({"notificationIds": ["n1", "n2"]}, ["n1", "n2"]),
        ({"notificationId": "n1", "userId": "u1"}, ["n1"]),  # the application's extra fields are ignored
    ],
)
def test_compat_mark_read_takes_one_id_or_many(payload: dict[str, Any], ids: list[str]) -> None:
    assert protocol.parse_compat_mark_read((payload,), max_ids=10) == ids


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((), "needs a payload"),
        (("n1",), "payload must be an object"),
        (({},), "exactly one of notificationId and notificationIds"),
        (({"notificationId": "a", "notificationIds": ["b"]},), "exactly one"),
        (({"notificationId": 5},), "notificationId: Input should be a valid string"),
        (({"notificationIds": []},), "notificationIds: List should have at least 1 item"),
        (({"notificationIds": ["a"] * 11},), "notificationIds: at most 10 per call"),
        (({"notificationId": "x" * 300},), "notificationId: each id must be 1 to 256 characters"),
    ],
)
def test_compat_mark_read_refuses_bad_payloads(args: tuple[Any, ...], error: str) -> None:
    with pytest.raises(protocol.ProtocolError, match=error):
        protocol.parse_compat_mark_read(args, max_ids=10)


# -- coalesced counts and the fan-out --------------------------------------------------------------------


async def test_count_requests_for_a_user_are_coalesced() -> None:
    reads: list[str] = []
    delivered: list[tuple[str, int]] = []

    async def read(user_id: str) -> int:
        reads.append(user_id)
        return 100

    async def deliver(sid: str, unread: int) -> None:
        delivered.append((sid, unread))

    counts = CountRefresher(read, deliver, window_s=0.02, on_error=lambda exc: None)
    for i in range(100):
        counts.request("u1", f"s{i % 3}")
        await asyncio.sleep(0)
    counts.request("u2", "t1")
    await asyncio.sleep(0.1)
    assert 2 <= len(reads) <= 4, reads
    assert sorted(set(delivered)) == [("s0", 100), ("s1", 100), ("s2", 100), ("t1", 100)]
    await counts.close()


async def test_a_count_read_overtaken_by_a_newer_count_is_read_again() -> None:
    values = iter([5, 3])
    delivered: list[int] = []
    counts: CountRefresher

    async def read(user_id: str) -> int:
        value = next(values)
        if value == 5:
            counts.superseded(user_id)  # a count arrived with an emit while this read ran
        return value

    async def deliver(_sid: str, unread: int) -> None:
        delivered.append(unread)

    counts = CountRefresher(read, deliver, window_s=0, on_error=lambda exc: None)
    counts.request("u1", "s1")
    await asyncio.sleep(0.05)
    assert delivered == [3]
    await counts.close()


def _session(user_id: str, protocol_name: str) -> ClientSession:
    bucket = TokenBucket(1, 1, time.monotonic)
    return ClientSession(user_id=user_id, bucket=bucket, max_remembered=10, protocol=protocol_name, replaying=False)


async def test_the_fanout_translates_once_per_protocol_and_groups_recipients() -> None:
    sessions = {
        "h1": _session("u1", protocol.HERALD),
        "c1": _session("u1", protocol.COMPAT),
        "c2": _session("u1", protocol.COMPAT),
        "h2": _session("u1", protocol.HERALD),
    }
    sessions["held"] = _session("u1", protocol.COMPAT)
    sessions["held"].replaying = True

    async def send(_sid: str, _event: str, _payload: Any) -> None:
        pass

    async def read(_user_id: str) -> int:
        return 0

    fanout = Fanout(sessions, send, read_count=read, count_window_s=0, on_count_error=lambda exc: None)
    body = single()
    deliveries = fanout.route(protocol.NOTIFICATION_EVENT, body, [*sessions, "gone"])
    assert [(event, sids) for event, _payload, sids in deliveries] == [
        (protocol.NOTIFICATION_EVENT, ["h1", "h2"]),
        (compat.NEW_EVENT, ["c1", "c2"]),
    ]
    assert sessions["held"].pending == [(protocol.NOTIFICATION_EVENT, body)]
    # The same version again is stale for everyone who has it.
    assert fanout.route(protocol.NOTIFICATION_EVENT, body, list(sessions)) == []
    # An inbox change naming another user reaches nobody, whatever room it came through.
    assert fanout.route(INBOX_EVENT, INBOX | {"userId": "u2"}, list(sessions)) == []
    await fanout.close()
