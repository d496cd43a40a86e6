"""The wire format: the documented example round-trips, extras survive, every bad input names its field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from herald.errors import InvalidEventError
from herald.events import (
    MAX_EVENT_BYTES,
    Channel,
    EventType,
    NotificationEvent,
    Priority,
    decode_event,
    derive_event_id,
    encode_event,
    event_json_schema,
    validate_event,
)
from tests.support.events import design_example


def raw(data: Any) -> bytes:
    return json.dumps(data).encode()


def without(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}


def test_design_example_decodes() -> None:
    event = decode_event(raw(design_example()))
    assert event.type is EventType.NOTIFICATION_CREATED
    assert event.user_id == "user123"
    assert event.notification is not None
    assert event.notification.actor is not None
    assert event.notification.actor.avatar_url == "https://cdn.example/u42.png"
    assert event.channels == [Channel.IN_APP, Channel.PUSH, Channel.EMAIL, Channel.SMS]
    assert event.priority is Priority.NORMAL
    assert event.timestamp == datetime(2026, 11, 26, 10, tzinfo=UTC)
    assert event.timestamp_ms == 1795687200000
    assert event.metadata["requiresRealtime"] is True


def test_design_example_round_trips_exactly() -> None:
    """Timestamps are written like JavaScript's toISOString, so the example comes back identical."""
    example = design_example()
    encoded = encode_event(decode_event(raw(example)))
    assert json.loads(encoded) == example
    assert decode_event(encoded) == decode_event(raw(example))


def test_without_event_id_uses_the_fallback() -> None:
    data = without(design_example(), "eventId")
    assert decode_event(raw(data)).event_id is None
    fallback = derive_event_id("notification-events", 3, 42)
    event = decode_event(raw(data), fallback_event_id=fallback)
    assert event.event_id == fallback
    assert "eventId" not in json.loads(encode_event(decode_event(raw(data))))


def test_own_event_id_wins_over_fallback() -> None:
    assert decode_event(raw(design_example()), fallback_event_id="kafka:x:0:0").event_id == "0b9f6c1e-1"


def test_derive_event_id_names_the_record() -> None:
    # A replay of the same record must get the same id in any process: it is the record's coordinates.
    assert derive_event_id("t", 1, 2) == "kafka:t:1:2"
    assert derive_event_id("t", 1, 2) != derive_event_id("t", 2, 1)


def test_extra_fields_are_kept_and_reserialized() -> None:
    data = design_example()
    data["tenant"] = "acme"
    data["traceParent"] = None
    data["notification"]["actor"]["verified"] = True
    data["notification"]["target"]["extra"] = {"nested": [1, 2]}
    data["notification"]["groupKey"] = "g1"
    encoded = json.loads(encode_event(decode_event(raw(data))))
    assert encoded == data


