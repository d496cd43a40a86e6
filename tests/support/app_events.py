"""Events in the exact shapes the existing application publishes (a Next.js app with Prisma and a Node processor).

Its API publishes through `publishNotificationEvent` -> `publishEvent`: the stored Prisma `Notification` record in
`notification` (flat `actorId`, `entityType`, `entityId`, `data: null` by default), `notificationId` for reads and
deletes, `metadata` with its own timestamp and delivery flags, a top-level `timestamp` and `source: "main-app"`.
Its processor consumes (and re-publishes) `{type: <notification type>, actorId, data: {...}, channels}`.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from typing import Any

from tests.support.events import BASE_TIME

_serial = itertools.count(1)


def _iso(at: timedelta) -> str:
    return (BASE_TIME + at).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _envelope(kind: str, user: str, channels: list[str], priority: str, at: timedelta) -> dict[str, Any]:
    return {
        "type": kind,
        "userId": user,
        "channels": channels,
        "priority": priority,
        "metadata": {
            "timestamp": _iso(at),
            "source": "main-app",
            "deliveryChannels": {
                "realtime": True,
                "push": "PUSH" in channels,
                "email": "EMAIL" in channels,
                "sms": "SMS" in channels,
            },
        },
        "timestamp": _iso(at),
        "source": "main-app",
    }


def prisma_created(
    user: str,
    *,
    actor: str | None,
    kind: str = "POST_LIKED",
    entity_type: str | None = "post",
    entity_id: str | None = "p1",
    priority: str = "NORMAL",
    channels: tuple[str, ...] = ("IN_APP",),
    at: timedelta = timedelta(0),
    title: str = "New like",
    message: str | None = None,
    notification_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """NOTIFICATION_CREATED with the stored Prisma record, as the application's API publishes it."""
    record = {
        "id": notification_id or str(uuid.uuid4()),
        "userId": user,
        "title": title,
        "message": message if message is not None else f"{actor or 'someone'} liked your post",
        "type": kind,
        "category": "SOCIAL",
        "priority": priority,
        "entityType": entity_type,
        "entityId": entity_id,
        "actionUrl": f"/posts/{entity_id}" if entity_id else None,
        "imageUrl": None,
        "actorId": actor,
        "data": data,
        "channels": list(channels),
        "isRead": False,
        "createdAt": _iso(at),
        "updatedAt": _iso(at),
        "aggregatedCount": 1,
        "aggregatedActors": None,
        "groupKey": None,
    }
    return {**_envelope("NOTIFICATION_CREATED", user, list(channels), priority, at), "notification": record}


def processor_event(
    user: str,
    *,
    actor: str,
    kind: str = "POST_LIKED",
    entity_type: str = "post",
    entity_id: str = "p1",
    channels: tuple[str, ...] = ("IN_APP",),
    at: timedelta = timedelta(0),
    with_timestamp: bool = True,
) -> dict[str, Any]:
    """The processor's shape: the notification type at the top level, the details in `data`."""
    event: dict[str, Any] = {
        "type": kind,
        "actorId": actor,
        "data": {
            "userId": user,
            "actorId": actor,
            "entityType": entity_type,
            "entityId": entity_id,
            "metadata": {"serial": next(_serial)},
        },
        "channels": list(channels),
    }
    if with_timestamp:
        event["timestamp"] = _iso(at)
    return event


def read(user: str, notification_id: str, *, at: timedelta = timedelta(minutes=30)) -> dict[str, Any]:
    """NOTIFICATION_READ naming the application's own id (singular `notificationId`, no `notification`)."""
    return {**_envelope("NOTIFICATION_READ", user, ["IN_APP"], "NORMAL", at), "notificationId": notification_id}


def deleted(user: str, notification_id: str, *, at: timedelta = timedelta(minutes=30)) -> dict[str, Any]:
    return {**_envelope("NOTIFICATION_DELETED", user, ["IN_APP"], "NORMAL", at), "notificationId": notification_id}


def bulk_read(
    user: str, *, ids: list[str] | None = None, before: str | None = None, at: timedelta = timedelta(minutes=30)
) -> dict[str, Any]:
    """BULK_NOTIFICATIONS_READ: the ids given, or everything (created up to `before` when given)."""
    event = _envelope("BULK_NOTIFICATIONS_READ", user, ["IN_APP"], "NORMAL", at)
    if ids is not None:
        event["notificationIds"] = ids
    if before is not None:
        event["metadata"]["before"] = before
    return event
