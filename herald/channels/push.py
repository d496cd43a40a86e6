"""The PUSH channel: to a push service that exists already (through a Kafka topic), or to the devices directly
(Web Push to browsers, FCM to native apps), whichever this deployment configured."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from herald.channels.base import ChannelProvider, RetryPolicy
from herald.channels.fcm import FcmSender, load_credentials
from herald.channels.push_fanout import PushFanOutProvider, PushSender
from herald.channels.push_forward import PushForwardProvider
from herald.channels.webpush import WebPushSender, load_vapid
from herald.config import Settings
from herald.push_subscriptions import PushSubscriptionStore
from herald.redis_pool import redis_client

REQUIRED_SETTINGS = "vapid_private_key_file + vapid_subject, or fcm_service_account_file, or push_forward_topic"


class PushProvider(PushFanOutProvider):
    """Every push subscription of the recipient, each through the sender of its protocol.

    With `redis_url` it opens its own store on start, so building a provider to ask whether the channel is
    configured (`herald doctor`) opens no connection.
    """

    def __init__(
        self,
        senders: Sequence[PushSender],
        *,
        redis_url: str | None = None,
        redis_timeout_s: float = 10.0,
        **options: Any,
    ) -> None:
        super().__init__(senders, **options)
        self._redis_url = redis_url
        self._redis_timeout_s = redis_timeout_s
        self._redis: aioredis.Redis | None = None

    async def start(self) -> None:
        if self.store is None and self._redis_url is not None:
            # Gone subscriptions are removed from the Redis the delivery actor reads them from.
            self._redis = redis_client(
                self._redis_url, socket_connect_timeout=self._redis_timeout_s, socket_timeout=self._redis_timeout_s
            )
            self.store = PushSubscriptionStore(self._redis)
        await super().start()

    async def close(self) -> None:
        await super().close()
        if self._redis is not None:
            redis, self._redis, self.store = self._redis, None, None
            await redis.aclose()


def senders_from_settings(settings: Settings) -> list[PushSender]:
    senders: list[PushSender] = []
    if settings.vapid_private_key_file is not None and settings.vapid_subject:
        senders.append(
            WebPushSender(
                load_vapid(settings.vapid_private_key_file),
                settings.vapid_subject,
                timeout_s=settings.delivery_timeout_s,
            )
        )
    if settings.fcm_service_account_file is not None:
        credentials, project_id = load_credentials(settings.fcm_service_account_file)
        senders.append(
            FcmSender(credentials, project_id, endpoint=settings.fcm_endpoint, timeout_s=settings.delivery_timeout_s)
        )
    return senders


def from_settings(settings: Settings, policy: RetryPolicy, **options: Any) -> ChannelProvider | None:
    if settings.push_forward_topic:
        return PushForwardProvider(settings, settings.push_forward_topic, policy, **options)
    senders = senders_from_settings(settings)
    if not senders:
        return None
    return PushProvider(
        senders, redis_url=settings.redis_url, redis_timeout_s=settings.connect_timeout_s, policy=policy, **options
    )
