"""The wire format of notification events (docs/architecture.md, Wire format): pydantic models, decode/encode
and JSON Schema.

camelCase on the wire, snake_case in Python. Unknown fields are kept so events pass through Herald unchanged.
Three shapes are accepted: Herald's own (`actor`/`target` objects), the existing application's API shape (its
stored Prisma `Notification` record in `notification`: flat `actorId`, `entityType`, `entityId`) and its
processor shape (the notification type at the top level, the details in `data`), which is normalized into the
first on the way in.
"""

from __future__ import annotations

import math
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
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from herald.errors import InvalidEventError

MAX_EVENT_BYTES: Final = 1024 * 1024
# Identifiers (user, event, actor, target, notification ids and types) become Kafka keys, Redis key names and
# hash tags: real ones are uuids and cuids, so a longer one is garbage, refused at the edge rather than stored
# (docs/architecture.md, Wire format). The gateway takes ids of the same length (herald/gateway/protocol.py).
MAX_ID_CHARS: Final = 256
# JSON numbers Herald can write back (orjson, the Redis bodies, JavaScript clients): finite, within 64 bits.
_MIN_INT: Final = -(2**63)
_MAX_INT: Final = 2**64 - 1
# Sent as the `herald-schema` Kafka header; bump when the wire format changes incompatibly.
SCHEMA_VERSION: Final = "1"

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)


class EventType(StrEnum):
    NOTIFICATION_CREATED = "NOTIFICATION_CREATED"
    NOTIFICATION_READ = "NOTIFICATION_READ"
    NOTIFICATION_DELETED = "NOTIFICATION_DELETED"
    PREFERENCES_UPDATED = "PREFERENCES_UPDATED"
    BULK_NOTIFICATIONS_READ = "BULK_NOTIFICATIONS_READ"


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
    CRITICAL = "CRITICAL"


# Priorities that bypass aggregation (and, with the external channels, quiet hours and rate limits).
UNGROUPED_PRIORITIES: Final = frozenset({Priority.URGENT.value, Priority.CRITICAL.value})


def _is_none(value: object) -> bool:
    return value is None


def _ident(**kwargs: Any) -> Any:
    """A required identifier: non-empty, at most MAX_ID_CHARS."""
    return Field(min_length=1, max_length=MAX_ID_CHARS, **kwargs)


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
    id: str = _ident()
    name: str | None = _optional()
    avatar_url: str | None = _optional()


class Target(WireModel):
    type: str = _ident()
    id: str = _ident()
    title: str | None = _optional()


class NotificationBody(WireModel):
    # Free-form on purpose: the application invents notification types (POST_LIKED, ...) faster than
    # Herald releases.
    type: str = _ident()
    actor: Actor | None = _optional()
    target: Target | None = _optional()
    title: str | None = _optional()
    message: str | None = _optional()
    # Prisma's `Json?` column is null unless set: null is "no data", not an error.
    data: dict[str, Any] = Field(default_factory=dict)
    # The existing application's record: its own id (kept, so its reads and deletes can name it), the actor
    # and target as flat fields, and presentation fields passed on to its clients.
    id: str | None = _optional(min_length=1, max_length=MAX_ID_CHARS)
    actor_id: str | None = _optional(min_length=1, max_length=MAX_ID_CHARS)
    entity_type: str | None = _optional(min_length=1, max_length=MAX_ID_CHARS)
    entity_id: str | None = _optional(min_length=1, max_length=MAX_ID_CHARS)
    category: str | None = _optional()
    action_url: str | None = _optional()
    image_url: str | None = _optional()

    @field_validator("data", mode="before")
    @classmethod
    def _null_data_is_empty(cls, value: object) -> object:
        return {} if value is None else value

    def effective_actor(self, fallback_name: str | None = None) -> Actor | None:
        """`actor`, else one built from the flat `actorId`. Its name: `actor.name`, else `data.actorName`
        (also under `data.metadata`, the processor shape), else `fallback_name` (the event's metadata)."""
        if self.actor is None and self.actor_id is None:
            return None
        nested = self.data.get("metadata")
        name = (
            (self.actor.name if self.actor is not None else None)
            or _str_or_none(self.data.get("actorName"))
            or (_str_or_none(nested.get("actorName")) if isinstance(nested, dict) else None)
            or fallback_name
        )
        if self.actor is not None:
            return self.actor if name == self.actor.name else self.actor.model_copy(update={"name": name})
        return Actor(id=self.actor_id, name=name)

    def effective_target(self) -> Target | None:
        """`target`, else (`entityType`, `entityId`); an entity without an id is no target."""
        if self.target is not None:
            return self.target
        if self.entity_id is None:
            return None
        return Target(type=self.entity_type or "entity", id=self.entity_id)


def _unstorable_number(value: object, path: str) -> str | None:
    """Where `value` (parsed JSON) holds a number that is not finite or does not fit 64 bits, or None."""
    found = _bad_number_at(value)
    if found is None:
        return None
    steps, problem = found
    where = path
    for step in reversed(steps):
        where += f"[{step}]" if isinstance(step, int) else (f".{step}" if where else str(step))
    return f"{where}: {problem}"


