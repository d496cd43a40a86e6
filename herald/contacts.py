"""Where users are reached outside the app: email, phone, locale, time zone and webhook URL per user.

Kept apart from the directory's names (herald/directory.py), which the aggregators read on the hot path: contact
fields are only read by the delivery actors, and are personal data an operator may want to guard differently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis
from redis.typing import EncodableT

from herald.channels.base import Recipient
from herald.preferences import zone_named

CONTACTS_KEY = "herald:contacts"
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
# Import-file spelling -> field name
FIELDS = {"email": "email", "phone": "phone", "locale": "locale", "timezone": "timezone", "webhookUrl": "webhook_url"}


@dataclass(frozen=True)
class Contact:
    user_id: str
    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    timezone: str | None = None
    webhook_url: str | None = None

    def is_empty(self) -> bool:
        return not any((self.email, self.phone, self.locale, self.timezone, self.webhook_url))


def contact_from_record(user_id: str, record: Mapping[str, Any]) -> Contact:
    """The contact fields of an import row; ValueError names a bad one."""
    values: dict[str, str | None] = {}
    for spelling, field in FIELDS.items():
        raw = record.get(spelling)
        if raw is None or raw == "":
            continue
        if not isinstance(raw, str):
            raise ValueError(f"{spelling} must be a string")
        values[field] = raw.strip()
    if values.get("email") and not EMAIL.match(values["email"] or ""):
        raise ValueError(f"email {values['email']!r} is not an address")
    if values.get("phone") and not E164.match(values["phone"] or ""):
        raise ValueError(f"phone {values['phone']!r} is not in E.164 form (+4915112345678)")
    if values.get("timezone"):
        zone_named(values["timezone"] or "")
    if values.get("webhook_url"):
        parts = urlsplit(values["webhook_url"] or "")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"webhookUrl {values['webhook_url']!r} is not an http(s) URL")
    return Contact(user_id, **values)


class ContactBook:
    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client

    async def save(self, contacts: Iterable[Contact]) -> int:
        mapping: dict[EncodableT, EncodableT] = {
            c.user_id: orjson.dumps({k: v for k, v in asdict(c).items() if v is not None and k != "user_id"})
            for c in contacts
            if not c.is_empty()
        }
        if mapping:
            await self._redis.hset(CONTACTS_KEY, mapping=mapping)
        return len(mapping)

    async def lookup(self, user_ids: Sequence[str]) -> dict[str, Contact]:
        if not user_ids:
            return {}
        raw = await self._redis.hmget(CONTACTS_KEY, list(user_ids))
        found = {}
        for user_id, value in zip(user_ids, raw, strict=True):
            if value is not None:
                found[user_id] = Contact(user_id, **orjson.loads(value))
        return found


def recipient(user_id: str, contact: Contact | None, name: str | None = None, push: Sequence[Any] = ()) -> Recipient:
    if contact is None:
        return Recipient(user_id, name=name, push_subscriptions=tuple(push))
    return Recipient(
        user_id,
        name=name,
        email=contact.email,
        phone=contact.phone,
        locale=contact.locale,
        timezone=contact.timezone,
        webhook_url=contact.webhook_url,
        push_subscriptions=tuple(push),
    )
