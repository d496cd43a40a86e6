"""Fuzzing the Socket.IO client events of both protocols (docs/reliability.md, Bad input): whatever a client sends
as arguments, a handler answers with an ack or raises ProtocolError (which the gateway turns into
`{ok: false, error}`), never another exception; and the connect `auth` is parsed or refused the same way."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herald.authjs import decrypt_session_token
from herald.config import load_settings
from herald.errors import AuthError
from herald.gateway import compat, protocol
from herald.gateway.analytics import AnalyticsPublisher
from herald.gateway.client_events import ClientEvents
from herald.gateway.limits import GatewayLimits, TokenBucket
from herald.gateway.session import ClientSession
from herald.push_subscriptions import PushSubscriptionError, PushSubscriptionStore
from herald.store_memory import MemoryStore

FUZZ = settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])

# What python-socketio hands a handler: JSON values decoded from the packet (any size, any nesting).
JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=300),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(
            st.one_of(
                st.text(max_size=10),
                st.sampled_from(["ids", "before", "limit", "notificationId", "notificationIds", "userId"]),
            ),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=20,
)
# Payloads near the valid ones: the right keys with values of any type.
NEAR_VALID = st.one_of(
    st.fixed_dictionaries({"ids": JSON}),
    st.fixed_dictionaries({"ids": st.lists(st.text(max_size=400), max_size=600)}),
    st.fixed_dictionaries({"before": JSON, "limit": JSON}),
    st.fixed_dictionaries({"notificationId": JSON}),
    st.fixed_dictionaries({"notificationIds": st.lists(st.text(max_size=300), max_size=600)}),
    st.fixed_dictionaries({"notificationId": st.text(), "notificationIds": JSON}),
)
ARGS = st.lists(st.one_of(JSON, NEAR_VALID), max_size=3).map(tuple)
EVENTS = [
    (protocol.HERALD, name) for name in ("mark_read", "mark_all_read", "fetch", "register_push", "unregister_push")
] + [
    (protocol.COMPAT, name)
    for name in (compat.MARK_READ, compat.MARK_ALL_READ, compat.GET_COUNT, compat.JOIN, "register_push")
]
NOW_MS = 1_795_687_200_000


def events(store: MemoryStore) -> ClientEvents:
    async def announce(_user: str, _change: dict[str, Any]) -> None:
        return None

    async def send_count(_sid: str, _session: ClientSession, _unread: int) -> None:
        return None

    # Not started: publish_read only queues (bounded), which is all a handler does with it.
    analytics = AnalyticsPublisher(load_settings())
    return ClientEvents(store, GatewayLimits(), analytics, announce=announce, send_count=send_count)


def session(protocol_name: str) -> ClientSession:
    bucket = TokenBucket(1000, 1000, time.monotonic)
    return ClientSession(user_id="u1", bucket=bucket, max_remembered=10, protocol=protocol_name, replaying=False)


@pytest.mark.parametrize(("protocol_name", "event"), EVENTS)
@FUZZ
@given(args=ARGS)
async def test_any_payload_gets_an_ack_or_a_protocol_error(protocol_name: str, event: str, args: tuple[Any]) -> None:
    handler = events(MemoryStore(lambda: NOW_MS)).handler(protocol_name, event)
    assert handler is not None
    try:
        ack = await handler("sid", session(protocol_name), args)
    except protocol.ProtocolError as exc:
        ack = protocol.error(str(exc))  # what the gateway sends back (herald/gateway/server.py, _on_event)
        assert ack["error"], "a refusal must say why"
    assert ack["ok"] in (True, False)


@FUZZ
@given(auth=st.one_of(JSON, st.fixed_dictionaries({"token": JSON, "since": JSON, "protocol": JSON})), query=st.text())
def test_any_connect_auth_is_parsed_or_refused_with_a_reason(auth: Any, query: str) -> None:
    try:
        parsed = protocol.parse_connect_auth(auth, query)
    except protocol.ProtocolError as exc:
        refusal = str(exc)
    else:
        refusal = ""
        assert parsed.protocol in protocol.PROTOCOLS
        assert parsed.since is None or parsed.since >= 0
    assert refusal or parsed


async def test_a_valid_mark_read_still_works_after_garbage() -> None:
    store = MemoryStore(lambda: NOW_MS)
    table = events(store)
    handler = table.handler(protocol.HERALD, "mark_read")
    assert handler is not None
    for garbage in [(["x"],), ({"ids": [1]},), ({"ids": ["a" * 10_000]},), ({"ids": []},), ({}, {})]:
        with pytest.raises(protocol.ProtocolError):
            await handler("sid", session(protocol.HERALD), garbage)
    assert await handler("sid", session(protocol.HERALD), ({"ids": ["n1"]},)) == {"ok": True, "unread": 0}


def test_an_authjs_token_whose_header_nests_thousands_of_brackets_is_refused() -> None:
    # Found by fuzzing the CLI's JSON inputs: the json module raises RecursionError, not ValueError, there.
    header = base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=")
    with pytest.raises(AuthError, match="not base64url-encoded JSON"):
        decrypt_session_token("secret", f"{header}.a.b.c.d", salts=["authjs.session-token"])


async def test_unregister_push_with_an_object_naming_no_subscription_is_refused() -> None:
    # Found by the gateway garbage test: a KeyError escaped the handler and the client never got an ack.
    store = PushSubscriptionStore(redis=None)  # type: ignore[arg-type]  # refused before Redis is asked
    with pytest.raises(PushSubscriptionError, match="endpoint"):
        await store.remove("u1", {"keys": {}})
