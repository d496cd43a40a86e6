"""The PUSH channel against real HTTP servers, real Redis and real Kafka.

The Web Push endpoint decrypts what it receives with the subscription's private key and checks the VAPID JWT
with the key the request names; the FCM server checks the service account's signed grant and the message.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import http_ece  # type: ignore[import-untyped]
import jwt
import orjson
import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from herald import keys
from herald.channels import push
from herald.channels.base import DeliveryJob, Outcome, Recipient, RetryPolicy
from herald.channels.push_fanout import PushFanOutProvider
from herald.config import Settings
from herald.push_subscriptions import MAX_SUBSCRIPTIONS_PER_USER, PushSubscriptionError, PushSubscriptionStore
from tests.integration.conftest import ConsumerFactory, TopicFactory
from tests.support.http_sink import HttpSink, Reply, SeenRequest

pytestmark = pytest.mark.integration

VAPID_SUBJECT = "mailto:ops@herald.example"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth signs the grant for Google's token endpoint whatever token_uri the file names.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class Browser:
    """A browser's side of one subscription: the keys only it holds, and what it decrypted."""

    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    endpoint: str
    received: list[dict[str, Any]]

    @classmethod
    def create(cls, endpoint: str) -> Browser:
        return cls(ec.generate_private_key(ec.SECP256R1()), os.urandom(16), endpoint, [])

    @property
    def subscription(self) -> dict[str, Any]:
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"endpoint": self.endpoint, "keys": {"p256dh": b64url(point), "auth": b64url(self.auth)}}

    def decrypt(self, request: SeenRequest) -> dict[str, Any]:
        plain = http_ece.decrypt(request.body, private_key=self.private_key, auth_secret=self.auth, version="aes128gcm")
        message: dict[str, Any] = orjson.loads(plain)
        self.received.append(message)
        return message


def vapid_claims(request: SeenRequest, audience: str) -> dict[str, Any]:
    """The VAPID JWT's claims, verified with the public key the request carries in `k=`."""
    scheme, _, params = request.headers["authorization"].partition(" ")
    assert scheme == "vapid"
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    raw_key = base64.urlsafe_b64decode(fields["k"] + "=" * (-len(fields["k"]) % 4))
    public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw_key)
    claims: dict[str, Any] = jwt.decode(
        fields["t"], public_key, algorithms=["ES256"], audience=audience, options={"require": ["exp", "aud", "sub"]}
    )
    return claims


@pytest.fixture
def vapid_key_file(tmp_path: Path) -> Path:
    path = tmp_path / "vapid.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


@pytest.fixture
async def store(redis_client: aioredis.Redis) -> PushSubscriptionStore:
    return PushSubscriptionStore(redis_client)


@pytest.fixture
async def user_id(redis_client: aioredis.Redis) -> AsyncIterator[str]:
    user = f"push-{uuid.uuid4().hex[:10]}"
    yield user
    await redis_client.delete(keys.user_key(user, "push"))


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def provider_for(settings: Settings, sleeps: Sleeps) -> PushFanOutProvider:
    provider = push.from_settings(
        settings, RetryPolicy(max_attempts=4, base_delay_s=0.5), sleep=sleeps, rng=lambda: 0.0
    )
    assert isinstance(provider, PushFanOutProvider)
    return provider


async def job_for(store: PushSubscriptionStore, user: str, payload: dict[str, Any], delivery_id: str) -> DeliveryJob:
    subscriptions = (await store.list_for([user]))[user]
    return DeliveryJob(delivery_id, user, payload, recipient=Recipient(user, push_subscriptions=tuple(subscriptions)))


def notification(user: str, nid: str = "n-1", version: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "id": nid,
        "version": version,
        "userId": user,
        "type": "POST_LIKED",
        "text": "John and 2 others liked your post",
        "count": 3,
        "priority": "HIGH",
        **extra,
    }


async def deliver(provider: PushFanOutProvider, job: DeliveryJob) -> Outcome:
    await provider.start()
    try:
        return await provider.deliver(job)
    finally:
        await provider.close()


