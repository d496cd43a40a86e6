"""The push subscriptions of each user: Web Push subscriptions as a browser's PushSubscription.toJSON() gives them,
and FCM registration tokens of native apps.

One Redis hash per user (`keys.user_key(user_id, "push")`, so it shares the user's hash tag), field = the
subscription's identity (its endpoint, or "fcm:<token>"), value = the normalized subscription as JSON. Adding
the same subscription again overwrites it: browsers re-send theirs on every page load.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric import ec
from redis.exceptions import RedisError

from herald import keys
from herald.errors import HeraldError, StoreError

log = logging.getLogger(__name__)

FCM_PREFIX = "fcm:"
MAX_ENDPOINT_CHARS = 2048
MAX_FCM_TOKEN_CHARS = 4096
# A bound on what one account can make every notification fan out to; browsers that lost their subscription
# without telling us are removed when their push service answers 404/410.
MAX_SUBSCRIPTIONS_PER_USER = 32
_FCM_TOKEN = re.compile(r"[A-Za-z0-9_:.\-]+")
# Plain http only for a push service on this machine (development, tests); a real push service is https.
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class PushSubscriptionError(HeraldError, ValueError):
    """A push subscription is malformed; `field` names the offending field when one is to blame."""

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)


def _b64url_bytes(value: Any, field: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise PushSubscriptionError("must be a non-empty base64url string", field=field)
    try:
        # Browsers send unpadded base64url; some libraries pad it.
        return base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise PushSubscriptionError("is not base64url", field=field) from None


def _validate_endpoint(endpoint: Any) -> str:
    if not isinstance(endpoint, str) or not endpoint:
        raise PushSubscriptionError("must be a non-empty URL", field="endpoint")
    if len(endpoint) > MAX_ENDPOINT_CHARS:
        raise PushSubscriptionError(f"longer than {MAX_ENDPOINT_CHARS} characters", field="endpoint")
    parts = urlsplit(endpoint)
    if not parts.hostname:
        raise PushSubscriptionError("has no host", field="endpoint")
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS):
        raise PushSubscriptionError("must be an https URL", field="endpoint")
    return endpoint


def _validate_web_push(raw: Mapping[str, Any]) -> dict[str, Any]:
    endpoint = _validate_endpoint(raw.get("endpoint"))
    sub_keys = raw.get("keys")
    if not isinstance(sub_keys, Mapping):
        raise PushSubscriptionError("must be an object with p256dh and auth", field="keys")
    p256dh = _b64url_bytes(sub_keys.get("p256dh"), "keys.p256dh")
    if len(p256dh) != 65 or p256dh[0] != 0x04:
        raise PushSubscriptionError("must be a 65-byte uncompressed P-256 point", field="keys.p256dh")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), p256dh)
    except ValueError:
        raise PushSubscriptionError("is not a point on P-256", field="keys.p256dh") from None
    auth = _b64url_bytes(sub_keys.get("auth"), "keys.auth")
    if len(auth) != 16:
        raise PushSubscriptionError("must be 16 bytes", field="keys.auth")
    expiration = raw.get("expirationTime")
    if expiration is not None and (isinstance(expiration, bool) or not isinstance(expiration, int | float)):
        raise PushSubscriptionError("must be null or epoch milliseconds", field="expirationTime")
    normalized: dict[str, Any] = {
        "endpoint": endpoint,
        "keys": {"p256dh": sub_keys["p256dh"], "auth": sub_keys["auth"]},
    }
    if expiration is not None:
        normalized["expirationTime"] = expiration
    return normalized


def _validate_fcm(raw: Mapping[str, Any]) -> dict[str, Any]:
    token = raw.get("fcmToken")
    if not isinstance(token, str) or not token:
        raise PushSubscriptionError("must be a non-empty string", field="fcmToken")
    if len(token) > MAX_FCM_TOKEN_CHARS:
        raise PushSubscriptionError(f"longer than {MAX_FCM_TOKEN_CHARS} characters", field="fcmToken")
    if not _FCM_TOKEN.fullmatch(token):
        raise PushSubscriptionError("has characters a registration token does not have", field="fcmToken")
    return {"fcmToken": token}


def validate_subscription(raw: Any) -> dict[str, Any]:
    """The normalized subscription, or PushSubscriptionError saying what is wrong with it."""
    if not isinstance(raw, Mapping):
        raise PushSubscriptionError("a push subscription must be an object")
    has_endpoint, has_token = "endpoint" in raw, "fcmToken" in raw
    if has_endpoint and has_token:
        raise PushSubscriptionError("either a Web Push subscription (endpoint) or an FCM token, not both")
    if has_token:
        return _validate_fcm(raw)
    if has_endpoint:
        return _validate_web_push(raw)
    raise PushSubscriptionError("needs an endpoint and keys (Web Push) or an fcmToken (FCM)")


def is_fcm(subscription: Mapping[str, Any]) -> bool:
    return "fcmToken" in subscription


def subscription_key(subscription: Mapping[str, Any]) -> str:
    """The identity of a subscription: its hash field, and what a provider names when the service drops it."""
    if is_fcm(subscription):
        return f"{FCM_PREFIX}{subscription['fcmToken']}"
    return str(subscription["endpoint"])


class PushSubscriptionStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def add(self, user_id: str, subscription: Any) -> dict[str, Any]:
        """Validate and store (or refresh) a subscription; returns it normalized."""
        normalized = validate_subscription(subscription)
        field = subscription_key(normalized)
        key = keys.user_key(user_id, "push")
        try:
            if not await self._redis.hexists(key, field) and await self._redis.hlen(key) >= MAX_SUBSCRIPTIONS_PER_USER:
                raise PushSubscriptionError(
                    f"user {user_id} has {MAX_SUBSCRIPTIONS_PER_USER} push subscriptions already"
                )
            await self._redis.hset(key, field, orjson.dumps(normalized))
        except RedisError as exc:
            raise StoreError(f"storing a push subscription of {user_id}: {exc}") from exc
        return normalized

    async def remove(self, user_id: str, subscription: Mapping[str, Any] | str) -> bool:
        """Forget a subscription (given as itself or as its key); True when it was stored."""
        if not isinstance(subscription, str) and "endpoint" not in subscription and not is_fcm(subscription):
            # A client's unregister_push with any other object (found by fuzzing the gateway: a KeyError escaped
            # the handler and the client never got its ack).
            raise PushSubscriptionError("needs the endpoint (Web Push) or the fcmToken (FCM) to forget")
        field = subscription if isinstance(subscription, str) else subscription_key(subscription)
        try:
            return bool(await self._redis.hdel(keys.user_key(user_id, "push"), field))
        except RedisError as exc:
            raise StoreError(f"removing a push subscription of {user_id}: {exc}") from exc

    async def list_for(self, user_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """The subscriptions of each user (an empty list for a user without any), in one round trip."""
        users = list(dict.fromkeys(user_ids))
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id in users:
                    pipe.hvals(keys.user_key(user_id, "push"))
                replies = await pipe.execute()
        except RedisError as exc:
            raise StoreError(f"reading push subscriptions: {exc}") from exc
        result: dict[str, list[dict[str, Any]]] = {}
        for user_id, values in zip(users, replies, strict=True):
            subscriptions = []
            for value in values:
                try:
                    subscriptions.append(validate_subscription(orjson.loads(value)))
                except (orjson.JSONDecodeError, PushSubscriptionError) as exc:
                    # One bad value (written by hand, or by an older version) must not cost the user every device.
                    log.warning("skipping an unreadable push subscription of %s: %s", user_id, exc)
            result[user_id] = subscriptions
        return result
