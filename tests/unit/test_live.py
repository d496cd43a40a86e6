"""The live message format (herald/live.py) as the commit script writes it and a gateway reads it."""

from __future__ import annotations

import orjson
import pytest

from herald.live import MalformedLiveMessage, encode_entry, live_gateways, parse_message


def test_an_entry_round_trips() -> None:
    body = {"id": "n1", "version": 2, "cursor": 7}
    entry = encode_entry("u1", notes=[body], unread=3, from_seq=5, to_seq=8)
    (parsed,) = parse_message(orjson.dumps([entry]))
    assert (parsed.user_id, parsed.from_seq, parsed.to_seq, parsed.unread) == ("u1", 5, 8, 3)
    assert parsed.notes == (body,)
    assert parsed.inbox is None
    assert parsed.is_commit


def test_an_announcement_is_not_a_commit() -> None:
    (parsed,) = parse_message(orjson.dumps([encode_entry("u1", inbox={"read": ["n1"]}, unread=0)]))
    assert not parsed.is_commit
    assert parsed.inbox == {"read": ["n1"]}


def test_lua_writes_an_empty_note_list_as_an_object() -> None:
    (parsed,) = parse_message(b'[{"u":"u1","from":1,"to":2,"unread":0,"notes":{},"inbox":null}]')
    assert parsed.notes == ()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "not JSON"),
        (b'{"u": "u1"}', "not a JSON array"),
        (b'[{"from": 1}]', "without a user"),
        (b'[{"u": "u1", "notes": [1]}]', "`notes`"),
        (b'[{"u": "u1", "inbox": []}]', "`inbox`"),
        (b'[{"u": "u1", "from": "1"}]', "`from` is not an integer"),
        (b'[{"u": "u1", "unread": true}]', "`unread` is not an integer"),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedLiveMessage, match=reason):
        parse_message(data)


def test_only_gateways_whose_claim_has_not_lapsed() -> None:
    presence = {"gw-b": "2000", "gw-a": "1001", "gw-old": "1000", "gw-bad": "soon"}
    assert live_gateways(presence, now_ms=1000) == ["gw-a", "gw-b"]