async def test_web_push_is_encrypted_for_the_subscription_and_signed_with_vapid(
    settings: Settings, store: PushSubscriptionStore, user_id: str, vapid_key_file: Path
) -> None:
    browsers: dict[str, Browser] = {}

    def push_service(request: SeenRequest) -> Reply:
        browsers[request.path].decrypt(request)
        return Reply(201, b"")

    async with HttpSink(push_service) as sink:
        browser = Browser.create(f"{sink.url}/push/device-1")
        browsers["/push/device-1"] = browser
        await store.add(user_id, browser.subscription)
        configured = settings.model_copy(
            update={"vapid_private_key_file": vapid_key_file, "vapid_subject": VAPID_SUBJECT}
        )
        provider = provider_for(configured, Sleeps())
        first = await deliver(provider, await job_for(store, user_id, notification(user_id), "n-1:1:PUSH"))
        again = await deliver(
            provider, await job_for(store, user_id, notification(user_id, version=2, count=4), "n-1:2:PUSH")
        )
        other = await deliver(
            provider, await job_for(store, user_id, notification(user_id, "n-2", priority="LOW"), "n-2:1:PUSH")
        )
        requests = await sink.wait_for(3)

    assert (first.delivered, first.attempts, again.delivered, other.delivered) == (True, 1, True, True)
    assert browser.received[0] == {
        "id": "n-1",
        "version": 1,
        "text": "John and 2 others liked your post",
        "count": 3,
        "type": "POST_LIKED",
        "deliveryId": "n-1:1:PUSH",
    }
    assert [(m["id"], m["version"], m["count"]) for m in browser.received] == [
        ("n-1", 1, 3),
        ("n-1", 2, 4),
        ("n-2", 1, 3),
    ]
    assert requests[0].headers["content-encoding"] == "aes128gcm"
    assert int(requests[0].headers["ttl"]) > 0
    assert [r.headers["urgency"] for r in requests] == ["high", "high", "low"]
    topics = [r.headers["topic"] for r in requests]
    # A newer version of n-1 replaces the older one on the device; n-2 does not replace n-1.
    assert topics[0] == topics[1] != topics[2]
    assert all(len(t) <= 32 and base64.urlsafe_b64decode(t + "=" * (-len(t) % 4)) for t in topics)
    for request in requests:
        claims = vapid_claims(request, audience=sink.url)
        assert claims["sub"] == VAPID_SUBJECT
        assert time.time() < claims["exp"] <= time.time() + 24 * 3600


async def test_a_gone_subscription_is_removed_and_the_others_still_deliver(
    settings: Settings,
    store: PushSubscriptionStore,
    redis_client: aioredis.Redis,
    user_id: str,
    vapid_key_file: Path,
) -> None:
    browsers: dict[str, Browser] = {}

    def push_service(request: SeenRequest) -> Reply:
        if request.path == "/push/gone":
            return Reply(410, b"")
        browsers[request.path].decrypt(request)
        return Reply(201, b"")

    async with HttpSink(push_service) as sink:
        gone, alive = Browser.create(f"{sink.url}/push/gone"), Browser.create(f"{sink.url}/push/alive")
        browsers["/push/alive"] = alive
        await store.add(user_id, gone.subscription)
        await store.add(user_id, alive.subscription)
        configured = settings.model_copy(
            update={"vapid_private_key_file": vapid_key_file, "vapid_subject": VAPID_SUBJECT}
        )
        provider = provider_for(configured, Sleeps())
        outcome = await deliver(provider, await job_for(store, user_id, notification(user_id), "n-1:1:PUSH"))
        await sink.wait_for(2)

        assert (outcome.delivered, outcome.attempts, provider.removed) == (True, 1, 1)
        assert [m["deliveryId"] for m in alive.received] == ["n-1:1:PUSH"]
        assert await redis_client.hkeys(keys.user_key(user_id, "push")) == [alive.endpoint.encode()]

        # When the last one is gone too, the delivery fails for good instead of retrying.
        await store.remove(user_id, alive.subscription)
        await store.add(user_id, gone.subscription)
        lost = await deliver(provider, await job_for(store, user_id, notification(user_id), "n-1:2:PUSH"))

    assert (lost.delivered, lost.attempts) == (False, 1)
    assert lost.error == f"every push subscription of user {user_id} is gone (1 removed)"
    assert await redis_client.exists(keys.user_key(user_id, "push")) == 0


