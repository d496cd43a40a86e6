"""Builders of wire events for tests, in the shape the existing application publishes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from herald.events import NotificationEvent

BASE_TIME = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
_ids = itertools.count(1)


def event_dict(
    user: str = "user123",
    *,
    kind: str = "POST_LIKED",
    actor: str = "u42",
    actor_name: str | None = "John",
    target: str = "p456",
    at: timedelta = timedelta(0),
    event_id: str | None = None,
    priority: str = "NORMAL",
    channels: tuple[str, ...] = ("IN_APP",),
    title: str | None = None,
    message: str | None = None,
    base: datetime = BASE_TIME,
) -> dict[str, Any]:
    notification: dict[str, Any] = {
        "type": kind,
        "actor": {"id": actor, "name": actor_name},
        "target": {"type": "post", "id": target},
        "data": {},
    }
    if title:
        notification["title"] = title
    if message:
        notification["message"] = message
    wire: dict[str, Any] = {
        "type": "NOTIFICATION_CREATED",
        "userId": user,
        "notification": notification,
        "channels": list(channels),
        "priority": priority,
        "timestamp": (base + at).isoformat().replace("+00:00", "Z"),
        "source": "api",
    }
    if event_id is not None:
        wire["eventId"] = event_id
    return wire


def make_event(**kwargs: Any) -> NotificationEvent:
    """A validated event with an event id (the reader derives one when the wire has none)."""
    wire = event_dict(**kwargs)
    wire.setdefault("eventId", f"e{next(_ids)}")
    return NotificationEvent.model_validate(wire)


def design_example(*, event_id: str | None = "0b9f6c1e-1") -> dict[str, Any]:
    """The wire format example event (docs/architecture.md), verbatim apart from the elided strings; without
    eventId as the existing application sends it when `event_id` is None."""
    example: dict[str, Any] = {
        "type": "NOTIFICATION_CREATED",
        "eventId": event_id,
        "userId": "user123",
        "notification": {
            "type": "POST_LIKED",
            "actor": {"id": "u42", "name": "John", "avatarUrl": "https://cdn.example/u42.png"},
            "target": {"type": "post", "id": "p456", "title": "My trip"},
            "title": "optional",
            "message": "optional",
            "data": {},
        },
        "channels": ["IN_APP", "PUSH", "EMAIL", "SMS"],
        "priority": "NORMAL",
        "timestamp": "2026-11-26T10:00:00.000Z",
        "source": "api",
        "metadata": {"rooms": ["user:user123", "notifications:user123"], "requiresRealtime": True},
    }
    if event_id is None:
        del example["eventId"]
    return example
