"""Web Push (RFC 8030) to browsers: the payload encrypted for the subscription (RFC 8291, aes128gcm) and the
request signed with this deployment's VAPID key (RFC 8292).

pywebpush and py-vapid do the cryptography; the request itself goes out through httpx, as their own senders
are blocking (requests) or pull in another HTTP stack (aiohttp).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from py_vapid import Vapid, VapidException  # type: ignore[import-untyped]
from pywebpush import WebPusher, WebPushException

from herald.channels.base import DeliveryJob, RetryPolicy
from herald.channels.http_errors import status_error
from herald.channels.push_fanout import PushFanOutProvider, PushSender, SubscriptionGone, collapse_key, digest_count
from herald.errors import ConfigError, DeliveryError
from herald.push_subscriptions import PushSubscriptionStore

log = logging.getLogger(__name__)

# How long a push service keeps a notification for a device that is offline.
DEFAULT_TTL_S = 24 * 3600
# RFC 8292 caps a VAPID token's life at 24 hours; re-signing well before expiry covers clock skew.
VAPID_TOKEN_LIFETIME_S = 12 * 3600
VAPID_RESIGN_BEFORE_S = 3600
# Push services accept 4096 bytes of encrypted body; aes128gcm adds an 86-byte header, a 16-byte tag and a
# 1-byte padding delimiter.
MAX_PLAINTEXT_BYTES = 4096 - 86 - 16 - 1
URGENCY = {"LOW": "low", "NORMAL": "normal", "HIGH": "high", "URGENT": "high", "CRITICAL": "high"}


def load_vapid(path: Path) -> Any:
    """The VAPID key from a PEM file, or from a file holding the base64url raw or DER key.

    py-vapid's own from_file generates and saves a new key when the file is missing: a typo in the setting
    would then silently invalidate every subscription made with the real key, so a missing file is an error.
    """
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"vapid_private_key_file {path}: {exc}") from exc
    try:
        return Vapid.from_pem(text.encode()) if "-----BEGIN" in text else Vapid.from_string(text)
    except (VapidException, ValueError, TypeError) as exc:
        raise ConfigError(f"vapid_private_key_file {path} holds no usable P-256 private key: {exc}") from exc


def web_push_payload(job: DeliveryJob) -> bytes:
    """What the service worker receives: enough to show the notification and to fetch the rest."""
    if job.is_digest:
        return orjson.dumps({"digest": digest_count(job), "deliveryId": job.delivery_id})
    body = job.payload
    message: dict[str, Any] = {
        "id": body.get("id"),
        "version": body.get("version"),
        "text": body.get("text", ""),
        "count": body.get("count", 1),
        "type": body.get("type"),
        "deliveryId": job.delivery_id,
    }
    if body.get("title"):
        message["title"] = body["title"]
    encoded = orjson.dumps(message)
    # A long text would make the push service refuse the whole message: cut it, the app shows it in full.
    while len(encoded) > MAX_PLAINTEXT_BYTES and message["text"]:
        excess = len(encoded) - MAX_PLAINTEXT_BYTES
        message["text"] = message["text"][: max(0, len(message["text"]) - excess - 1)] + "…"
        encoded = orjson.dumps(message)
    return encoded


class WebPushSender(PushSender):
    kind = "Web Push"

    def __init__(
        self,
        vapid: Any,
        subject: str,
        *,
        timeout_s: float = 15.0,
        ttl_s: int = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            # py-vapid checks the subject only when signing: a bad one must stop startup, not every send.
            vapid.sign({"aud": "https://push.invalid", "sub": subject, "exp": int(clock()) + 60})
        except VapidException as exc:
            raise ConfigError(f"vapid_subject {subject!r}: {exc} (use mailto:you@example.com or https://...)") from exc
        self._vapid = vapid
        self._subject = subject
        self._timeout_s = timeout_s
        self._ttl_s = ttl_s
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._tokens: dict[str, tuple[str, float]] = {}  # audience -> (Authorization header, its expiry)

    def handles(self, subscription: Mapping[str, Any]) -> bool:
        return "endpoint" in subscription

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout_s)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def authorization(self, endpoint: str) -> str:
        """The VAPID header for the endpoint's push service, signed once per service and reused until near expiry."""
        parts = urlsplit(endpoint)
        audience = f"{parts.scheme}://{parts.netloc}"
        now = self._clock()
        cached = self._tokens.get(audience)
        if cached is not None and cached[1] - now > VAPID_RESIGN_BEFORE_S:
            return cached[0]
        expires = int(now) + VAPID_TOKEN_LIFETIME_S
        header = str(self._vapid.sign({"aud": audience, "sub": self._subject, "exp": expires})["Authorization"])
        self._tokens[audience] = (header, float(expires))
        return header

    def request(self, job: DeliveryJob, subscription: Mapping[str, Any]) -> tuple[str, bytes, dict[str, str]]:
        """The endpoint, the encrypted body and the headers of one send."""
        endpoint = str(subscription["endpoint"])
        try:
            body = WebPusher(subscription).encode(web_push_payload(job), "aes128gcm")["body"]
        except (WebPushException, ValueError) as exc:
            raise DeliveryError(f"Web Push subscription {endpoint} is unusable: {exc}", retriable=False) from exc
        priority = "NORMAL" if job.is_digest else str(job.payload.get("priority", "NORMAL"))
        headers = {
            "Authorization": self.authorization(endpoint),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(self._ttl_s),
            "Urgency": URGENCY.get(priority, "normal"),
            "Topic": collapse_key(job),
        }
        return endpoint, bytes(body), headers

    async def send_one(self, job: DeliveryJob, subscription: Mapping[str, Any]) -> None:
        endpoint, body, headers = self.request(job, subscription)
        if self._client is None:
            await self.start()
        assert self._client is not None
        try:
            response = await self._client.post(endpoint, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise DeliveryError(f"Web Push to {endpoint}: {type(exc).__name__} {exc}", retriable=True) from exc
        status = response.status_code
        if status in (200, 201, 202):
            return
        if status in (404, 410):
            raise SubscriptionGone(f"Web Push {endpoint} answered {status}")
        raise status_error(f"Web Push to {endpoint}", response, response.text[:200])


class WebPushProvider(PushFanOutProvider):
    """Web Push only: one send per Web Push subscription of the recipient."""

    def __init__(
        self,
        sender: WebPushSender,
        store: PushSubscriptionStore | None = None,
        policy: RetryPolicy | None = None,
        **options: Any,
    ) -> None:
        super().__init__([sender], store, policy, **options)