async def test_rate_limited_subscription_is_retried_after_retry_after_alone(
    settings: Settings, store: PushSubscriptionStore, user_id: str, vapid_key_file: Path
) -> None:
    browsers: dict[str, Browser] = {}
    refused: set[str] = set()

    def push_service(request: SeenRequest) -> Reply:
        if request.path == "/push/busy" and request.path not in refused:
            refused.add(request.path)
            return Reply(429, b"", {"Retry-After": "7"})
        browsers[request.path].decrypt(request)
        return Reply(201, b"")

    async with HttpSink(push_service) as sink:
        for name in ("busy", "calm"):
            browsers[f"/push/{name}"] = Browser.create(f"{sink.url}/push/{name}")
            await store.add(user_id, browsers[f"/push/{name}"].subscription)
        configured = settings.model_copy(
            update={"vapid_private_key_file": vapid_key_file, "vapid_subject": VAPID_SUBJECT}
        )
        sleeps = Sleeps()
        provider = provider_for(configured, sleeps)
        outcome = await deliver(provider, await job_for(store, user_id, notification(user_id), "n-1:1:PUSH"))
        requests = await sink.wait_for(3)

    assert (outcome.delivered, outcome.attempts) == (True, 2)
    assert sleeps.delays == [7.0]
    # The retry went to the refused device only: the other one is not notified twice.
    assert sorted(r.path for r in requests) == ["/push/busy", "/push/busy", "/push/calm"]
    assert len(sink.requests) == 3
    assert [len(b.received) for b in browsers.values()] == [1, 1]


async def test_no_push_subscription_is_a_permanent_failure(
    settings: Settings, store: PushSubscriptionStore, user_id: str, vapid_key_file: Path
) -> None:
    configured = settings.model_copy(update={"vapid_private_key_file": vapid_key_file, "vapid_subject": VAPID_SUBJECT})
    sleeps = Sleeps()
    outcome = await deliver(
        provider_for(configured, sleeps), await job_for(store, user_id, notification(user_id), "n-1:1:PUSH")
    )
    assert (outcome.delivered, outcome.attempts, outcome.error) == (
        False,
        1,
        f"user {user_id} has no push subscription",
    )
    assert sleeps.delays == []


@dataclass
class ServiceAccount:
    path: Path
    public_key: rsa.RSAPublicKey
    client_email: str
    project_id: str


def service_account(tmp_path: Path, token_uri: str) -> ServiceAccount:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    project_id = "herald-test"
    email = f"herald@{project_id}.iam.gserviceaccount.com"
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": "key-1",
        "private_key": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "client_email": email,
        "client_id": "1",
        "token_uri": token_uri,
    }
    path = tmp_path / "service-account.json"
    path.write_bytes(orjson.dumps(info))
    return ServiceAccount(path, key.public_key(), email, project_id)


class FcmServer:
    """The token endpoint and the send endpoint of FCM on one sink."""

    def __init__(self) -> None:
        self.token_uri = ""
        self.account: ServiceAccount | None = None
        self.issued: list[str] = []
        self.send_replies: list[Reply] = []

    def __call__(self, request: SeenRequest) -> Reply:
        assert self.account is not None
        if request.path == "/token":
            return self.token(request)
        assert request.path == f"/v1/projects/{self.account.project_id}/messages:send"
        return self.send_replies.pop(0) if self.send_replies else Reply(200, b'{"name": "projects/p/messages/1"}')

    def token(self, request: SeenRequest) -> Reply:
        assert self.account is not None
        form = request.form()
        assert form["grant_type"] == JWT_BEARER
        claims = jwt.decode(
            form["assertion"],
            self.account.public_key,
            algorithms=["RS256"],
            audience=GOOGLE_TOKEN_AUDIENCE,
            issuer=self.account.client_email,
        )
        assert claims["scope"] == FCM_SCOPE
        self.issued.append(f"token-{len(self.issued) + 1}")
        body = {"access_token": self.issued[-1], "expires_in": 3600, "token_type": "Bearer"}
        return Reply(200, orjson.dumps(body))


@pytest.fixture
async def fcm(tmp_path: Path) -> AsyncIterator[tuple[HttpSink, FcmServer]]:
    server = FcmServer()
    async with HttpSink(server) as sink:
        server.token_uri = f"{sink.url}/token"
        server.account = service_account(tmp_path, server.token_uri)
        yield sink, server


def fcm_settings(settings: Settings, sink: HttpSink, server: FcmServer) -> Settings:
    assert server.account is not None
    return settings.model_copy(update={"fcm_service_account_file": server.account.path, "fcm_endpoint": sink.url})


