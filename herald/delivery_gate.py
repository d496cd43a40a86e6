"""Between the outbox and a provider: who the recipient is and whether a delivery goes now, later, into a digest or
not at all (herald/preferences.py decides; this module gathers what the decision needs from Redis).

Reads per batch: one HMGET of contacts, one round of preference GETs, one round of hourly counters. A user's
preferences that no longer validate (written by an older version, say) fall back to the defaults with a warning
rather than stopping delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import orjson
import redis.asyncio as aioredis

from herald import keys
from herald.channels.base import DeliveryJob
from herald.contacts import ContactBook, recipient
from herald.preferences import (
    Decision,
    DeliveryContext,
    Preferences,
    PreferencesError,
    Verdict,
    decide,
    parse_preferences,
)
from herald.push_subscriptions import PushSubscriptionStore

log = logging.getLogger(__name__)
Clock = Callable[[], float]  # epoch seconds


def rate_key(user_id: str, channel: str, hour: int) -> str:
    return keys.user_key(user_id, f"rate:{channel}:{hour}")


class DeliveryGate:
    def __init__(
        self,
        client: aioredis.Redis,
        channel: str,
        *,
        clock: Clock,
        hourly_limit: int | None,
        digest_below: str,
        contacts: ContactBook | None = None,
        push_subscriptions: PushSubscriptionStore | None = None,
    ) -> None:
        self._redis = client
        self._channel = channel
        self._clock = clock
        self._hourly_limit = hourly_limit
        self._digest_below = digest_below
        self._contacts = contacts or ContactBook(client)
        self._push = push_subscriptions

    async def prepare(self, jobs: Sequence[DeliveryJob]) -> list[tuple[DeliveryJob, Decision]]:
        """Each job with its recipient filled in, and the verdict for it."""
        if not jobs:
            return []
        users = list(dict.fromkeys(job.user_id for job in jobs))
        contacts = await self._contacts.lookup(users)
        push = await self._push.list_for(users) if self._push is not None else {}
        preferences = await self._preferences(users)
        now = datetime.fromtimestamp(self._clock(), UTC)
        hour = int(self._clock() // 3600)
        sent = await self._sent_this_hour(users, hour)
        decided = []
        for job in jobs:
            contact = contacts.get(job.user_id)
            ready = replace(job, recipient=recipient(job.user_id, contact, push=push.get(job.user_id, ())))
            # The hour's sends are a set of delivery ids, not a counter: an entry that comes back because its
            # owner died after letting it through is recognised and sent again (the receiver drops the repeat by
            # its idempotency key), instead of being folded into a digest and reaching the user twice.
            already_let_through = job.delivery_id in sent[job.user_id]
            context = DeliveryContext(
                now=now,
                preferences=preferences[job.user_id],
                user_timezone=contact.timezone if contact else None,
                sent_this_hour=len(sent[job.user_id]),
                hourly_limit=None if already_let_through else self._hourly_limit,
                digest_below=self._digest_below,
            )
            decision = decide(self._channel, job.payload, context)
            if decision.verdict is Verdict.SEND and not job.is_digest:
                sent[job.user_id].add(job.delivery_id)  # later jobs of this batch see the ones before them
            decided.append((ready, decision))
        await self._count_sends(decided, hour)
        return decided

    async def _preferences(self, users: list[str]) -> dict[str, Preferences]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for user in users:
                pipe.get(keys.preferences_key(user))
            raw = await pipe.execute()
        found = {}
        for user, value in zip(users, raw, strict=True):
            try:
                found[user] = parse_preferences(orjson.loads(value)) if value else Preferences()
            except (PreferencesError, orjson.JSONDecodeError) as exc:
                log.warning("preferences of %s do not validate (%s); using the defaults", user, exc)
                found[user] = Preferences()
        return found

    async def _sent_this_hour(self, users: list[str], hour: int) -> dict[str, set[str]]:
        if self._hourly_limit is None:
            return {user: set() for user in users}
        async with self._redis.pipeline(transaction=False) as pipe:
            for user in users:
                pipe.smembers(rate_key(user, self._channel, hour))
            raw = await pipe.execute()
        return {
            user: {m.decode() if isinstance(m, bytes) else str(m) for m in members}
            for user, members in zip(users, raw, strict=True)
        }

    async def _count_sends(self, decided: list[tuple[DeliveryJob, Decision]], hour: int) -> None:
        if self._hourly_limit is None:
            return
        sent: dict[str, list[str]] = {}
        for job, decision in decided:
            if decision.verdict is Verdict.SEND and not job.is_digest:
                sent.setdefault(job.user_id, []).append(job.delivery_id)
        if not sent:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for user, ids in sent.items():
                key = rate_key(user, self._channel, hour)
                pipe.sadd(key, *ids)
                pipe.expire(key, 2 * 3600)
            await pipe.execute()