def _bad_number_at(value: object) -> tuple[list[str | int], str] | None:
    """(path from `value`, innermost first; the problem) of the first bad number. Builds no path on the way down,
    since this runs on every event; recursion is bounded by the JSON parser's nesting limit."""
    if isinstance(value, str):
        return None
    if isinstance(value, dict | list):
        if isinstance(value, list) and set(map(type, value)) <= {str}:
            return None  # lists of ids, the common large list: no Python call per item
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for step, item in items:
            found = _bad_number_at(item)
            if found is not None:
                found[0].append(step if isinstance(step, int) else str(step))
                return found
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return [], f"{value} is not a JSON number (NaN and infinities are not JSON)"
    if isinstance(value, int) and not isinstance(value, bool) and not _MIN_INT <= value <= _MAX_INT:
        return [], "integer out of the 64-bit range"
    return None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class NotificationEvent(WireModel):
    type: EventType
    event_id: str | None = _optional(min_length=1, max_length=MAX_ID_CHARS)
    user_id: str = _ident()
    # validate_default so the "required for NOTIFICATION_CREATED" rule also fires when the key is absent,
    # and reports the error at `notification` rather than at the top level.
    notification: NotificationBody | None = _optional(validate_default=True)
    channels: list[Channel] = Field(
        default_factory=lambda: [Channel.IN_APP], json_schema_extra={"default": [Channel.IN_APP.value]}
    )
    priority: Priority = Priority.NORMAL
    # Required, but found in more places than the top level: see _normalize_shapes.
    timestamp: datetime
    source: str | None = _optional()
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _normalize_shapes(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, dict):
            return value
        if _is_processor_shape(value):
            value = _from_processor_shape(value)
        if value.get("timestamp") is None:
            when = _fallback_timestamp(value, info.context)
            if when is not None:
                value = {**value, "timestamp": when}
        return value

    @field_validator("metadata", mode="before")
    @classmethod
    def _null_metadata_is_empty(cls, value: object) -> object:
        return {} if value is None else value

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
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            # 0001-01-01T00:00+01:00 and 9999-12-31T23:59-01:00 parse but have no UTC time (found by fuzzing).
            raise ValueError(f"out of range once converted to UTC: {str(value)[:64]!r}") from None

    @model_validator(mode="after")
    def _numbers_herald_can_store(self) -> NotificationEvent:
        # The JSON parser takes NaN, Infinity, 1e400 and integers of any size, which JSON (RFC 8259) and the
        # aggregator's orjson do not: accepted, such an event would fail at apply time for every retry instead
        # of here with a reason (docs/architecture.md, Guarantees: "Garbage in").
        body = self.notification
        parts: list[tuple[str, Any]] = [("", self.model_extra), ("metadata", self.metadata)]
        if body is not None:
            parts += [("notification.data", body.data), ("notification", body.model_extra)]
            for name, model in (("notification.actor", body.actor), ("notification.target", body.target)):
                if model is not None and model.model_extra:
                    parts.append((name, model.model_extra))
        for path, value in parts:
            if value:
                problem = _unstorable_number(value, path)
                if problem is not None:
                    raise ValueError(problem)
        return self

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
_EVENT_TYPES: Final = frozenset(t.value for t in EventType)


def _is_processor_shape(value: Mapping[str, Any]) -> bool:
    """`{"type": "POST_LIKED", "actorId", "data": {"userId", ...}}`: a notification type where the event type
    belongs, and no `notification` object."""
    kind = value.get("type")
    return (
        isinstance(kind, str)
        and kind not in _EVENT_TYPES
        and value.get("notification") is None
        and isinstance(value.get("data"), dict)
    )


def _from_processor_shape(value: Mapping[str, Any]) -> dict[str, Any]:
    details: dict[str, Any] = value["data"]
    user_id = details.get("userId", value.get("userId"))
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("data.userId: required (the recipient) when `type` is a notification type")
    notification: dict[str, Any] = {"type": value["type"], "data": details}
    for field_name in ("actorId", "entityType", "entityId", "title", "message", "actionUrl", "imageUrl"):
        found = details.get(field_name, value.get(field_name))
        if found is not None:
            notification[field_name] = found
    rest = {k: v for k, v in value.items() if k not in ("type", "data", "actorId", "userId")}
    return {**rest, "type": EventType.NOTIFICATION_CREATED.value, "userId": user_id, "notification": notification}


def _fallback_timestamp(value: Mapping[str, Any], context: Any) -> Any:
    """No top-level `timestamp`: the application's `metadata.timestamp`, its record's `createdAt`, then the
    Kafka record's timestamp (decode_event) or the time of publishing (the SDK)."""
    metadata, notification = value.get("metadata"), value.get("notification")
    for source in (metadata, notification):
        if isinstance(source, dict):
            found = source.get("timestamp" if source is metadata else "createdAt")
            if isinstance(found, str):
                return found
    if isinstance(context, dict):
        return context.get("fallback_timestamp")
    return None


def derive_event_id(topic: str, partition: int, offset: int) -> str:
    """A deterministic id for events sent without `eventId`: a replay of the same record gets the same id."""
    return f"kafka:{topic}:{partition}:{offset}"


def decode_event(
    raw: bytes, *, fallback_event_id: str | None = None, fallback_timestamp_ms: int | None = None
) -> NotificationEvent:
    """Parse and validate one wire event; raise InvalidEventError naming the offending camelCase field.

    `fallback_timestamp_ms` (the Kafka record's timestamp) stands in for an event that carries no time."""
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEventError(f"event is {len(raw)} bytes, more than the limit of {MAX_EVENT_BYTES}")
    context = None
    if fallback_timestamp_ms is not None:
        context = {"fallback_timestamp": _EPOCH + fallback_timestamp_ms * _ONE_MS}
    try:
        event = NotificationEvent.model_validate_json(raw, context=context)
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
        # An event published without a time gets the time it is published at.
        return NotificationEvent.model_validate(data, context={"fallback_timestamp": datetime.now(UTC)})
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