async def test_fcm_sends_the_v1_message_with_a_service_account_token(
    settings: Settings, store: PushSubscriptionStore, user_id: str, fcm: tuple[HttpSink, FcmServer]
) -> None:
    sink, server = fcm
    await store.add(user_id, {"fcmToken": "device-token:abc_1"})
    provider = provider_for(fcm_settings(settings, sink, server), Sleeps())
    await provider.start()
    try:
        first = await provider.deliver(await job_for(store, user_id, notification(user_id), "n-1:1:PUSH"))
        second = await provider.deliver(
            await job_for(store, user_id, notification(user_id, version=2, title="Likes"), "n-1:2:PUSH")
        )
    finally:
        await provider.close()
    requests = await sink.wait_for(3)

    assert (first.delivered, second.delivered) == (True, True)
    # One token serves both sends: it is cached until it nears expiry.
    assert [r.path for r in requests] == ["/token", *["/v1/projects/herald-test/messages:send"] * 2]
    assert server.issued == ["token-1"]
    sends = requests[1:]
    assert {r.headers["authorization"] for r in sends} == {"Bearer token-1"}
    message = sends[0].json()["message"]
    group = message["android"]["collapse_key"]
    assert message == {
        "token": "device-token:abc_1",
        "notification": {"title": "John and 2 others liked your post", "body": ""},
        "data": {"id": "n-1", "version": "1", "deliveryId": "n-1:1:PUSH", "type": "POST_LIKED"},
        "android": {"collapse_key": group, "priority": "high"},
        "apns": {"headers": {"apns-collapse-id": group, "apns-priority": "10"}},
    }
    newer = sends[1].json()["message"]
    assert newer["notification"] == {"title": "Likes", "body": "John and 2 others liked your post"}
    assert newer["android"]["collapse_key"] == newer["apns"]["headers"]["apns-collapse-id"] == group


async def test_fcm_refreshes_a_refused_token_once_and_removes_unregistered_tokens(
    settings: Settings,
    store: PushSubscriptionStore,
    redis_client: aioredis.Redis,
    user_id: str,
    fcm: tuple[HttpSink, FcmServer],
) -> None:
    sink, server = fcm
    await store.add(user_id, {"fcmToken": "stale-token"})
    unregistered = {
        "error": {
            "code": 404,
            "status": "NOT_FOUND",
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}],
        }
    }
    server.send_replies = [Reply(401, b'{"error": {"code": 401}}'), Reply(404, orjson.dumps(unregistered))]
    provider = provider_for(fcm_settings(settings, sink, server), Sleeps())
    outcome = await deliver(provider, await job_for(store, user_id, notification(user_id), "n-1:1:PUSH"))
    requests = await sink.wait_for(4)

    assert [r.path == "/token" for r in requests] == [True, False, True, False]
    assert [r.headers.get("authorization") for r in requests if r.path != "/token"] == [
        "Bearer token-1",
        "Bearer token-2",
    ]
    assert (outcome.delivered, outcome.attempts, provider.removed) == (False, 1, 1)
    assert await redis_client.exists(keys.user_key(user_id, "push")) == 0


async def test_fcm_unavailable_is_retried_after_retry_after(
    settings: Settings, store: PushSubscriptionStore, user_id: str, fcm: tuple[HttpSink, FcmServer]
) -> None:
    sink, server = fcm
    await store.add(user_id, {"fcmToken": "device-token"})
    server.send_replies = [Reply(503, b'{"error": {"code": 503}}', {"Retry-After": "3"})]
    sleeps = Sleeps()
    outcome = await deliver(
        provider_for(fcm_settings(settings, sink, server), sleeps),
        await job_for(store, user_id, notification(user_id), "n-1:1:PUSH"),
    )
    await sink.wait_for(3)
    assert (outcome.delivered, outcome.attempts, sleeps.delays) == (True, 2, [3.0])


async def test_web_push_and_fcm_subscriptions_of_one_user_are_all_reached(
    settings: Settings,
    store: PushSubscriptionStore,
    user_id: str,
    vapid_key_file: Path,
    fcm: tuple[HttpSink, FcmServer],
) -> None:
    fcm_sink, server = fcm
    browsers: list[Browser] = []

    def push_service(request: SeenRequest) -> Reply:
        browsers[0].decrypt(request)
        return Reply(201, b"")

    async with HttpSink(push_service) as push_sink:
        browsers.append(Browser.create(f"{push_sink.url}/push/1"))
        await store.add(user_id, browsers[0].subscription)
        await store.add(user_id, {"fcmToken": "device-token"})
        configured = fcm_settings(settings, fcm_sink, server).model_copy(
            update={"vapid_private_key_file": vapid_key_file, "vapid_subject": VAPID_SUBJECT}
        )
        outcome = await deliver(
            provider_for(configured, Sleeps()), await job_for(store, user_id, notification(user_id), "n-1:1:PUSH")
        )
        await push_sink.wait_for(1)
    fcm_requests = await fcm_sink.wait_for(2)

    assert outcome.delivered
    assert [m["deliveryId"] for m in browsers[0].received] == ["n-1:1:PUSH"]
    assert fcm_requests[1].json()["message"]["token"] == "device-token"


