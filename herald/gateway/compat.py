"""The existing application's Socket.IO protocol ("compat"): its event names and its view of a notification.

Pure functions from Herald's notification body and inbox changes to the payloads the application's clients
already handle, so those clients can move to Herald's gateway unchanged. The view is a superset: Herald's own
fields (version, cursor, text, actor objects) ride along for clients that learn to use them.
"""

from __future__ import annotations

from typing import Any, Final

# Server -> client
NEW_EVENT: Final = "notification:new"
COUNT_EVENT: Final = "notification:count_updated"
READ_EVENT: Final = "notification:read"
DELETED_EVENT: Final = "notification:deleted"
ALL_READ_EVENT: Final = "notification:all_read"

# Client -> server
MARK_READ: Final = "notification:mark_read"
MARK_ALL_READ: Final = "notification:mark_all_read"
GET_COUNT: Final = "notification:get_count"
JOIN: Final = "join:notifications"

# What the application's events default to (herald.events.Priority.NORMAL), for bodies stored without one.
DEFAULT_PRIORITY: Final = "NORMAL"


def is_aggregated(body: dict[str, Any]) -> bool:
    """A group of several occurrences: its own title and message would describe only the first one."""
    count = body.get("count", 1)
    return "groupKey" in body or (isinstance(count, int) and count > 1)


def _actor_ids(actors: Any) -> list[Any]:
    # The application's schema has "Array of actor IDs"; Herald keeps objects (id, name, avatar).
    if not isinstance(actors, list):
        return []
    return [actor["id"] for actor in actors if isinstance(actor, dict) and "id" in actor]


def view(body: dict[str, Any]) -> dict[str, Any]:
    """The application's notification record for a Herald body."""
    text = body.get("text")
    if is_aggregated(body):
        title = message = text
    else:
        title = body.get("title") or text
        message = body.get("message") or text
    target = body.get("target")
    target = target if isinstance(target, dict) else {}
    return {
        "id": body.get("id"),
        "title": title,
        "message": message,
        "type": body.get("type"),
        "category": body.get("category"),
        "priority": body.get("priority") or DEFAULT_PRIORITY,
        "entityType": target.get("type"),
        "entityId": target.get("id"),
        "actionUrl": body.get("actionUrl"),
        "imageUrl": body.get("imageUrl"),
        "isRead": bool(body.get("read", False)),
        "createdAt": body.get("createdAt"),
        "aggregatedCount": body.get("count", 1),
        "aggregatedActors": _actor_ids(body.get("actors")),
        "groupKey": body.get("groupKey"),
        # Herald's own fields
        "version": body.get("version"),
        "cursor": body.get("cursor"),
        "updatedAt": body.get("updatedAt"),
        "userId": body.get("userId"),
        "text": text,
        "actors": body.get("actors", []),
        "data": body.get("data"),
    }


def new_notification(body: dict[str, Any]) -> dict[str, Any]:
    """`notification:new`: the record wrapped with when it last changed and how urgent it is."""
    record = view(body)
    return {"notification": record, "timestamp": record["updatedAt"], "priority": record["priority"]}


def count_updated(unread: int) -> dict[str, Any]:
    return {"unreadCount": unread}


def read(notification_id: str) -> dict[str, Any]:
    return {"notificationId": notification_id}


def deleted(notification_id: str) -> dict[str, Any]:
    return {"notificationId": notification_id}


def all_read(before: str | None) -> dict[str, Any]:
    return {} if before is None else {"before": before}
