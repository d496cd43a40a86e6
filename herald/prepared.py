"""What the aggregators need of one validated event, reduced at the reader to plain Python types.

This is what crosses the reader -> aggregator boundary: it pickles several times faster than the pydantic model,
and building it once at the reader spares the aggregator a second parse. Every accepted wire shape (Herald's own,
the application's flat record, its processor shape) ends here as the same PreparedEvent.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from herald.errors import InvalidEventError
from herald.events import EventType, NotificationEvent
from herald.grouping import ActorInfo, Occurrence
from herald.pickling import tuple_pickled

# Ids one read or delete may name: the gateway's mark_read takes 500; the store reads them in slices, but a
# million-id event is garbage, not a read (docs/architecture.md, Guarantees: "Garbage in").
MAX_IDS_PER_EVENT = 1000

# Presentation fields of the application's record that its clients show; carried into the notification.
_EXTRA_FIELDS = {"category": "category", "action_url": "actionUrl", "image_url": "imageUrl"}


@tuple_pickled
@dataclass(frozen=True, slots=True)
class PreparedEvent:
    event_id: str
    user_id: str
    type: str
    priority: str
    channels: tuple[str, ...]
    occurrence: Occurrence | None = None  # NOTIFICATION_CREATED
    # NOTIFICATION_READ / NOTIFICATION_DELETED / BULK_NOTIFICATIONS_READ: the ids named, when well formed
    # (Herald's ids or the application's own; the aggregator resolves the latter).
    notification_ids: list[str] | None = None
    read_before: str | None = None  # BULK_NOTIFICATIONS_READ without ids: only those created up to this time
    preferences: dict[str, Any] | None = None  # PREFERENCES_UPDATED, when well formed
    wire_id: str | None = None  # the id the reader knows the Kafka record by (for dead-lettering)
    produced_ms: int | None = None  # the Kafka record's timestamp: produce -> apply/delivery latency (metrics)


def _occurrence(event: NotificationEvent, event_id: str) -> Occurrence | None:
    body = event.notification
    if body is None:
        return None
    wire_actor = body.effective_actor(_name_in(event.metadata))
    actor = ActorInfo(wire_actor.id, wire_actor.name, wire_actor.avatar_url) if wire_actor else None
    target = None
    wire_target = body.effective_target()
    if wire_target is not None:
        # Built by hand: model_dump is the slowest step of preparing an event, and a target is three fields.
        target = {**(wire_target.model_extra or {}), "type": wire_target.type, "id": wire_target.id}
        if wire_target.title is not None:
            target["title"] = wire_target.title
    extras = {wire: value for attr, wire in _EXTRA_FIELDS.items() if (value := getattr(body, attr)) is not None}
    return Occurrence(
        event_id=event_id,
        user_id=event.user_id,
        notification_type=body.type,
        target=target,
        actor=actor,
        event_ms=event.timestamp_ms,
        title=body.title,
        message=body.message,
        data=dict(body.data),
        app_id=body.id,
        extras=extras,
    )


def _name_in(metadata: dict[str, Any]) -> str | None:
    name = metadata.get("actorName")
    return name if isinstance(name, str) and name else None


def _field(event: NotificationEvent, name: str) -> Any:
    """A field of READ/DELETED/PREFERENCES events: at the top level, in metadata, or in notification.data."""
    value = (event.model_extra or {}).get(name)
    if value is None:
        value = event.metadata.get(name)
    if value is None and event.notification is not None:
        value = event.notification.data.get(name)
    return value


def _named_ids(event: NotificationEvent) -> list[str] | None:
    """`notificationIds`, else `notificationId` (the application's singular form), else the id of the record
    in `notification`; None when nothing (well formed) names a notification."""
    ids = _field(event, "notificationIds")
    if isinstance(ids, list) and len(ids) > MAX_IDS_PER_EVENT:
        # Before looking at each id: refusing a list of 50,000 should not cost a scan of it.
        raise InvalidEventError(
            f"names {len(ids)} notifications, more than {MAX_IDS_PER_EVENT}", field="notificationIds"
        )
    if isinstance(ids, list) and ids and all(isinstance(i, str) and i for i in ids):
        return ids
    if ids is not None:
        return None
    single = _field(event, "notificationId")
    if single is None and event.notification is not None:
        single = event.notification.id
    return [single] if isinstance(single, str) and single else None


def prepare(event: NotificationEvent, *, wire_id: str | None = None, produced_ms: int | None = None) -> PreparedEvent:
    """Reduce a validated event (with an event id) to what applying it needs; InvalidEventError when it names
    more notifications than one event may."""
    if event.event_id is None:
        raise ValueError("an event needs an eventId (or Kafka coordinates to derive one) before it is applied")
    preferences = _field(event, "preferences")
    created = event.type is EventType.NOTIFICATION_CREATED
    before = _field(event, "before") if event.type is EventType.BULK_NOTIFICATIONS_READ else None
    return PreparedEvent(
        event_id=event.event_id,
        user_id=event.user_id,
        type=str(event.type),
        priority=str(event.priority),
        channels=tuple(str(c) for c in event.channels),
        occurrence=_occurrence(event, event.event_id) if created else None,
        notification_ids=None if created else _named_ids(event),
        read_before=before if isinstance(before, str) else None,
        preferences=preferences if isinstance(preferences, dict) else None,
        wire_id=wire_id,
        produced_ms=produced_ms,
    )


def encode_batch(events: Sequence[PreparedEvent]) -> bytes:
    """What a reader sends an aggregator: the batch pickled once with the C pickler, so Ray ships bytes.

    Ray would pickle the list itself with cloudpickle, a pure-Python pickler: 30% of a reader's time. The
    aggregator is in the same trust domain (it runs whatever Ray hands it anyway)."""
    return pickle.dumps(list(events), protocol=pickle.HIGHEST_PROTOCOL)


def decode_batch(data: bytes) -> list[PreparedEvent]:
    events: list[PreparedEvent] = pickle.loads(data)  # noqa: S301 - from this pipeline's own readers
    return events
