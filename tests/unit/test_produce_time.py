"""The produce time (a Kafka record's timestamp) travels with an event from the reader to the commit, and from
the commit to the gateways (live entry `p`) and the delivery actors (outbox field `p`), never inside a body."""

from __future__ import annotations

from typing import Any

import orjson

from herald.applier import InboxApplier
from herald.gateway.http import HttpApp
from herald.live import encode_entry, parse_message
from herald.outbox import _job
from herald.prepared import decode_batch, encode_batch
from herald.routing import route
from herald.store_memory import MemoryStore
from tests.support.events import event_dict
from tests.unit.test_routing import Record

NOW_MS = 1_795_687_260_000


def test_the_record_timestamp_reaches_the_aggregator_with_the_event() -> None:
    record = Record("t", 0, 1, b"u", orjson.dumps(event_dict("u1")), timestamp=1_795_687_200_123)
    batch = route([record], shards=64, actors=1)
    [item] = decode_batch(encode_batch(batch.per_actor[0]))
    assert item.produced_ms == 1_795_687_200_123


async def test_a_commit_carries_its_newest_events_produce_time_to_the_live_entry_not_the_body() -> None:
    store = MemoryStore(lambda: NOW_MS)
    applier = InboxApplier(store, clock_ms=lambda: NOW_MS, delivery_channels=("IN_APP",))
    records = [
        Record("t", 0, 1, b"u", orjson.dumps(event_dict("u1", actor="a1")), timestamp=NOW_MS - 900),
        Record("t", 0, 2, b"u", orjson.dumps(event_dict("u1", actor="a2")), timestamp=NOW_MS - 300),
    ]
    await applier.apply_prepared(route(records, shards=64, actors=1).per_actor[0])
    [entry] = store.live
    assert entry["p"] == NOW_MS - 300
    assert all("p" not in note and "produced" not in str(note) for note in entry["notes"])
    [parsed] = parse_message(orjson.dumps([entry]))
    assert parsed.produced_ms == NOW_MS - 300


def test_announcements_and_old_entries_have_no_produce_time() -> None:
    assert "p" not in encode_entry("u1", inbox={"read": ["n1"]})
    [parsed] = parse_message(b'[{"u":"u1","from":1,"to":2,"unread":0,"notes":[],"inbox":null}]')
    assert parsed.produced_ms is None


def test_an_outbox_entry_gives_its_produce_time_to_the_job() -> None:
    body = orjson.dumps({"id": "n1", "version": 1}).decode()
    assert _job({"id": "d1", "u": "u1", "d": body, "p": "1795687200123"}, 0).produced_ms == 1_795_687_200_123
    assert _job({"id": "d1", "u": "u1", "d": body}, 0).produced_ms is None  # written before, or by the schedule
    assert _job({"id": "d1", "u": "u1", "d": body, "p": "soon"}, 0).produced_ms is None


async def _get(app: HttpApp, path: str) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        sent.append(message)

    await app({"type": "http", "method": "GET", "path": path}, receive, send)
    return sent[0]["status"], sent[1]["body"]


async def test_dashboard_data_answers_json_and_503_when_the_board_is_unreachable() -> None:
    async def data() -> dict[str, Any]:
        return {"events_in": 5}

    status, body = await _get(HttpApp(lambda: {"ok": True}, data), "/dashboard/data")
    assert (status, orjson.loads(body)) == (200, {"events_in": 5})

    async def down() -> dict[str, Any]:
        raise ConnectionRefusedError("redis down")

    status, body = await _get(HttpApp(lambda: {"ok": True}, down), "/dashboard/data")
    assert status == 503
    assert "redis down" in orjson.loads(body)["error"]
    status, _ = await _get(HttpApp(lambda: {"ok": True}), "/dashboard/data")
    assert status == 404
