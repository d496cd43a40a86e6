"""WEBHOOK and SMS are configured exactly when their settings are present (registry.build_provider)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from herald.channels import sms, webhook
from herald.channels.base import DeliveryJob
from herald.channels.registry import build_provider
from herald.channels.sms import SmsProvider, job_priority
from herald.channels.webhook import WebhookProvider
from herald.config import Settings

UNSET: dict[str, Any] = {
    "webhook_url": None,
    "webhook_secret": None,
    "sms_url": None,
    "sms_account": None,
    "sms_token": None,
    "sms_from": None,
}
SMS_SET: dict[str, Any] = {
    "sms_url": "https://sms.example/Accounts/{account}/Messages.json",
    "sms_account": "AC1",
    "sms_token": SecretStr("tok"),
    "sms_from": "+15005550006",
}


def settings(**values: Any) -> Settings:
    return Settings(**{**UNSET, **values})


def test_webhook_needs_only_the_secret() -> None:
    assert build_provider("WEBHOOK", settings()) is None
    assert build_provider("WEBHOOK", settings(webhook_url="https://hooks.example/h")) is None
    assert isinstance(build_provider("WEBHOOK", settings(webhook_secret=SecretStr("s"))), WebhookProvider)
    assert "webhook_secret" in webhook.REQUIRED_SETTINGS


@pytest.mark.parametrize("missing", sorted(SMS_SET))
def test_sms_needs_all_four(missing: str) -> None:
    assert build_provider("SMS", settings(**{**SMS_SET, missing: None})) is None


def test_sms_configured_and_its_retry_policy_comes_from_settings() -> None:
    provider = build_provider("SMS", settings(**SMS_SET, delivery_max_attempts=7))
    assert isinstance(provider, SmsProvider)
    assert provider.policy.max_attempts == 7
    assert all(name in sms.REQUIRED_SETTINGS for name in SMS_SET)


def test_unknown_priorities_fall_back_to_normal() -> None:
    assert job_priority(DeliveryJob("d", "u", {"priority": "BOGUS"})) == "NORMAL"
    assert job_priority(DeliveryJob("d", "u", {"digest": {"count": 0, "items": []}})) == "NORMAL"
    with pytest.raises(ValueError, match="unknown priority"):
        SmsProvider(url="http://x", account="a", token="t", sender="s", min_priority="MEDIUM")