def test_defaults_minimal_event() -> None:
    event = decode_event(b'{"type":"NOTIFICATION_READ","userId":"u1","timestamp":"2026-01-01T00:00:00Z"}')
    assert event.channels == [Channel.IN_APP]
    assert event.priority is Priority.NORMAL
    assert event.notification is None
    assert event.metadata == {}
    assert decode_event(encode_event(event)) == event


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T10:00:00Z", datetime(2026, 11, 26, 10, tzinfo=UTC)),
        ("2026-11-26T10:00:00", datetime(2026, 11, 26, 10, tzinfo=UTC)),  # naive means UTC
        ("2026-11-26T12:00:00+02:00", datetime(2026, 11, 26, 10, tzinfo=UTC)),
        ("2026-11-26T10:00:00.123456Z", datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_timestamps_normalize_to_utc(text: str, expected: datetime) -> None:
    data = design_example() | {"timestamp": text}
    event = decode_event(raw(data))
    assert event.timestamp == expected
    assert event.timestamp.utcoffset() == timedelta(0)
    assert decode_event(encode_event(event)).timestamp == expected


def test_python_construction_by_field_name() -> None:
    local = timezone(timedelta(hours=-5))
    event = NotificationEvent(
        type=EventType.NOTIFICATION_DELETED, user_id="u1", timestamp=datetime(2026, 1, 1, 5, tzinfo=local)
    )
    assert event.timestamp == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert json.loads(encode_event(event))["timestamp"] == "2026-01-01T10:00:00.000Z"


def _bad(mutate: dict[str, Any] | None = None, drop: str | None = None) -> bytes:
    data = design_example()
    if drop:
        data = without(data, drop)
    return raw(data | (mutate or {}))


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        (_bad(drop="userId"), "userId", "missing"),
        (_bad({"userId": 123}), "userId", "string"),
        (_bad({"userId": ""}), "userId", "at least 1"),
        (_bad({"priority": "SEVERE"}), "priority", "CRITICAL"),
        (_bad({"channels": ["IN_APP", "PIGEON"]}), "channels[1]", "WEBHOOK"),
        (_bad({"channels": "IN_APP"}), "channels", "array"),
        (_bad({"type": "NOTIFICATION_EXPLODED"}), "type", "NOTIFICATION_CREATED"),
        (_bad({"timestamp": "yesterday"}), "timestamp", "ISO-8601"),
        (_bad({"timestamp": 1795687200000}), "timestamp", "ISO-8601"),
        (_bad({"timestamp": "1795687200"}), "timestamp", "ISO-8601"),
        (_bad(drop="timestamp"), "timestamp", "missing"),
        (_bad(drop="notification"), "notification", "NOTIFICATION_CREATED"),
        (
            _bad({"notification": {"type": "POST_LIKED", "actor": {"name": "x"}}}),
            "notification.actor.id",
            "missing",
        ),
        (_bad({"notification": {"type": "POST_LIKED", "data": []}}), "notification.data", "object"),
        (_bad({"metadata": "x"}), "metadata", "object"),
    ],
)
def test_bad_fields_are_named(payload: bytes, field: str, reason: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        decode_event(payload)
    assert caught.value.field == field
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"[1, 2]", "JSON object, got an array"),
        (b'"hello"', "JSON object, got a string"),
        (b"null", "JSON object, got null"),
        (b'{"userId": ', "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"userId": "\xff\xfe"}', "not valid UTF-8"),
    ],
)
def test_bad_documents(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidEventError, match=reason) as caught:
        decode_event(payload)
    assert caught.value.field is None


def test_oversized_event_is_rejected_before_parsing() -> None:
    data = design_example()
    data["notification"]["data"] = {"blob": "x" * MAX_EVENT_BYTES}
    with pytest.raises(InvalidEventError, match="more than the limit") as caught:
        decode_event(raw(data))
    assert caught.value.field is None


def test_exactly_at_limit_is_accepted() -> None:
    data = design_example()
    data["notification"]["data"] = {"blob": ""}
    padding = MAX_EVENT_BYTES - len(raw(data))
    data["notification"]["data"]["blob"] = "x" * padding
    assert len(raw(data)) == MAX_EVENT_BYTES
    assert decode_event(raw(data)).user_id == "user123"


def test_validate_event_from_mapping_names_field() -> None:
    with pytest.raises(InvalidEventError) as caught:
        validate_event({"type": "NOTIFICATION_READ", "timestamp": "2026-01-01T00:00:00Z"})
    assert caught.value.field == "userId"
    event = validate_event({"type": "NOTIFICATION_READ", "user_id": "u", "timestamp": "2026-01-01T00:00:00Z"})
    assert event.user_id == "u"


def test_json_schema_is_camel_case_and_open() -> None:
    schema = event_json_schema()
    assert set(schema["required"]) == {"type", "userId", "timestamp"}
    assert "eventId" in schema["properties"]
    assert schema["additionalProperties"] is True
    assert schema["properties"]["timestamp"]["format"] == "date-time"
    assert schema["then"]["required"] == ["notification"]
    assert "avatarUrl" in schema["$defs"]["Actor"]["properties"]
    json.dumps(schema)  # must be plain JSON
