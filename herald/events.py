"""The wire format of notification events (DESIGN section 4): pydantic models, decode/encode and JSON Schema.

camelCase on the wire, snake_case in Python. Unknown fields are kept so events pass through Herald unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from herald.errors import InvalidEventError

MAX_EVENT_BYTES: Final = 1024 * 1024
# Sent as the `herald-schema` Kafka header; bump when the wire format changes incompatibly.
SCHEMA_VERSION: Final = "1"

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)


class EventType(StrEnum):
    NOTIFICATION_CREATED = "NOTIFICATION_CREATED"
    NOTIFICATION_READ = "NOTIFICATION_READ"
    NOTIFICATION_DELETED = "NOTIFICATION_DELETED"
    PREFERENCES_UPDATED = "PREFERENCES_UPDATED"


class Channel(StrEnum):
    IN_APP = "IN_APP"
    PUSH = "PUSH"
    EMAIL = "EMAIL"
    SMS = "SMS"
    WEBHOOK = "WEBHOOK"


class Priority(StrEnum):
    LOW = "LOW"
    NORMAL = "NORMAL"
    HIGH = "HIGH"
    URGENT = "URGENT"


def _is_none(value: object) -> bool:
    return value is None


def _optional(**kwargs: Any) -> Any:
    """An optional field left out of the JSON when None.

    `exclude_none` at dump time would also drop extra fields and would change what a producer sent; excluding
    per field keeps extras (even null ones) byte-for-byte meaningful.
    """
    return Field(default=None, exclude_if=_is_none, **kwargs)


class WireModel(BaseModel):
    """Base of the wire models: camelCase aliases, Python names accepted too, unknown fields kept."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        extra="allow",
        frozen=True,
        use_enum_values=False,
    )


class Actor(WireModel):
    id: str = Field(min_length=1)
    name: str | None = _optional()
    avatar_url: str | None = _optional()


class Target(WireModel):
    type: str = Field(min_length=1)
    id: str = Field(min_length=1)
    title: str | None = _optional()


class NotificationBody(WireModel):
    # Free-form on purpose: the application invents notification types (POST_LIKED, ...) faster than
    # Herald releases.
    type: str = Field(min_length=1)
    actor: Actor | None = _optional()
    target: Target | None = _optional()
    title: str | None = _optional()
    message: str | None = _optional()
    data: dict[str, Any] = Field(default_factory=dict)


class NotificationEvent(WireModel):
    type: EventType
    event_id: str | None = _optional(min_length=1)
    user_id: str = Field(min_length=1)
    # validate_default so the "required for NOTIFICATION_CREATED" rule also fires when the key is absent,
    # and reports the error at `notification` rather than at the top level.
    notification: NotificationBody | None = _optional(validate_default=True)
    channels: list[Channel] = Field(
        default_factory=lambda: [Channel.IN_APP], json_schema_extra={"default": [Channel.IN_APP.value]}
    )
    priority: Priority = Priority.NORMAL
    timestamp: datetime
    source: str | None = _optional()
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("notification")
    @classmethod
    def _notification_required_when_created(
        cls, value: NotificationBody | None, info: ValidationInfo
    ) -> NotificationBody | None:
        if value is None and info.data.get("type") is EventType.NOTIFICATION_CREATED:
            raise ValueError("required when type is NOTIFICATION_CREATED")
        return value

    @field_validator("timestamp", mode="before")
    @classmethod
    def _timestamp_iso8601(cls, value: object) -> datetime:
        # pydantic's lax datetime parsing also takes numbers and numeric strings as Unix times; the wire
        # format is ISO-8601 only, and a number would be ambiguous (seconds or milliseconds?).
        if isinstance(value, datetime):
            parsed = value
        elif isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(f"not an ISO-8601 date-time: {value[:64]!r}") from None
        else:
            raise ValueError(f"must be an ISO-8601 date-time string, got {type(value).__name__}")
        # Normalize at the edge: naive means UTC (what JavaScript's toISOString would have said), aware is
        # converted so every later comparison and window computation works on one time zone.
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)

    @field_serializer("timestamp")
    def _timestamp_js_style(self, value: datetime) -> str:
        # The format of JavaScript's Date.toISOString(), which the existing application sends, so an event
        # passes through Herald unchanged; sub-millisecond precision is kept when a Python producer has it.
        # isoformat() rather than strftime: this runs once per published event.
        if value.utcoffset():
            value = value.astimezone(UTC)
        spec = "microseconds" if value.microsecond % 1000 else "milliseconds"
        return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"

    @property
    def timestamp_ms(self) -> int:
        """Event time in Unix milliseconds (exact integer arithmetic, no float rounding)."""
        return (self.timestamp - _EPOCH) // _ONE_MS


