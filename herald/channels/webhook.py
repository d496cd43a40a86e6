"""WEBHOOK: a signed JSON POST of the notification (or digest) to the user's endpoint or the deployment's.

The receiver authenticates a request with `verify_signature`: X-Herald-Signature is
"sha256=" + hex HMAC-SHA256(webhook_secret, f"{X-Herald-Timestamp}.{raw body}"). The timestamp is inside the
signed text so a captured request cannot be replayed later than the tolerance; Idempotency-Key (the stable
delivery id) lets the receiver drop the repeat of a retried request that had in fact arrived.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from herald.channels.base import ChannelProvider, DeliveryJob, RetryPolicy
from herald.channels.http_errors import origin, redact, status_error, transport_error
from herald.config import Settings
from herald.errors import DeliveryError

REQUIRED_SETTINGS = "webhook_secret (and webhook_url or each user's webhookUrl)"

SIGNATURE_HEADER = "X-Herald-Signature"
TIMESTAMP_HEADER = "X-Herald-Timestamp"
SIGNATURE_SCHEME = "sha256="


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The X-Herald-Signature value of `body` sent at `timestamp` (unix seconds, as sent in the header)."""
    mac = hmac.new(_as_bytes(secret), timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_SCHEME + mac.hexdigest()


def verify_signature(
    secret: str | bytes, timestamp: str, body: bytes, header: str, *, now: float, tolerance_s: float = 300
) -> bool:
    """Whether `header` signs `body` at `timestamp` with `secret`, and `timestamp` lies within `tolerance_s` of
    `now` (either side: a receiver's clock may run behind Herald's)."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent_at) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body)
    # Bytes, because compare_digest refuses a str with non-ASCII characters and a forged header may carry some.
    return hmac.compare_digest(expected.encode(), header.strip().encode())


class WebhookProvider(ChannelProvider):
    channel = "WEBHOOK"

    def __init__(
        self,
        *,
        secret: str,
        default_url: str | None = None,
        timeout_s: float = 10.0,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(policy, sleep=sleep, rng=rng)
        if not secret:
            raise ValueError("a webhook provider needs a signing secret")
        self._secret = secret
        self._default_url = default_url
        self._timeout_s = timeout_s
        self._clock = clock
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self._client is None:
            # Redirects are not followed: a 3xx would resend the signed body somewhere the operator did not name.
            self._client = httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=False)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def url_for(self, job: DeliveryJob) -> str | None:
        user_url = job.recipient.webhook_url if job.recipient is not None else None
        return user_url or self._default_url

    @staticmethod
    def body(job: DeliveryJob) -> dict[str, Any]:
        envelope: dict[str, Any] = {"deliveryId": job.delivery_id, "userId": job.user_id}
        if job.is_digest:
            envelope["digest"] = job.payload["digest"]
        else:
            envelope["notification"] = job.payload
        return envelope

    async def send(self, job: DeliveryJob) -> None:
        if self._client is None:
            raise RuntimeError("WebhookProvider.send before start()")
        url = self.url_for(job)
        if not url:
            raise DeliveryError(f"user {job.user_id} has no webhook URL", retriable=False)
        raw = orjson.dumps(self.body(job))
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": job.delivery_id,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, raw),
        }
        what = f"webhook {origin(url)}"
        try:
            response = await self._client.post(url, content=raw, headers=headers)
        except httpx.InvalidURL:
            raise DeliveryError(f"user {job.user_id} has an invalid webhook URL", retriable=False) from None
        except httpx.HTTPError as exc:
            raise transport_error(what, exc, self._timeout_s) from None
        if response.is_success:
            return
        # The receiver shares the secret, so even its reason phrase could echo it into our logs.
        raise status_error(what, response, redact(response.reason_phrase, self._secret))


def from_settings(settings: Settings, policy: RetryPolicy) -> WebhookProvider | None:
    if settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
        return None
    return WebhookProvider(
        secret=settings.webhook_secret.get_secret_value(),
        default_url=settings.webhook_url,
        timeout_s=settings.webhook_timeout_s,
        policy=policy,
    )
