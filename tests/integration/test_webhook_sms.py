"""WEBHOOK and SMS providers against a real HTTP server on loopback (tests/support/http_sink.py).

No Kafka, Redis or Ray: the sink is the far end. Retries go through ChannelProvider.deliver with a recording
`sleep`, so a test sees the delays the policy chose without waiting them out.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Any

import pytest

from herald.channels import sms_text
from herald.channels.base import DeliveryJob, Recipient, RetryPolicy
from herald.channels.http_errors import MAX_RETRY_AFTER_S
from herald.channels.policy_errors import BelowMinimumPriority, Skipped
from herald.channels.sms import SmsProvider
from herald.channels.webhook import WebhookProvider, verify_signature
from herald.errors import DeliveryError
from tests.support.http_sink import HttpSink, Reply, SeenRequest, free_port

pytestmark = pytest.mark.integration

SECRET = "whsec-0123456789abcdef"
TOKEN = "sms-token-fedcba9876543210"
ACCOUNT = "AC0000test"
SENDER = "+15005550006"
NOW = 1_800_000_000.0


def notification(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "n1",
        "version": 3,
        "userId": "u1",
        "type": "POST_LIKED",
        "text": "John and 2 others liked your post",
        "actors": [{"id": "a1", "name": "John"}],
        "count": 3,
        "target": {"type": "post", "id": "p1"},
        "priority": "HIGH",
        "createdAt": "2026-11-29T04:00:00.000Z",
        "updatedAt": "2026-11-29T04:01:00.000Z",
    }
    return {**body, **overrides}


def job(payload: dict[str, Any] | None = None, recipient: Recipient | None = None, **kwargs: Any) -> DeliveryJob:
    return DeliveryJob(
        delivery_id=kwargs.pop("delivery_id", "n1:3:X"),
        user_id="u1",
        payload=notification() if payload is None else payload,
        recipient=recipient,
        **kwargs,
    )


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    async with HttpSink() as server:
        yield server


# --- WEBHOOK ---------------------------------------------------------------------------------------------------


@pytest.fixture
async def webhook(sink: HttpSink) -> AsyncIterator[tuple[WebhookProvider, Sleeps]]:
    sleeps = Sleeps()
    provider = WebhookProvider(
        secret=SECRET,
        default_url=f"{sink.url}/default",
        timeout_s=5,
        policy=RetryPolicy(max_attempts=4, base_delay_s=0.5),
        sleep=sleeps,
        rng=lambda: 0.0,  # no jitter: a recorded delay is the server's Retry-After or 0
        clock=lambda: NOW,
    )
    await provider.start()
    yield provider, sleeps
    await provider.close()


def assert_signed(request: SeenRequest, *, now: float = NOW) -> None:
    timestamp = request.headers["x-herald-timestamp"]
    signature = request.headers["x-herald-signature"]
    assert signature.startswith("sha256=")
    assert verify_signature(SECRET, timestamp, request.body, signature, now=now)
    assert not verify_signature("wrong-secret", timestamp, request.body, signature, now=now)
    assert not verify_signature(SECRET, timestamp, request.body + b"\n", signature, now=now)


async def test_webhook_posts_a_signed_notification(sink: HttpSink, webhook: tuple[WebhookProvider, Sleeps]) -> None:
    provider, _ = webhook
    sent = job(delivery_id="n1:3:WEBHOOK")
    await provider.send(sent)
    [request] = await sink.wait_for(1)
    assert (request.method, request.path) == ("POST", "/default")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == "n1:3:WEBHOOK"
    assert request.headers["x-herald-timestamp"] == str(int(NOW))
    assert request.json() == {"deliveryId": "n1:3:WEBHOOK", "userId": "u1", "notification": notification()}
    assert_signed(request)
    assert SECRET not in request.body.decode()
    assert not any(SECRET in value for value in request.headers.values())


async def test_webhook_signature_goes_stale(sink: HttpSink, webhook: tuple[WebhookProvider, Sleeps]) -> None:
    provider, _ = webhook
    await provider.send(job())
    [request] = await sink.wait_for(1)
    ts, signature = request.headers["x-herald-timestamp"], request.headers["x-herald-signature"]
    assert verify_signature(SECRET, ts, request.body, signature, now=NOW + 300)
    assert not verify_signature(SECRET, ts, request.body, signature, now=NOW + 301)


async def test_webhook_posts_a_digest(sink: HttpSink, webhook: tuple[WebhookProvider, Sleeps]) -> None:
    provider, _ = webhook
    digest = {"digest": {"count": 2, "items": [notification(), notification(id="n2", text="Ann followed you")]}}
    await provider.send(job(digest))
    [request] = await sink.wait_for(1)
    assert request.json() == {"deliveryId": "n1:3:X", "userId": "u1", "digest": digest["digest"]}
    assert "notification" not in request.json()
    assert_signed(request)


async def test_users_webhook_url_overrides_the_default(sink: HttpSink, webhook: tuple[WebhookProvider, Sleeps]) -> None:
    provider, _ = webhook
    async with HttpSink() as users_sink:
        await provider.send(job(recipient=Recipient("u1", webhook_url=f"{users_sink.url}/hooks/u1?k=1")))
        [request] = await users_sink.wait_for(1)
        assert (request.path, request.query) == ("/hooks/u1", "k=1")
        assert_signed(request)
    # A recipient without a URL of its own falls back to the default; it is the first the default sink sees.
    await provider.send(job(recipient=Recipient("u1", email="u1@example.com"), delivery_id="second"))
    [request] = await sink.wait_for(1)
    assert request.headers["idempotency-key"] == "second"
    assert len(sink.requests) == 1


async def test_no_webhook_url_at_all_is_permanent() -> None:
    provider = WebhookProvider(secret=SECRET)
    await provider.start()
    try:
        with pytest.raises(DeliveryError) as raised:
            await provider.send(job(recipient=Recipient("u1")))
        assert not raised.value.retriable
        assert raised.value.reason == "user u1 has no webhook URL"
        outcome = await provider.deliver(job())
        assert (outcome.delivered, outcome.attempts) == (False, 1)
    finally:
        await provider.close()


async def test_webhook_500_then_200_is_retried(sink: HttpSink, webhook: tuple[WebhookProvider, Sleeps]) -> None:
    provider, sleeps = webhook
    sink.respond(500, {"error": "boom"})
    outcome = await provider.deliver(job(delivery_id="n1:3:WEBHOOK"))
    assert outcome.delivered
    assert outcome.attempts == 2
    assert outcome.notification_id == "n1"
    assert sleeps == [0.0]
    first, second = await sink.wait_for(2)
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == "n1:3:WEBHOOK"
    assert first.body == second.body
    assert_signed(second)


@pytest.mark.parametrize("status", [429, 503])
async def test_webhook_retry_after_seconds_is_honoured(
    status: int, sink: HttpSink, webhook: tuple[WebhookProvider, Sleeps]
) -> None:
    provider, sleeps = webhook
    sink.respond(status, headers={"Retry-After": "7"})
    outcome = await provider.deliver(job())
    assert (outcome.delivered, outcome.attempts) == (True, 2)
    assert len(sleeps) == 1
    assert sleeps[0] >= 7
    assert len(await sink.wait_for(2)) == 2


async def test_webhook_retry_after_http_date_is_honoured(
    sink: HttpSink, webhook: tuple[WebhookProvider, Sleeps]
) -> None:
    provider, sleeps = webhook
    sink.respond(429, headers={"Retry-After": formatdate(time.time() + 60, usegmt=True)})
    assert (await provider.deliver(job())).delivered
    assert len(sleeps) == 1
    assert 55 <= sleeps[0] <= 60


async def test_webhook_retry_after_is_capped(sink: HttpSink, webhook: tuple[WebhookProvider, Sleeps]) -> None:
    provider, sleeps = webhook
    sink.respond(429, headers={"Retry-After": "86400"})
    assert (await provider.deliver(job())).delivered
    assert sleeps == [MAX_RETRY_AFTER_S]


async def test_webhook_400_is_permanent(sink: HttpSink, webhook: tuple[WebhookProvider, Sleeps]) -> None:
    provider, sleeps = webhook
    sink.respond(400, {"error": "bad payload"})
    sink.respond(200)  # would be taken by a retry
    outcome = await provider.deliver(job())
    assert not outcome.delivered
    assert outcome.attempts == 1
    assert outcome.error is not None
    assert "400" in outcome.error
    assert SECRET not in outcome.error
    assert sleeps == []
    await sink.wait_for(1)
    assert len(sink.requests) == 1


async def test_webhook_retriable_statuses(sink: HttpSink, webhook: tuple[WebhookProvider, Sleeps]) -> None:
    provider, _ = webhook
    for status in (408, 502):
        sink.respond(status)
        with pytest.raises(DeliveryError) as raised:
            await provider.send(job())
        assert raised.value.retriable, status
        assert str(status) in raised.value.reason
    for status in (401, 404, 410, 422):
        sink.respond(status)
        with pytest.raises(DeliveryError) as raised:
            await provider.send(job())
        assert not raised.value.retriable, status


async def test_webhook_connection_refused_is_retriable() -> None:
    sleeps = Sleeps()
    provider = WebhookProvider(
        secret=SECRET,
        default_url=f"http://127.0.0.1:{free_port()}/hook",
        policy=RetryPolicy(max_attempts=3),
        sleep=sleeps,
    )
    await provider.start()
    try:
        outcome = await provider.deliver(job())
    finally:
        await provider.close()
    assert (outcome.delivered, outcome.attempts, len(sleeps)) == (False, 3, 2)
    assert outcome.error is not None
    assert "unreachable" in outcome.error


async def test_webhook_timeout_is_retriable() -> None:
    release = asyncio.Event()

    async def stalled(_: SeenRequest) -> Reply:
        await release.wait()  # answers only after the provider has given up, so its timeout must fire
        return Reply()

    async with HttpSink(stalled) as stalled_sink:
        provider = WebhookProvider(secret=SECRET, default_url=stalled_sink.url, timeout_s=0.2)
        await provider.start()
        try:
            with pytest.raises(DeliveryError) as raised:
                await provider.send(job())
        finally:
            release.set()
            await provider.close()
    assert raised.value.retriable
    assert "timed out after 0.2 s" in raised.value.reason


# --- SMS -------------------------------------------------------------------------------------------------------


def sms_provider(sink: HttpSink, sleeps: Sleeps, **overrides: Any) -> SmsProvider:
    options: dict[str, Any] = {
        "url": f"{sink.url}/2010-04-01/Accounts/{{account}}/Messages.json",
        "account": ACCOUNT,
        "token": TOKEN,
        "sender": SENDER,
        "max_segments": 1,
        "min_priority": "HIGH",
        "policy": RetryPolicy(max_attempts=4, base_delay_s=0.5),
        "sleep": sleeps,
        "rng": lambda: 0.0,
    }
    return SmsProvider(**{**options, **overrides})


@pytest.fixture
async def sms(sink: HttpSink) -> AsyncIterator[tuple[SmsProvider, Sleeps]]:
    sleeps = Sleeps()
    provider = sms_provider(sink, sleeps)
    await provider.start()
    yield provider, sleeps
    await provider.close()


PHONE = Recipient("u1", phone="+4915112345678")


async def test_sms_posts_the_form_with_basic_auth(sink: HttpSink, sms: tuple[SmsProvider, Sleeps]) -> None:
    provider, _ = sms
    await provider.send(job(recipient=PHONE, delivery_id="n1:3:SMS"))
    [request] = await sink.wait_for(1)
    assert (request.method, request.path) == ("POST", f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json")
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.form() == {"To": "+4915112345678", "From": SENDER, "Body": "John and 2 others liked your post"}
    assert request.headers["idempotency-key"] == "n1:3:SMS"
    scheme, _, credentials = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(credentials).decode() == f"{ACCOUNT}:{TOKEN}"


async def test_sms_digest_text(sink: HttpSink, sms: tuple[SmsProvider, Sleeps]) -> None:
    provider, _ = sms
    items = [notification(priority="LOW"), notification(id="n2", priority="URGENT"), notification(id="n3")]
    await provider.send(job({"digest": {"count": 3, "items": items}}, recipient=PHONE))
    [request] = await sink.wait_for(1)
    assert request.form()["Body"] == "You have 3 new notifications"


@pytest.mark.parametrize(
    ("max_segments", "text"),
    [(1, "word " * 100), (2, "word " * 100), (1, "Ünïcode " * 30), (3, "Grüße 😀 " * 60), (2, "{curly} " * 60)],
)
async def test_sms_body_respects_the_segment_limit(sink: HttpSink, max_segments: int, text: str) -> None:
    provider = sms_provider(sink, Sleeps(), max_segments=max_segments)
    await provider.start()
    try:
        await provider.send(job(notification(text=text), recipient=PHONE))
    finally:
        await provider.close()
    [request] = await sink.wait_for(1)
    body = request.form()["Body"]
    assert sms_text.segments(text) > max_segments  # the case is one that needs shortening
    assert sms_text.segments(body) <= max_segments
    assert body.endswith("..." if sms_text.is_gsm7(text) else "…")
    assert text.startswith(body.rstrip(".…"))


async def test_sms_429_is_retried_after_the_servers_delay(sink: HttpSink, sms: tuple[SmsProvider, Sleeps]) -> None:
    provider, sleeps = sms
    sink.respond(429, {"code": 20429, "message": "Too Many Requests"}, headers={"Retry-After": "4"})
    outcome = await provider.deliver(job(recipient=PHONE, delivery_id="n1:3:SMS"))
    assert (outcome.delivered, outcome.attempts) == (True, 2)
    assert len(sleeps) == 1
    assert sleeps[0] >= 4
    first, second = await sink.wait_for(2)
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == "n1:3:SMS"
    assert first.form() == second.form()


async def test_sms_5xx_is_retriable(sink: HttpSink, sms: tuple[SmsProvider, Sleeps]) -> None:
    provider, sleeps = sms
    sink.respond(500, b"upstream exploded", headers={"content-type": "text/plain"})
    sink.respond(503)
    outcome = await provider.deliver(job(recipient=PHONE))
    assert (outcome.delivered, outcome.attempts, len(sleeps)) == (True, 3, 2)


async def test_sms_api_error_code_is_in_the_reason(sink: HttpSink, sms: tuple[SmsProvider, Sleeps]) -> None:
    provider, sleeps = sms
    sink.respond(400, {"code": 21211, "message": "The 'To' number +4915112345678 is not a valid phone number."})
    outcome = await provider.deliver(job(recipient=PHONE))
    assert not outcome.delivered
    assert outcome.attempts == 1
    assert sleeps == []
    assert outcome.error is not None
    assert "400" in outcome.error
    assert "21211" in outcome.error
    assert "is not a valid phone number" in outcome.error
    assert TOKEN not in outcome.error
    assert len(await sink.wait_for(1)) == 1


async def test_sms_reason_never_echoes_the_token(sink: HttpSink, sms: tuple[SmsProvider, Sleeps]) -> None:
    provider, _ = sms
    sink.respond(401, {"code": 20003, "message": f"Authenticate: bad credentials {ACCOUNT}:{TOKEN}"})
    with pytest.raises(DeliveryError) as raised:
        await provider.send(job(recipient=PHONE))
    assert not raised.value.retriable
    assert "20003" in raised.value.reason
    assert TOKEN not in raised.value.reason
    assert TOKEN not in str(raised.value)


async def test_sms_below_minimum_priority_is_skipped(sink: HttpSink, sms: tuple[SmsProvider, Sleeps]) -> None:
    provider, _ = sms
    low = job(notification(priority="NORMAL"), recipient=PHONE, delivery_id="low")
    assert provider.skip_reason(low) == "priority NORMAL is below sms_min_priority HIGH"
    with pytest.raises(BelowMinimumPriority) as raised:
        await provider.send(low)
    assert isinstance(raised.value, Skipped)
    assert not raised.value.retriable
    # Skipped even without a phone number: policy is decided before contact details.
    with pytest.raises(Skipped):
        await provider.send(job(notification(priority="LOW"), recipient=None))
    outcome = await provider.deliver(low)
    assert (outcome.delivered, outcome.failed, outcome.status) == (False, False, "SUPPRESSED")
    assert "below sms_min_priority" in outcome.receipt()["error"]
    # A digest ranks as its most pressing item; URGENT and CRITICAL pass a HIGH minimum.
    digest = {"digest": {"count": 2, "items": [notification(priority="LOW"), notification(priority="NORMAL")]}}
    with pytest.raises(Skipped):
        await provider.send(job(digest, recipient=PHONE))
    await provider.send(job(notification(priority="URGENT"), recipient=PHONE, delivery_id="urgent"))
    await provider.send(job(notification(priority="CRITICAL"), recipient=PHONE, delivery_id="critical"))
    # Sends are sequential, so had a skipped job gone out it would be among these.
    requests = await sink.wait_for(2)
    assert [r.headers["idempotency-key"] for r in requests] == ["urgent", "critical"]
    assert len(sink.requests) == 2


async def test_sms_without_a_phone_number_is_permanent(sink: HttpSink, sms: tuple[SmsProvider, Sleeps]) -> None:
    provider, sleeps = sms
    for recipient in (None, Recipient("u1", email="u1@example.com")):
        with pytest.raises(DeliveryError) as raised:
            await provider.send(job(recipient=recipient))
        assert not isinstance(raised.value, Skipped)
        assert not raised.value.retriable
        assert raised.value.reason == "user u1 has no phone number"
    outcome = await provider.deliver(job(recipient=None))
    assert (outcome.delivered, outcome.attempts, outcome.error) == (False, 1, "user u1 has no phone number")
    assert sleeps == []
    await provider.send(job(recipient=PHONE, delivery_id="with-phone"))
    [request] = await sink.wait_for(1)
    assert request.headers["idempotency-key"] == "with-phone"
    assert len(sink.requests) == 1
