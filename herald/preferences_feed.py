"""The compacted topic `user-preferences` -> each user's stored preferences.

Key = user id, value = the preferences as JSON, or a tombstone (no value) to forget them. Compaction keeps the
latest value per user, so a new consumer group rebuilds every user's preferences from the topic. A record that
does not validate goes to the dead-letter topic with the reason, and the user's stored preferences stay as they
were. Offsets are committed only after the batch is stored (at-least-once; writing the same value twice is
harmless).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from herald import keys
from herald.preferences import PreferencesError, parse_preferences

log = logging.getLogger(__name__)

PREFERENCES_GROUP = "herald-preferences"
DeadLetter = Callable[[Any, str], Awaitable[None]]  # (record, reason)


@dataclass
class FeedCounters:
    stored: int = 0
    forgotten: int = 0
    dead_lettered: int = 0


class PreferencesFeed:
    def __init__(self, client: aioredis.Redis, dead_letter: DeadLetter) -> None:
        self._redis = client
        self._dead_letter = dead_letter
        self.counters = FeedCounters()

    async def apply(self, records: Sequence[Any]) -> None:
        """Store a batch of records (aiokafka ConsumerRecords, in offset order); returns once all are stored."""
        writes: dict[str, bytes | None] = {}  # the last record of a user in the batch wins, as compaction would
        for record in records:
            user_id = record.key.decode(errors="replace") if record.key else ""
            if not user_id:
                await self._reject(record, "a preferences record needs the user id as its key")
                continue
            if record.value is None:
                writes[user_id] = None
                continue
            try:
                prefs = parse_preferences(orjson.loads(record.value))
            except orjson.JSONDecodeError as exc:
                await self._reject(record, f"preferences of {user_id} are not valid JSON: {exc}")
                continue
            except PreferencesError as exc:
                await self._reject(record, f"preferences of {user_id}: {exc}")
                continue
            writes[user_id] = orjson.dumps(prefs.to_json())
        if not writes:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id, value in writes.items():
                if value is None:
                    pipe.delete(keys.preferences_key(user_id))
                else:
                    pipe.set(keys.preferences_key(user_id), value)
            await pipe.execute()
        self.counters.forgotten += sum(1 for v in writes.values() if v is None)
        self.counters.stored += sum(1 for v in writes.values() if v is not None)

    async def _reject(self, record: Any, reason: str) -> None:
        log.warning("user-preferences %d:%d: %s", record.partition, record.offset, reason)
        await self._dead_letter(record, reason)
        self.counters.dead_lettered += 1
