"""Preferences: validation at the edge, and every branch of the delivery decision with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from herald.preferences import (
    DeliveryContext,
    Preferences,
    PreferencesError,
    Verdict,
    decide,
    next_digest_at,
    parse_preferences,
)

BERLIN_NIGHT = datetime(2026, 1, 15, 22, 30, tzinfo=UTC)  # 23:30 in Berlin (UTC+1 in winter)
BERLIN_NOON = datetime(2026, 1, 15, 11, 0, tzinfo=UTC)


def body(priority: str = "NORMAL", kind: str = "POST_LIKED", target: dict[str, str] | None = None) -> dict[str, Any]:
    return {"id": "n1", "version": 1, "type": kind, "priority": priority, "text": "x", "target": target}


def context(prefs: dict[str, Any], now: datetime = BERLIN_NOON, **kw: Any) -> DeliveryContext:
    return DeliveryContext(now=now, preferences=parse_preferences(prefs), **kw)


QUIET = {"quietHours": {"start": "22:00", "end": "07:00"}, "timezone": "Europe/Berlin"}


def test_a_channel_turned_off_for_a_type_suppresses_only_that_type() -> None:
    prefs = {"channels": {"POST_LIKED": {"PUSH": False}, "*": {"SMS": False}}}
    assert decide("PUSH", body(), context(prefs)).verdict is Verdict.SUPPRESS
    assert decide("PUSH", body(kind="MENTIONED"), context(prefs)).verdict is Verdict.SEND
    assert decide("SMS", body(kind="MENTIONED", priority="HIGH"), context(prefs)).verdict is Verdict.SUPPRESS


def test_a_type_switch_wins_over_the_wildcard() -> None:
    prefs = {"channels": {"*": {"PUSH": False}, "MENTIONED": {"PUSH": True}}}
    assert decide("PUSH", body(kind="MENTIONED"), context(prefs)).verdict is Verdict.SEND
    assert decide("PUSH", body(), context(prefs)).verdict is Verdict.SUPPRESS


def test_a_muted_target_is_suppressed_even_when_urgent() -> None:
    prefs = {"mutedTargets": ["POST:42"]}
    decision = decide("PUSH", body("URGENT", target={"type": "POST", "id": "42"}), context(prefs))
    assert decision.verdict is Verdict.SUPPRESS
    assert "POST:42" in decision.reason


def test_quiet_hours_defer_until_they_end_in_the_users_zone() -> None:
    decision = decide("PUSH", body("HIGH"), context(QUIET, BERLIN_NIGHT))
    assert decision.verdict is Verdict.DEFER
    assert decision.at == datetime(2026, 1, 16, 6, 0, tzinfo=UTC)  # 07:00 Berlin
    assert decide("PUSH", body("HIGH"), context(QUIET, BERLIN_NOON)).verdict is Verdict.SEND


def test_quiet_hours_after_midnight_end_the_same_morning() -> None:
    early = datetime(2026, 1, 16, 2, 0, tzinfo=UTC)  # 03:00 Berlin
    assert decide("SMS", body("HIGH"), context(QUIET, early)).at == datetime(2026, 1, 16, 6, 0, tzinfo=UTC)


def test_quiet_hours_take_the_directory_zone_when_preferences_have_none() -> None:
    prefs = {"quietHours": {"start": "22:00", "end": "07:00"}}
    tokyo_night = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)  # 23:00 in Tokyo, 14:00 UTC
    assert decide("PUSH", body(), context(prefs, tokyo_night, user_timezone="Asia/Tokyo")).verdict is Verdict.DEFER
    assert decide("PUSH", body(), context(prefs, tokyo_night)).verdict is Verdict.SEND  # UTC: 14:00 is not quiet


def test_urgent_and_webhooks_are_never_deferred() -> None:
    assert decide("PUSH", body("URGENT"), context(QUIET, BERLIN_NIGHT)).verdict is Verdict.SEND
    assert decide("WEBHOOK", body(), context(QUIET, BERLIN_NIGHT)).verdict is Verdict.SEND


def test_a_digest_is_deferred_by_quiet_hours_and_otherwise_sent() -> None:
    digest = {"digest": {"count": 3, "items": []}}
    assert decide("EMAIL", digest, context(QUIET, BERLIN_NIGHT)).verdict is Verdict.DEFER
    assert decide("EMAIL", digest, context(QUIET, BERLIN_NOON)).verdict is Verdict.SEND


def test_over_the_hourly_limit_the_excess_goes_to_the_digest_but_urgent_does_not() -> None:
    over = context({}, sent_this_hour=5, hourly_limit=5)
    decision = decide("PUSH", body("HIGH"), over)
    assert decision.verdict is Verdict.DIGEST
    assert decision.at == datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    assert decide("PUSH", body("URGENT"), over).verdict is Verdict.SEND
    assert decide("PUSH", body("HIGH"), context({}, sent_this_hour=4, hourly_limit=5)).verdict is Verdict.SEND


def test_email_below_the_digest_priority_waits_for_the_digest() -> None:
    assert decide("EMAIL", body("NORMAL"), context({})).verdict is Verdict.DIGEST
    assert decide("EMAIL", body("HIGH"), context({})).verdict is Verdict.SEND
    assert decide("PUSH", body("NORMAL"), context({})).verdict is Verdict.SEND


def test_daily_digests_leave_at_eight_local_time() -> None:
    prefs = Preferences.model_validate({"digest": "daily", "timezone": "America/New_York"})
    evening = datetime(2026, 7, 1, 23, 0, tzinfo=UTC)  # 19:00 New York (UTC-4 in summer)
    assert next_digest_at(prefs, evening, None) == datetime(2026, 7, 2, 12, 0, tzinfo=UTC)
    morning = datetime(2026, 7, 1, 11, 0, tzinfo=UTC)  # 07:00 New York
    assert next_digest_at(prefs, morning, None) == datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"channels": {"*": {"FAX": False}}}, "FAX"),
        ({"quietHours": {"start": "25:00", "end": "07:00"}}, "quietHours.start"),
        ({"timezone": "Mars/Olympus"}, "Mars/Olympus"),
        ({"digest": "weekly"}, "digest"),
        ({"channels": {"*": {"PUSH": "maybe"}}}, "channels"),
    ],
)
def test_bad_preferences_are_refused_with_the_field_named(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(PreferencesError, match=field.replace(".", r"\.")):
        parse_preferences(raw)


def test_preferences_round_trip_through_json() -> None:
    prefs = parse_preferences({**QUIET, "channels": {"*": {"SMS": False}}, "mutedTargets": ["POST:1"], "extra": 1})
    assert parse_preferences(prefs.to_json()) == prefs
    assert "extra" not in prefs.to_json()
