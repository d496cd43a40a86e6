"""A user's delivery preferences and the rule that decides, per delivery, whether it goes now, later, into a
digest, or not at all (docs/channels.md, "Policy").

Preferences arrive on the compacted topic `user-preferences` (key = user id), as PREFERENCES_UPDATED events, or
through `herald prefs set`; they are stored per user and read by the delivery actors. The decision is pure: the
clock, the user's time zone and the rate counter are passed in, so every branch is unit-tested without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from herald.errors import HeraldError

EXTERNAL_CHANNELS = ("PUSH", "EMAIL", "SMS", "WEBHOOK")
# Quiet hours hold back what would wake or distract a person; a webhook is a machine and is never deferred.
DEFERRABLE_CHANNELS = frozenset({"PUSH", "EMAIL", "SMS"})
PRIORITY_ORDER = {"LOW": 0, "NORMAL": 1, "HIGH": 2, "URGENT": 3}
ALL_TYPES = "*"
DAILY_DIGEST_AT = time(8, 0)  # local time of the user


class PreferencesError(HeraldError, ValueError):
    """Preferences that do not validate (CLI, topic or event); the message names the field."""


def zone_named(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)") from None


# An IANA zone name, checked where preferences enter (CLI, topic, events).
ZoneName = Annotated[str, AfterValidator(lambda name: zone_named(name).key)]


class QuietHours(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time
    end: time
    timezone: str | None = None  # else the preferences' or the directory's, else UTC

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            zone_named(value)
        return value

    def ends_after(self, now: datetime, zone: ZoneInfo) -> datetime | None:
        """When the quiet period `now` falls in ends (UTC), or None when `now` is not quiet."""
        local = now.astimezone(zone)
        start, end = self.start, self.end
        if start == end:
            return None
        today_start = datetime.combine(local.date(), start, zone)
        today_end = datetime.combine(local.date(), end, zone)
        if start < end:  # 13:00-15:00
            inside = today_start <= local < today_end
            ends = today_end
        else:  # 22:00-07:00 spans midnight
            inside = local >= today_start or local < today_end
            ends = today_end if local < today_end else today_end + timedelta(days=1)
        if not inside:
            return None
        # combine() with a zone picks the wall-clock time; normalising through UTC handles DST gaps.
        return ends.astimezone(UTC)


class Preferences(BaseModel):
    """What a user wants. Unknown fields are ignored so the application may store more beside them."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    # notification type (or "*") -> channel -> on/off; a type's own entry wins over "*"; unset means on.
    channels: dict[str, dict[str, bool]] = Field(default_factory=dict)
    quiet_hours: QuietHours | None = Field(default=None, alias="quietHours")
    digest: Literal["hourly", "daily"] = "hourly"
    muted_targets: frozenset[str] = Field(default_factory=frozenset, alias="mutedTargets")  # "POST:42"
    timezone: ZoneName | None = None

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: dict[str, dict[str, bool]]) -> dict[str, dict[str, bool]]:
        for switches in value.values():
            unknown = set(switches) - {*EXTERNAL_CHANNELS, "IN_APP"}
            if unknown:
                known = ", ".join(("IN_APP", *EXTERNAL_CHANNELS))
                raise ValueError(f"unknown channel {sorted(unknown)[0]!r}; known: {known}")
        return value

    def channel_on(self, notification_type: str, channel: str) -> bool:
        for key in (notification_type, ALL_TYPES):
            switch = self.channels.get(key, {}).get(channel)
            if switch is not None:
                return switch
        return True

    def zone(self, fallback: str | None) -> ZoneInfo:
        quiet_zone = self.quiet_hours.timezone if self.quiet_hours else None
        for name in (quiet_zone, self.timezone, fallback):
            if name:
                try:
                    return zone_named(name)
                except ValueError:
                    continue  # a directory entry with a bad zone must not stop delivery
        return ZoneInfo("UTC")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)


def parse_preferences(raw: Any) -> Preferences:
    """Validate preferences from any source; PreferencesError names what is wrong."""
    try:
        return Preferences.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'preferences'}: {e['msg']}" for e in exc.errors())
        raise PreferencesError(f"invalid preferences: {problems}") from None


class Verdict(StrEnum):
    SEND = "SEND"
    SUPPRESS = "SUPPRESS"  # the user does not want it on this channel: a receipt says so, nothing is sent
    DEFER = "DEFER"  # quiet hours: sent once they end
    DIGEST = "DIGEST"  # gathered into the user's next digest on this channel


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str = ""
    at: datetime | None = None  # DEFER: when quiet hours end; DIGEST: when the digest goes out


@dataclass(frozen=True)
class DeliveryContext:
    """What the decision needs beyond the job: all of it injected, nothing read here."""

    now: datetime
    preferences: Preferences
    user_timezone: str | None = None  # from the directory
    sent_this_hour: int = 0  # on this channel, counted before this delivery
    hourly_limit: int | None = None  # on this channel; None = no limit
    digest_below: str = "HIGH"  # EMAIL below this priority waits for the digest


def next_digest_at(preferences: Preferences, now: datetime, user_timezone: str | None) -> datetime:
    """Hourly digests leave at the next full hour; daily ones at 08:00 in the user's zone."""
    if preferences.digest == "hourly":
        return (now.astimezone(UTC) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    zone = preferences.zone(user_timezone)
    local = now.astimezone(zone)
    candidate = datetime.combine(local.date(), DAILY_DIGEST_AT, zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), DAILY_DIGEST_AT, zone)
    return candidate.astimezone(UTC)


def decide(channel: str, payload: dict[str, Any], context: DeliveryContext) -> Decision:
    """The verdict for one delivery of `payload` (a notification body or a digest) on `channel`."""
    prefs = context.preferences
    is_digest = isinstance(payload.get("digest"), dict)
    notification_type = str(payload.get("type", ""))
    if not is_digest:
        if not prefs.channel_on(notification_type, channel):
            return Decision(Verdict.SUPPRESS, f"{channel} is off for {notification_type or 'this type'}")
        target = payload.get("target")
        if isinstance(target, dict) and f"{target.get('type')}:{target.get('id')}" in prefs.muted_targets:
            return Decision(Verdict.SUPPRESS, f"target {target.get('type')}:{target.get('id')} is muted")
        if payload.get("priority") == "URGENT":
            return Decision(Verdict.SEND, "urgent")
    if channel in DEFERRABLE_CHANNELS and prefs.quiet_hours is not None:
        ends = prefs.quiet_hours.ends_after(context.now, prefs.zone(context.user_timezone))
        if ends is not None:
            return Decision(Verdict.DEFER, "quiet hours", ends)
    if is_digest:
        return Decision(Verdict.SEND, "digest")
    digest_at = next_digest_at(prefs, context.now, context.user_timezone)
    if context.hourly_limit is not None and context.sent_this_hour >= context.hourly_limit:
        return Decision(Verdict.DIGEST, f"over {context.hourly_limit} per hour on {channel}", digest_at)
    priority = PRIORITY_ORDER.get(str(payload.get("priority", "NORMAL")), 1)
    if channel == "EMAIL" and priority < PRIORITY_ORDER[context.digest_below]:
        return Decision(Verdict.DIGEST, f"{prefs.digest} digest", digest_at)
    return Decision(Verdict.SEND)