async def test_forwarding_writes_the_job_to_the_push_topic(
    settings: Settings, fresh_topic: TopicFactory, make_consumer: ConsumerFactory
) -> None:
    topic = await fresh_topic("push-forward", partitions=1)
    configured = settings.model_copy(update={"push_forward_topic": topic})
    provider = push.from_settings(configured, RetryPolicy(max_attempts=2))
    assert provider is not None
    assert provider.channel == "PUSH"
    body = notification("u-1")
    subscription = {"fcmToken": "device-token"}
    job = DeliveryJob("n-1:1:PUSH", "u-1", body, recipient=Recipient("u-1", push_subscriptions=(subscription,)))
    await provider.start()
    try:
        outcome = await provider.deliver(job)
    finally:
        await provider.close()
    assert outcome.delivered

    consumer = await make_consumer(topic)
    record = await asyncio.wait_for(consumer.getone(), timeout=30)
    assert record.key == b"u-1"
    assert dict(record.headers) == {"deliveryId": b"n-1:1:PUSH"}
    assert orjson.loads(record.value) == {
        "deliveryId": "n-1:1:PUSH",
        "userId": "u-1",
        "notification": body,
        "subscriptions": [subscription],
    }


def test_push_is_off_without_its_settings(settings: Settings) -> None:
    bare = settings.model_copy(
        update={
            "vapid_private_key_file": None,
            "vapid_subject": None,
            "fcm_service_account_file": None,
            "push_forward_topic": None,
        }
    )
    assert push.from_settings(bare, RetryPolicy()) is None
    assert push.REQUIRED_SETTINGS == (
        "vapid_private_key_file + vapid_subject, or fcm_service_account_file, or push_forward_topic"
    )


async def test_subscription_store_adds_refreshes_lists_and_removes(
    store: PushSubscriptionStore, redis_client: aioredis.Redis, user_id: str
) -> None:
    other = f"{user_id}-other"
    browser = Browser.create("https://push.example.net/send/abc")
    try:
        stored = await store.add(user_id, {**browser.subscription, "expirationTime": None})
        assert stored == browser.subscription
        # A browser sends its subscription again on every page load: that refreshes, it does not add.
        await store.add(user_id, browser.subscription)
        await store.add(user_id, {"fcmToken": "device-token"})
        await store.add(other, {"fcmToken": "other-token"})

        listed = await store.list_for([user_id, other, "nobody"])
        assert sorted(listed[user_id], key=str) == sorted([browser.subscription, {"fcmToken": "device-token"}], key=str)
        assert listed[other] == [{"fcmToken": "other-token"}]
        assert listed["nobody"] == []
        assert sorted(await redis_client.hkeys(keys.user_key(user_id, "push"))) == [
            b"fcm:device-token",
            browser.endpoint.encode(),
        ]

        assert await store.remove(user_id, {"fcmToken": "device-token"})
        assert not await store.remove(user_id, "fcm:device-token")
        assert (await store.list_for([user_id]))[user_id] == [browser.subscription]
    finally:
        await redis_client.delete(keys.user_key(other, "push"))


async def test_subscription_store_refuses_malformed_input_and_skips_unreadable_values(
    store: PushSubscriptionStore, redis_client: aioredis.Redis, user_id: str
) -> None:
    with pytest.raises(PushSubscriptionError) as refused:
        await store.add(user_id, {"endpoint": "https://push.example.net/x", "keys": {"p256dh": "AAAA", "auth": "AAAA"}})
    assert refused.value.field == "keys.p256dh"
    assert await redis_client.exists(keys.user_key(user_id, "push")) == 0

    await redis_client.hset(keys.user_key(user_id, "push"), "https://push.example.net/broken", b"{not json")
    await store.add(user_id, {"fcmToken": "device-token"})
    assert (await store.list_for([user_id]))[user_id] == [{"fcmToken": "device-token"}]


async def test_subscription_store_bounds_the_devices_of_one_user(store: PushSubscriptionStore, user_id: str) -> None:
    for n in range(MAX_SUBSCRIPTIONS_PER_USER):
        await store.add(user_id, {"fcmToken": f"token-{n}"})
    with pytest.raises(PushSubscriptionError, match="push subscriptions already"):
        await store.add(user_id, {"fcmToken": "one-too-many"})
    # Refreshing a known one is still fine at the bound.
    await store.add(user_id, {"fcmToken": "token-0"})
    assert len((await store.list_for([user_id]))[user_id]) == MAX_SUBSCRIPTIONS_PER_USER
