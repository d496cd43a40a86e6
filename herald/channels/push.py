"""The PUSH channel: to a push service that exists already (through a Kafka topic), or to the devices directly
(Web Push to browsers, FCM to native apps), whichever this deployment configured."""

from __future__ import annotations

from typing import Any

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
    """Every push subscription of the recipient, each through the sender of its protocol."""


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
    # The provider's own client: gone subscriptions are removed from the same Redis the delivery actor reads.
    redis = redis_client(settings.redis_url, socket_connect_timeout=settings.connect_timeout_s)
    return PushProvider(senders, PushSubscriptionStore(redis), policy, on_close=redis.aclose, **options)
