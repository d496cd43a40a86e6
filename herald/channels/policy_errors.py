"""Delivery refusals that are a policy decision, not a failure: callers count them as skipped."""

from __future__ import annotations

from herald.errors import DeliveryError


class Skipped(DeliveryError):
    """The provider chose not to send (the job is outside its channel's policy); trying again would not help."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retriable=False)


class BelowMinimumPriority(Skipped):
    """The notification ranks below the channel's minimum priority (sms_min_priority)."""
