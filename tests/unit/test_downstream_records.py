"""Records downstream consumers read: Herald's fields plus those the existing application's consumers expect."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from herald.channels.base import Outcome
from herald.gateway.analytics import read_event


def test_delivery_receipt_is_a_superset_of_the_applications_record() -> None:
    outcome = Outcome(
        delivery_id="n1:2:IN_APP",
        user_id="u1",
        channel="IN_APP",
        delivered=True,
        attempts=1,
        latency_ms=3.25,
        notification_id="n1",
        finished_at=datetime(2026, 11, 26, 10, 0, 0, 123000, tzinfo=UTC),
    )
    receipt = outcome.receipt()
    # The application's consumers read {notificationId, deliveryChannel, status, timestamp}.
    assert receipt["notificationId"] == "n1"
    assert receipt["deliveryChannel"] == "IN_APP"
    assert receipt["status"] == "DELIVERED"
    assert receipt["timestamp"] == "2026-11-26T10:00:00.123Z"
    assert receipt["deliveryId"] == "n1:2:IN_APP"  # and Herald's own fields stay


def test_failed_receipt_says_so() -> None:
    outcome = Outcome("d", "u1", "IN_APP", delivered=False, attempts=5, latency_ms=1.0, error="boom")
    assert outcome.receipt()["status"] == "FAILED"
    assert outcome.receipt()["notificationId"] is None


def test_read_analytics_record_is_a_superset() -> None:
    at = datetime(2026, 11, 26, 10, tzinfo=UTC)
    record = orjson.loads(read_event("u1", ["n1"], at=at, source="gateway"))
    # The application's consumers read {notificationId, userId, action, channel(s), timestamp}.
    assert (record["notificationId"], record["userId"], record["action"]) == ("n1", "u1", "read")
    assert record["channel"] == "IN_APP"
    assert record["channels"] == ["IN_APP"]
    assert record["timestamp"] == "2026-11-26T10:00:00.000Z"
    assert record["type"] == "NOTIFICATION_READ"
    assert record["notificationIds"] == ["n1"]
    everything = orjson.loads(read_event("u1", None, at=at, source="gateway"))
    assert everything["notificationId"] is None
    assert everything["metadata"]["all"] is True
