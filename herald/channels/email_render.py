"""The mail a delivery becomes: multipart/alternative with a plain-text and an HTML part, built without I/O so
it is tested on its own (the provider in herald/channels/email.py only sends it).

The HTML comes from Jinja2 templates with autoescaping on: actor names, texts and titles are other users'
input, and a name like `<script>` must reach the reader as text, never as markup. The plain-text part is built
here in Python because it must show the very same strings unescaped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

from herald.channels.base import DeliveryJob, Recipient

SUBJECT_MAX_CHARS = 120
# A digest of a very busy day would otherwise make a mail of hundreds of entries that nobody reads to the end.
DIGEST_MAX_ITEMS = 50
DELIVERY_ID_HEADER = "X-Herald-Delivery-Id"

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("herald.channels", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a misspelt variable fails the tests instead of rendering blank
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Entry:
    """One notification as the mail shows it."""

    text: str
    when: str  # "" when the body carries no usable time
    title: str | None
    message: str | None
    action_url: str | None
    avatars: tuple[tuple[str, str], ...]  # (name, url), http(s) only


def one_line(text: str) -> str:
    """Whitespace, line breaks included, collapsed: headers may not carry CR/LF."""
    return " ".join(text.split())


def truncate(text: str, limit: int = SUBJECT_MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def message_id(delivery_id: str) -> str:
    """The same for every attempt of one delivery, so a receiver (or a mailbox) can spot a repeat."""
    return f"<{hashlib.sha256(delivery_id.encode()).hexdigest()[:32]}@herald>"


def _web_url(value: object) -> str | None:
    """Only http(s): autoescaping does not stop a `javascript:` link."""
    if isinstance(value, str) and urlsplit(value).scheme in {"http", "https"}:
        return value
    return None


def _zone(recipient: Recipient | None) -> ZoneInfo | None:
    if recipient is None or not recipient.timezone:
        return None
    try:
        return ZoneInfo(recipient.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _when(body: dict[str, Any]) -> datetime | None:
    return _parse_time(body.get("updatedAt")) or _parse_time(body.get("createdAt"))


def _format_time(moment: datetime | None, zone: ZoneInfo | None) -> str:
    if moment is None:
        return ""
    if zone is None:
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _optional_text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _entry(body: dict[str, Any], zone: ZoneInfo | None) -> Entry:
    text = _optional_text(body.get("text")) or _optional_text(body.get("title")) or "New notification"
    title = _optional_text(body.get("title"))
    message = _optional_text(body.get("message"))
    avatars = tuple(
        (str(actor.get("name") or ""), url)
        for actor in body.get("actors") or []
        if isinstance(actor, dict) and (url := _web_url(actor.get("avatarUrl")))
    )
    return Entry(
        text=text,
        when=_format_time(_when(body), zone),
        # The grouped text usually repeats the title or message; show them only when they add something.
        title=title if title and title != text else None,
        message=message if message and message != text else None,
        action_url=_web_url(body.get("actionUrl")),
        avatars=avatars,
    )


def _newest_first(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(items, key=lambda body: _when(body) or oldest, reverse=True)


def digest_count(job: DeliveryJob) -> int:
    digest = job.payload.get("digest")
    count = digest.get("count") if isinstance(digest, dict) else None
    return count if isinstance(count, int) and count >= 0 else len(job.digest_items())


def digest_subject(count: int) -> str:
    return f"You have {count} new notification{'' if count == 1 else 's'}"


def subject_of(job: DeliveryJob) -> str:
    if job.is_digest:
        return digest_subject(digest_count(job))
    return truncate(one_line(_entry(job.payload, None).text))


def _entry_text(entry: Entry) -> list[str]:
    lines = [entry.text]
    lines += [part for part in (entry.title, entry.message) if part]
    if entry.action_url:
        lines.append(f"Open: {entry.action_url}")
    return lines


def _plain_notification(entry: Entry) -> str:
    lines = _entry_text(entry)
    if entry.when:
        lines.append(entry.when)
    return "\n\n".join(lines) + "\n"


def _plain_digest(heading: str, entries: list[Entry], more: int) -> str:
    lines = [heading, ""]
    for entry in entries:
        first, *rest = _entry_text(entry)
        lines.append(f"- {entry.when}  {first}" if entry.when else f"- {first}")
        lines += [f"  {part}" for part in rest]
    if more:
        lines += ["", f"... and {more} more in the app."]
    return "\n".join(lines) + "\n"


def _digest_heading(job: DeliveryJob) -> str:
    digest = job.payload.get("digest")
    period = digest.get("period") if isinstance(digest, dict) else None
    count = digest_count(job)
    if period in {"hourly", "daily"}:
        return f"Your {period} digest: {count} new notification{'' if count == 1 else 's'}"
    return digest_subject(count)


def _bodies(job: DeliveryJob, zone: ZoneInfo | None) -> tuple[str, str]:
    if job.is_digest:
        items = _newest_first([i for i in job.digest_items() if isinstance(i, dict)])
        shown = [_entry(body, zone) for body in items[:DIGEST_MAX_ITEMS]]
        more = max(0, digest_count(job) - len(shown))
        heading = _digest_heading(job)
        html = _ENV.get_template("digest.html").render(heading=heading, entries=shown, more=more)
        return _plain_digest(heading, shown, more), html
    entry = _entry(job.payload, zone)
    html = _ENV.get_template("notification.html").render(subject=subject_of(job), entry=entry)
    return _plain_notification(entry), html


def recipient_address(recipient: Recipient) -> Address:
    """The To address; the display name is encoded (RFC 2047) when the message is serialized."""
    if not recipient.email:
        raise ValueError(f"user {recipient.user_id} has no email address")
    try:
        return Address(display_name=one_line(recipient.name or ""), addr_spec=recipient.email)
    except (ValueError, HeaderParseError) as exc:
        # The address stays out of the reason: reasons end up in receipts and the DLQ.
        raise ValueError(f"user {recipient.user_id} has no usable email address") from exc


def render_email(job: DeliveryJob, *, sender: str, now: datetime | None = None) -> EmailMessage:
    """The mail for `job`, addressed to its recipient (who must have an email address)."""
    if job.recipient is None:
        raise ValueError(f"user {job.user_id} has no email address")
    text, html = _bodies(job, _zone(job.recipient))
    mail = EmailMessage()
    mail["Subject"] = subject_of(job)
    mail["From"] = sender
    mail["To"] = recipient_address(job.recipient)
    mail["Date"] = format_datetime(now or datetime.now(UTC))
    mail["Message-ID"] = message_id(job.delivery_id)
    mail[DELIVERY_ID_HEADER] = one_line(job.delivery_id)
    mail.set_content(text)
    mail.add_alternative(html, subtype="html")
    return mail
