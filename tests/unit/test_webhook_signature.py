"""verify_signature, as a webhook receiver uses it: the HMAC, the timestamp window, malformed headers."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from herald.channels.webhook import sign, verify_signature

SECRET = "whsec-test"
BODY = b'{"deliveryId":"d1","userId":"u1","notification":{"id":"n1"}}'
NOW = 1_800_000_000.0
TS = str(int(NOW))


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{TS}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, TS, BODY) == f"sha256={expected}"


def test_a_valid_signature_verifies() -> None:
    assert verify_signature(SECRET, TS, BODY, sign(SECRET, TS, BODY), now=NOW)
    assert verify_signature(SECRET.encode(), TS, BODY, sign(SECRET, TS, BODY), now=NOW + 299)


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "header"),
    [
        ("other-secret", TS, BODY, sign(SECRET, TS, BODY)),
        (SECRET, TS, BODY + b" ", sign(SECRET, TS, BODY)),  # body changed after signing
        (SECRET, str(int(NOW) + 1), BODY, sign(SECRET, TS, BODY)),  # timestamp swapped after signing
        (SECRET, TS, BODY, sign(SECRET, TS, BODY).removeprefix("sha256=")),  # scheme missing
        (SECRET, TS, BODY, "sha1=" + sign(SECRET, TS, BODY).removeprefix("sha256=")),
        (SECRET, TS, BODY, ""),
        (SECRET, TS, BODY, "sha256=ünïcode"),  # compare_digest would raise on a non-ASCII str
        (SECRET, "not-a-number", BODY, sign(SECRET, "not-a-number", BODY)),
    ],
)
def test_tampered_or_malformed_requests_are_rejected(secret: str, timestamp: str, body: bytes, header: str) -> None:
    assert not verify_signature(secret, timestamp, body, header, now=NOW)


@pytest.mark.parametrize("skew", [301, -301, 10_000])
def test_stale_or_future_timestamps_are_rejected(skew: int) -> None:
    signed_at = str(int(NOW) - skew)
    assert not verify_signature(SECRET, signed_at, BODY, sign(SECRET, signed_at, BODY), now=NOW)


def test_tolerance_is_configurable() -> None:
    signed_at = str(int(NOW) - 30)
    header = sign(SECRET, signed_at, BODY)
    assert verify_signature(SECRET, signed_at, BODY, header, now=NOW, tolerance_s=30)
    assert not verify_signature(SECRET, signed_at, BODY, header, now=NOW, tolerance_s=29)
