"""Notification bodies and email jobs shared by the email renderer's unit tests and the SMTP tests."""

from __future__ import annotations

from typing import Any

from herald.channels.base import DeliveryJob, Recipient

ALICE = Recipient("u1", name="Alice Example", email="alice@example.org")


def body(
    nid: str = "n1", text: str = "Bob liked your post", updated: str = "2026-11-29T10:00:00.000Z", **extra: Any
) -> dict[str, Any]:
    return {
        "id": nid,
        "version": 1,
        "userId": "u1",
        "type": "POST_LIKED",
        "text": text,
        "actors": [{"id": "bob", "name": "Bob"}],
        "count": 1,
        "target": {"type": "post", "id": "p1"},
        "priority": "HIGH",
        "createdAt": updated,
        "updatedAt": updated,
        **extra,
    }


def job(payload: dict[str, Any], recipient: Recipient | None = ALICE, delivery_id: str = "n1:1:EMAIL") -> DeliveryJob:
    return DeliveryJob(delivery_id=delivery_id, user_id="u1", payload=payload, recipient=recipient)
