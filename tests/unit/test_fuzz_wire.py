"""Fuzzing the wire decoding (docs/reliability.md, Bad input): any bytes decode to an event or raise
InvalidEventError with a reason, never another exception, in bounded time; an accepted event can be applied and
stored (orjson, what the Redis store writes); route() never raises and accounts for every record."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from herald import routing
from herald.applier import InboxApplier
from herald.errors import InvalidEventError
from herald.events import MAX_ID_CHARS, NotificationEvent, decode_event
from herald.malformed import KINDS, malformed_records
from herald.prepared import prepare
from herald.routing import route
from herald.store_memory import MemoryStore
from tests.support.app_events import prisma_created, processor_event
from tests.support.events import BASE_TIME, design_example

NOW_MS = int(BASE_TIME.timestamp() * 1000)
FUZZ = settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = NOW_MS


def decoded_or_refused(raw: bytes) -> NotificationEvent | InvalidEventError:
    """The property itself: InvalidEventError with a reason is the only failure allowed."""
    try:
        return decode_event(raw, fallback_event_id="kafka:t:0:0", fallback_timestamp_ms=NOW_MS)
    except InvalidEventError as exc:
        refusal = exc
    assert str(refusal).strip(), "a refusal must say why"
    return refusal


def assert_storable(event: NotificationEvent) -> None:
    """What the aggregator does with an accepted event: prepare it, fold it, and write the bodies as JSON."""
    assert len(event.user_id) <= MAX_ID_CHARS
    try:
        prepared = prepare(event)
    except InvalidEventError:
        return  # refused at the reader too (route() dead-letters it): fine
    if prepared.occurrence is not None:
        orjson.dumps(prepared.occurrence.data)
        orjson.dumps(prepared.occurrence.target)
    if prepared.preferences is not None:
        orjson.dumps(prepared.preferences)


# -- any bytes ---------------------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=4096))
@example(b"")
@example(b"\xff\xfe{}")
@example(b"[" * 100_000)
@example(b'{"type":"NOTIFICATION_CREATED","userId":"\\ud800"}')
def test_any_bytes_decode_or_are_refused_with_a_reason(raw: bytes) -> None:
    decoded_or_refused(raw)


# -- near-valid events: valid ones of each shape, mutated ------------------------------------------------

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
# Raw JSON fragments the generator of Python values cannot make: not-JSON numbers, lone surrogates, deep nesting.
RAW_FRAGMENTS = st.sampled_from(
    [
        b"NaN",
        b"-Infinity",
        b"1e400",
        b"-1e400",
        b"123456789012345678901234567890",
        b'"\\ud800"',
        b'"\\udfff\\ud800"',
        b'"\\u0000"',
        b"[" * 300 + b"]" * 300,
        b"{" * 50 + b"}" * 50,
        b'"' + b"x" * 300_000 + b'"',
        b'"9999-12-31T23:59:59-23:59"',
        b'"0001-01-01T00:00:00+23:59"',
        b'"2026-02-30T10:00:00Z"',
        b"{}",
        b"[]",
    ]
)
SHAPES: list[Callable[[], dict[str, Any]]] = [
    design_example,
    lambda: prisma_created("u1", actor="john", notification_id="app-1"),
    lambda: processor_event("u1", actor="john"),
    lambda: {"type": "NOTIFICATION_READ", "userId": "u1", "notificationIds": ["a", "b"], "timestamp": "2026-11-26"},
    lambda: {"type": "BULK_NOTIFICATIONS_READ", "userId": "u1", "before": "2026-11-26T10:00:00Z"},
    lambda: {"type": "PREFERENCES_UPDATED", "userId": "u1", "preferences": {"channels": {"EMAIL": False}}},
]
MARK = "__fuzz_raw_fragment__"


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += paths(v, (*prefix, i))
    return found


def mutate(event: dict[str, Any], path: tuple[Any, ...], action: str, new: Any) -> Any:
    if not path:
        return new if action == "replace" else event
    parent: Any = event
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "drop":
        del parent[last]
    else:
        parent[last] = new
    return event


@FUZZ
@given(
    shape=st.sampled_from(range(len(SHAPES))),
    data=st.data(),
    action=st.sampled_from(["drop", "replace", "raw"]),
    new=JSON_VALUES,
    fragment=RAW_FRAGMENTS,
)
def test_mutated_valid_events_decode_to_storable_events_or_are_refused(
    shape: int, data: st.DataObject, action: str, new: Any, fragment: bytes
) -> None:
    event = SHAPES[shape]()
    path = data.draw(st.sampled_from(paths(event)))
    mutated = mutate(event, path, "replace" if action == "raw" else action, MARK if action == "raw" else new)
    raw = json.dumps(mutated, ensure_ascii=False).encode()  # orjson cannot write the integers beyond 64 bits
    if action == "raw":
        raw = raw.replace(json.dumps(MARK).encode(), fragment, 1)
    result = decoded_or_refused(raw)
    if isinstance(result, NotificationEvent):
        assert_storable(result)


@FUZZ
@given(JSON_VALUES)
def test_accepted_events_carrying_any_json_in_data_are_applied(extra: Any) -> None:
    event = design_example()
    event["notification"]["data"] = {"payload": extra}
    event["preferences"] = {"x": extra}
    result = decoded_or_refused(json.dumps(event).encode())
    if isinstance(result, InvalidEventError):
        # Only numbers JSON (and orjson) cannot hold are refused in free-form fields.
        assert "64-bit" in str(result), result
        return
    assert_storable(result)


async def test_an_event_with_every_kind_of_free_form_value_goes_through_the_fold_and_the_store() -> None:
    event = design_example()
    event["notification"]["data"] = {"n": [1.5, -(2**63), 2**64 - 1, None, True, {"deep": [[["x"]]]}], "s": "\u0000é😀"}
    store = MemoryStore(lambda: NOW_MS)
    report = await InboxApplier(store, clock_ms=lambda: NOW_MS).apply([decode_event(orjson.dumps(event))])
    assert report.applied == 1
    assert not report.rejected
    [body] = await store.notifications_after("user123", 0, 10)
    assert orjson.loads(orjson.dumps(body))["userId"] == "user123"


@pytest.mark.parametrize(
    ("fragment", "reason"),
    [
        (b"NaN", "notification.data.x: nan is not a JSON number"),
        (b"-Infinity", "notification.data.x: -inf is not a JSON number"),
        (b"1e400", "notification.data.x: inf is not a JSON number"),
        (b"[1, 123456789012345678901234567890]", "notification.data.x[1]: integer out of the 64-bit range"),
        (b"-9223372036854775809", "notification.data.x: integer out of the 64-bit range"),
    ],
)
def test_numbers_json_cannot_hold_are_refused_naming_where(fragment: bytes, reason: str) -> None:
    raw = orjson.dumps(design_example()).replace(b'"data":{}', b'"data":{"x":' + fragment + b"}")
    with pytest.raises(InvalidEventError) as caught:
        decode_event(raw)
    assert str(caught.value).startswith(reason), caught.value


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"])
def test_timestamps_without_a_utc_time_are_refused_not_crashing(when: str) -> None:
    # Found by fuzzing: astimezone() raised OverflowError out of the validator, through decode_event and route().
    with pytest.raises(InvalidEventError, match="timestamp: out of range once converted to UTC"):
        decode_event(orjson.dumps(design_example() | {"timestamp": when}))


def test_identifiers_longer_than_the_limit_are_refused() -> None:
    long_id = "u" * (MAX_ID_CHARS + 1)
    with pytest.raises(InvalidEventError, match=f"userId: String should have at most {MAX_ID_CHARS}"):
        decode_event(orjson.dumps(design_example() | {"userId": long_id}))
    assert decode_event(orjson.dumps(design_example() | {"userId": long_id[:-1]})).user_id == long_id[:-1]


# -- route(): the reader's step over a fetched batch -------------------------------------------------------

RECORD_VALUES = st.one_of(
    st.none(),
    st.binary(max_size=512),
    st.sampled_from([orjson.dumps(design_example(event_id=None)), orjson.dumps(processor_event("u2", actor="x"))]),
    st.sampled_from([m.value for m in malformed_records("fz", 40)]),
)


@FUZZ
@given(st.lists(RECORD_VALUES, max_size=30))
def test_route_never_raises_and_accounts_for_every_record(values: list[bytes | None]) -> None:
    records = [Record("t", i % 3, i, b"k", v) for i, v in enumerate(values)]
    batch = route(records, shards=64, actors=3)
    assert batch.event_count + len(batch.rejected) == len(records)
    assert all(r.reason for r in batch.rejected)
    for p in range(3):
        offsets = [r.offset for r in records if r.partition == p]
        if offsets:
            assert batch.commit_offsets[("t", p)] == max(offsets) + 1


def test_an_unexpected_decoder_error_dead_letters_the_record_instead_of_ending_the_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A decoder bug raising anything else would end the reader's loop, which restarts at the last commit and meets
    # the same record again: a poison pill. It goes to the DLQ with the error as the reason instead.
    def broken(raw: bytes, **_: Any) -> NotificationEvent:
        raise OverflowError("date value out of range")

    monkeypatch.setattr(routing, "decode_event", broken)
    batch = route([Record("t", 0, 7, b"k", b"{}")], shards=8, actors=1)
    assert [(r.offset, r.reason) for r in batch.rejected] == [
        (7, "could not be decoded (OverflowError: date value out of range)")
    ]


def test_every_malformed_kind_is_refused_at_the_reader_for_its_reason() -> None:
    records = malformed_records("kinds", 2000)
    assert {m.kind for m in records} == set(KINDS)
    batch = route([Record("t", 0, i, m.key, m.value) for i, m in enumerate(records)], shards=64, actors=2)
    refused = {r.offset: r.reason for r in batch.rejected}
    wrong: Counter[tuple[str, str | None]] = Counter()
    for i, m in enumerate(records):
        if m.kind == "names_nothing":  # well formed: the aggregator refuses it (tested below)
            assert i not in refused
        elif m.expect not in refused.get(i, ""):
            wrong[(m.kind, refused.get(i))] += 1
    assert not wrong, wrong.most_common(5)


async def test_reads_naming_nothing_are_refused_by_the_aggregator_with_a_reason() -> None:
    [record] = [m for m in malformed_records("nn", 200) if m.kind == "names_nothing"][:1]
    assert record.value is not None
    event = decode_event(record.value, fallback_event_id="kafka:t:0:1")
    report = await InboxApplier(MemoryStore(lambda: NOW_MS), clock_ms=lambda: NOW_MS).apply([event])
    [(_, reason)] = report.rejected
    assert record.expect in reason


def test_decoding_is_bounded_in_time_for_the_largest_inputs() -> None:
    worst = [b"[" * (1024 * 1024), b'{"a":' * 200_000, b'"' + b"\\u0041" * 170_000 + b'"', b"1" * (1024 * 1024)]
    for raw in worst:
        started = time.perf_counter()
        assert isinstance(decoded_or_refused(raw), InvalidEventError)
        assert time.perf_counter() - started < 1.0, raw[:20]
