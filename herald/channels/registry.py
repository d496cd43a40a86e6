"""Which provider serves which external channel, and whether this deployment configured it.

Adding a provider is one module with `from_settings(settings, policy) -> ChannelProvider | None` (None when its
settings are missing) and `REQUIRED_SETTINGS` (what `herald doctor` tells an operator to set), plus one line
here. IN_APP is not listed: commits push it live to the gateways (docs/architecture.md, "The live path").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from herald.channels.base import ChannelProvider, RetryPolicy
from herald.config import Settings


class ProviderModule(Protocol):
    REQUIRED_SETTINGS: str

    def from_settings(self, settings: Settings, policy: RetryPolicy) -> ChannelProvider | None: ...


# channel -> the module of its provider
PROVIDER_MODULES: dict[str, str] = {
    "EMAIL": "herald.channels.email",
    "SMS": "herald.channels.sms",
    "WEBHOOK": "herald.channels.webhook",
    "PUSH": "herald.channels.push",
}


@dataclass(frozen=True)
class ChannelStatus:
    channel: str
    configured: bool
    required: str  # the settings that turn it on


def _module(channel: str) -> ProviderModule:
    return cast(ProviderModule, importlib.import_module(PROVIDER_MODULES[channel]))


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(max_attempts=settings.delivery_max_attempts)


def build_provider(channel: str, settings: Settings) -> ChannelProvider | None:
    """The provider of `channel` with this deployment's settings, or None when they are missing."""
    if channel not in PROVIDER_MODULES:
        raise ValueError(f"no provider for channel {channel}; known: {', '.join(sorted(PROVIDER_MODULES))}")
    return _module(channel).from_settings(settings, retry_policy(settings))


def required_settings(channel: str) -> str:
    return _module(channel).REQUIRED_SETTINGS


def channel_statuses(settings: Settings) -> list[ChannelStatus]:
    return [
        ChannelStatus(channel, build_provider(channel, settings) is not None, _module(channel).REQUIRED_SETTINGS)
        for channel in PROVIDER_MODULES
    ]


def configured_channels(settings: Settings) -> tuple[str, ...]:
    """The external channels this deployment delivers; the aggregators queue outbox entries for these only."""
    return tuple(s.channel for s in channel_statuses(settings) if s.configured)


ProviderFactory = Callable[[Settings, RetryPolicy], ChannelProvider | None]
