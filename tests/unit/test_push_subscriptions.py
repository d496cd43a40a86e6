"""Push subscription validation, the payloads and collapse keys of the PUSH channel, and how a delivery to
several devices comes out when some of them fail."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from herald.channels.base import DeliveryJob, Recipient, RetryPolicy
from herald.channels.fcm import fcm_message
from herald.channels.http_errors import retry_after_s
from herald.channels.push_fanout import PushFanOutProvider, PushSender, SubscriptionGone, collapse_key
from herald.channels.webpush import MAX_PLAINTEXT_BYTES, web_push_payload
from herald.errors import DeliveryError, HeraldError
from herald.push_subscriptions import PushSubscriptionError, subscription_key, validate_subscription


def b64url(raw: bytes, *, pad: bool = False) -> str:
    encoded = base64.urlsafe_b64encode(raw).decode()
    return encoded if pad else encoded.rstrip("=")


def p256dh() -> bytes:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )


def web(endpoint: str = "https://push.example.net/send/1", **keys: Any) -> dict[str, Any]:
    return {"endpoint": endpoint, "keys": {"p256dh": b64url(p256dh()), "auth": b64url(os.urandom(16)), **keys}}


def test_a_browser_subscription_is_accepted_as_the_browser_gives_it() -> None:
    raw = {**web(), "expirationTime": None}
    assert validate_subscription(raw) == {"endpoint": raw["endpoint"], "keys": raw["keys"]}
    assert subscription_key(raw) == raw["endpoint"]
    padded = web(p256dh=b64url(p256dh(), pad=True), auth=b64url(os.urandom(16), pad=True))
    assert validate_subscription(padded)["keys"] == padded["keys"]
    assert validate_subscription({**web(), "expirationTime": 1_900_000_000_000})["expirationTime"] == 1_900_000_000_000


def test_an_fcm_registration_is_accepted() -> None:
    token = "dQw4w9WgXcQ:APA91bH-x_y.z"
    assert validate_subscription({"fcmToken": token}) == {"fcmToken": token}
    assert subscription_key({"fcmToken": token}) == f"fcm:{token}"


def not_on_curve() -> str:
    point = bytearray(p256dh())
    point[-1] ^= 1
    return b64url(bytes(point))


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"endpoint": "http://push.example.net/1", "keys": web()["keys"]}, "endpoint"),
        ({"endpoint": "ftp://push.example.net/1", "keys": web()["keys"]}, "endpoint"),
        ({"endpoint": "https:///nohost", "keys": web()["keys"]}, "endpoint"),
        ({"endpoint": "https://push.example.net/" + "x" * 3000, "keys": web()["keys"]}, "endpoint"),
        ({"endpoint": 7, "keys": web()["keys"]}, "endpoint"),
        ({"endpoint": "https://push.example.net/1"}, "keys"),
        (web(p256dh=b64url(p256dh()[1:])), "keys.p256dh"),
        (web(p256dh=b64url(b"\x02" + p256dh()[1:])), "keys.p256dh"),
        (web(p256dh=not_on_curve()), "keys.p256dh"),
        (web(p256dh="not base64!"), "keys.p256dh"),
        (web(auth=b64url(os.urandom(15))), "keys.auth"),
        (web(auth=""), "keys.auth"),
        ({**web(), "expirationTime": "tomorrow"}, "expirationTime"),
        ({"fcmToken": ""}, "fcmToken"),
        ({"fcmToken": "has space"}, "fcmToken"),
        ({"fcmToken": 12}, "fcmToken"),
        ({"fcmToken": "x" * 5000}, "fcmToken"),
    ],
)
def test_malformed_subscriptions_name_the_field_to_blame(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(PushSubscriptionError) as refused:
        validate_subscription(raw)
    assert refused.value.field == field
    assert isinstance(refused.value, HeraldError)
    assert isinstance(refused.value, ValueError)


@pytest.mark.parametrize("raw", [None, [], "https://push.example.net/1", {}, {**web(), "fcmToken": "t"}])
def test_what_is_no_subscription_at_all_is_refused(raw: Any) -> None:
    with pytest.raises(PushSubscriptionError):
        validate_subscription(raw)


def test_plain_http_endpoints_are_for_this_machine_only() -> None:
    assert validate_subscription(web("http://127.0.0.1:8080/push"))["endpoint"] == "http://127.0.0.1:8080/push"
    assert validate_subscription(web("http://localhost/push"))["endpoint"] == "http://localhost/push"


def job(payload: dict[str, Any], *subscriptions: dict[str, Any], delivery_id: str = "n-1:1:PUSH") -> DeliveryJob:
    return DeliveryJob(delivery_id, "u1", payload, recipient=Recipient("u1", push_subscriptions=subscriptions))


def test_collapse_key_is_per_notification_not_per_version() -> None:
    v1 = collapse_key(job({"id": "n-1", "version": 1}))
    assert v1 == collapse_key(job({"id": "n-1", "version": 2}, delivery_id="n-1:2:PUSH"))
    assert v1 != collapse_key(job({"id": "n-2", "version": 1}))
    assert len(v1) == 32
    assert base64.urlsafe_b64decode(v1)


def test_web_push_payload_cuts_a_long_text_to_what_a_push_service_accepts() -> None:
    long = job({"id": "n-1", "version": 1, "type": "T", "text": "é" * 5000, "count": 1})
    payload = web_push_payload(long)
    assert len(payload) <= MAX_PLAINTEXT_BYTES
    assert orjson.loads(payload)["text"].endswith("…")
    assert orjson.loads(web_push_payload(job({"digest": {"count": 5, "items": []}}))) == {
        "digest": 5,
        "deliveryId": "n-1:1:PUSH",
    }


def test_fcm_digest_message_carries_the_count() -> None:
    message = fcm_message(job({"digest": {"count": 4, "items": []}}), "tok")["message"]
    assert message["data"] == {"digest": "4", "deliveryId": "n-1:1:PUSH"}
    assert message["notification"]["title"] == "4 new notifications"
    assert all(isinstance(v, str) for v in message["data"].values())


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert retry_after_s("12") == 12.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (retry_after_s(later) or 0) <= 30
    assert retry_after_s("soon") is None
    assert retry_after_s(None) is None


class ScriptedSender(PushSender):
    kind = "Web Push"

    def __init__(self, script: dict[str, list[Exception | None]]) -> None:
        self.script = script
        self.sent: list[str] = []

    def handles(self, subscription: Mapping[str, Any]) -> bool:
        return "endpoint" in subscription

    async def send_one(self, job: DeliveryJob, subscription: Mapping[str, Any]) -> None:
        endpoint = str(subscription["endpoint"])
        self.sent.append(endpoint)
        answers = self.script.get(endpoint, [])
        failure = answers.pop(0) if answers else None
        if failure is not None:
            raise failure


async def no_sleep(_: float) -> None:
    return


def subs(*names: str) -> list[dict[str, Any]]:
    return [web(f"https://push.example.net/{n}") for n in names]


async def test_a_device_refusing_for_good_does_not_fail_a_delivery_others_received() -> None:
    sender = ScriptedSender({"https://push.example.net/bad": [DeliveryError("400 bad", retriable=False)]})
    provider = PushFanOutProvider([sender], sleep=no_sleep)
    outcome = await provider.deliver(job({"id": "n-1"}, *subs("bad", "good")))
    assert (outcome.delivered, outcome.attempts) == (True, 1)


async def test_every_device_refusing_fails_the_delivery_with_their_reasons() -> None:
    sender = ScriptedSender({"https://push.example.net/bad": [DeliveryError("400 bad", retriable=False)]})
    provider = PushFanOutProvider([sender], sleep=no_sleep)
    outcome = await provider.deliver(job({"id": "n-1"}, *subs("bad")))
    assert (outcome.delivered, outcome.attempts, outcome.error) == (False, 1, "400 bad")


async def test_retries_resend_only_to_devices_that_failed_retriably() -> None:
    busy: list[Exception | None] = [
        DeliveryError("503", retriable=True, retry_after_s=2),
        DeliveryError("503", retriable=True),
    ]
    sender = ScriptedSender(
        {"https://push.example.net/busy": busy, "https://push.example.net/gone": [SubscriptionGone("410")]}
    )
    delays: list[float] = []

    async def record(seconds: float) -> None:
        delays.append(seconds)

    provider = PushFanOutProvider([sender], policy=RetryPolicy(base_delay_s=1), sleep=record, rng=lambda: 0.5)
    outcome = await provider.deliver(job({"id": "n-1"}, *subs("busy", "ok", "gone")))
    assert (outcome.delivered, outcome.attempts, provider.removed) == (True, 3, 1)
    assert sorted(sender.sent) == sorted(
        ["https://push.example.net/" + n for n in ("busy", "ok", "gone", "busy", "busy")]
    )
    assert delays == [2, 1.0]


async def test_subscriptions_of_no_configured_kind_fail_with_a_reason() -> None:
    provider = PushFanOutProvider([ScriptedSender({})], sleep=no_sleep)
    outcome = await provider.deliver(job({"id": "n-1"}, {"fcmToken": "tok"}))
    assert (outcome.delivered, outcome.error) == (False, "user u1 has 1 push subscriptions, none of them Web Push")
