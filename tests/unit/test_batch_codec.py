"""What a reader sends an aggregator (herald.prepared.encode_batch) comes out as it went in."""

from __future__ import annotations

import orjson

from herald.events import decode_event
from herald.prepared import decode_batch, encode_batch, prepare
from tests.support import app_events
from tests.support.events import event_dict


def test_every_kind_of_prepared_event_round_trips() -> None:
    wires = [
        event_dict("u1", actor="a1", actor_name="Ann"),
        event_dict("u1", actor="a2", actor_name=None, priority="URGENT", channels=("IN_APP", "EMAIL")),
        app_events.prisma_created("u2", actor="john", notification_id="x1", data={"k": [1, 2]}),
        app_events.read("u2", "x1"),
        app_events.deleted("u2", "x1"),
    ]
    events = [
        prepare(decode_event(orjson.dumps(w), fallback_event_id=f"k:0:{i}"), wire_id=f"k:0:{i}")
        for i, w in enumerate(wires)
    ]
    decoded = decode_batch(encode_batch(events))
    assert decoded == events
    assert [type(e) for e in decoded] == [type(e) for e in events]
    assert decoded[0].occurrence is not None
    assert decoded[0].occurrence.actor is not None
    assert decoded[0].occurrence.actor.name == "Ann"
