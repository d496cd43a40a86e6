"""Retry-After parsing and the status classes shared by the HTTP providers."""

from __future__ import annotations

import pytest

from herald.channels.http_errors import MAX_RETRY_AFTER_S, is_retriable_status, origin, redact, retry_after_s

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("999999", MAX_RETRY_AFTER_S),
        ("Fri, 15 Jan 2027 08:00:30 GMT", 30.0),  # NOW is 08:00:00 that day
        ("Fri, 15 Jan 2027 07:00:00 GMT", 0.0),  # already past
        ("Fri, 15 Jan 2027 08:00:30 -0000", None),  # no zone: not an HTTP-date
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("²", None),  # str.isdigit says yes, float() says no
        ("", None),
        (None, None),
    ],
)
def test_retry_after(header: str | None, expected: float | None) -> None:
    assert retry_after_s(header, now=NOW) == expected


def test_retriable_statuses() -> None:
    statuses = (400, 401, 403, 404, 408, 409, 410, 422, 429, 500, 502, 503, 504)
    assert {s for s in statuses if is_retriable_status(s)} == {408, 429, 500, 502, 503, 504}


def test_reasons_name_the_origin_only() -> None:
    assert origin("https://user:pw@hooks.example:8443/h/abc?token=t") == "https://hooks.example:8443"
    assert origin("http://127.0.0.1/x") == "http://127.0.0.1"
    assert redact("bad token tok-1 and tok-1", "tok-1", None, "") == "bad token *** and ***"