_SERIALIZER: Final = NotificationEvent.__pydantic_serializer__


def derive_event_id(topic: str, partition: int, offset: int) -> str:
    """A deterministic id for events sent without `eventId`: a replay of the same record gets the same id."""
    return f"kafka:{topic}:{partition}:{offset}"


def decode_event(raw: bytes, *, fallback_event_id: str | None = None) -> NotificationEvent:
    """Parse and validate one wire event; raise InvalidEventError naming the offending camelCase field."""
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEventError(f"event is {len(raw)} bytes, more than the limit of {MAX_EVENT_BYTES}")
    try:
        event = NotificationEvent.model_validate_json(raw)
    except ValidationError as exc:
        # Slow path only: the hot path above pays nothing for good error messages.
        raise _explain(raw, exc) from None
    if event.event_id is None and fallback_event_id is not None:
        return event.model_copy(update={"event_id": fallback_event_id})
    return event


def validate_event(data: NotificationEvent | Mapping[str, Any]) -> NotificationEvent:
    """Validate an event given as a Python mapping (camelCase or snake_case keys)."""
    if isinstance(data, NotificationEvent):
        return data
    try:
        return NotificationEvent.model_validate(data)
    except ValidationError as exc:
        raise _from_error(exc.errors(include_url=False)[0]) from None


def encode_event(event: NotificationEvent) -> bytes:
    """camelCase JSON; None-valued optional fields are omitted, extra fields are written back as received."""
    # The core serializer returns bytes directly; model_dump_json would build a str only to encode it again.
    return _SERIALIZER.to_json(event, by_alias=True)


def event_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the wire event, for producers written in other languages."""
    schema = NotificationEvent.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Herald NotificationEvent"
    schema["description"] = (
        f"Herald notification event, schema version {SCHEMA_VERSION}. Kafka key = userId (UTF-8). "
        "Unknown fields are allowed and passed through."
    )
    # The cross-field rule enforced by the validator, expressed for other languages' validators too.
    schema["if"] = {"properties": {"type": {"const": EventType.NOTIFICATION_CREATED.value}}}
    schema["then"] = {"required": ["notification"], "properties": {"notification": {"type": "object"}}}
    return schema


def _explain(raw: bytes, exc: ValidationError) -> InvalidEventError:
    first = exc.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return InvalidEventError(f"not valid UTF-8 (byte {uexc.start})")
        return InvalidEventError(f"not valid JSON: {first['ctx'].get('error', first['msg'])}")
    return _from_error(first)


def _from_error(error: ErrorDetails) -> InvalidEventError:
    if error["type"] == "model_type" and not error["loc"]:
        return InvalidEventError(f"event must be a JSON object, got {_json_kind(error['input'])}")
    field = _field_path(error["loc"])
    reason = error["msg"]
    if error["type"] == "missing":
        reason = "required field is missing"
    elif error["type"] == "value_error":
        reason = str(error["ctx"]["error"]) if "ctx" in error else reason.removeprefix("Value error, ")
    return InvalidEventError(reason, field=field or None)


def _field_path(loc: tuple[int | str, ...]) -> str:
    """('notification', 'actor', 'id') -> 'notification.actor.id'; ('channels', 1) -> 'channels[1]'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _json_kind(value: object) -> str:
    kinds: dict[type, str] = {list: "an array", str: "a string", int: "a number", float: "a number"}
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return kinds.get(type(value), type(value).__name__)
