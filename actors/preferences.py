"""PreferencesActor: one consumer of the compacted topic `user-preferences`, a thin shell over
herald.preferences_feed (validation, storage, dead letters)."""

from __future__ import annotations

import os
from typing import Any

from actors.loops import OwnedLoop
from herald.config import Settings
from herald.dlq import SourceRecord, dlq_headers
from herald.kafka import close_client, make_consumer, make_producer, start_bounded
from herald.preferences_feed import PREFERENCES_GROUP, PreferencesFeed
from herald.redis_pool import redis_client
from herald.topics import DLQ_TOPIC, PREFERENCES_TOPIC

STAGE_PREFERENCES = "preferences"


class PreferencesActor:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._redis = redis_client(settings.redis_url)
        self._feed = PreferencesFeed(self._redis, self._dead_letter)
        self._producer: Any = None
        self._stopping = False
        self._owner = OwnedLoop()

    async def run(self) -> None:
        """Consume until drain(); offsets are committed after each stored batch."""
        self._owner.claim()
        self._stopping = False
        self._producer = make_producer(self._settings, client_id="herald-preferences-dlq")
        consumer = make_consumer(
            self._settings,
            PREFERENCES_TOPIC,
            group_id=PREFERENCES_GROUP,
            client_id="herald-preferences",
            auto_offset_reset="earliest",
        )
        try:
            await start_bounded(self._producer, self._settings, "preferences DLQ producer")
            await start_bounded(consumer, self._settings, "preferences consumer")
            while not self._stopping:
                batches = await consumer.getmany(timeout_ms=500, max_records=1000)
                for records in batches.values():
                    await self._feed.apply(records)
                if batches:
                    await consumer.commit()
        finally:
            await close_client(consumer)
            await close_client(self._producer)

    async def _dead_letter(self, record: Any, reason: str) -> None:
        source = SourceRecord(record.topic, record.partition, record.offset)
        headers = dlq_headers(reason=reason, stage=STAGE_PREFERENCES, source=source)
        await (await self._producer.send(DLQ_TOPIC, record.value or b"", key=record.key, headers=headers))

    async def drain(self) -> None:
        self._stopping = True

    async def health(self) -> dict[str, Any]:
        counters = self._feed.counters
        return {
            "actor": "preferences",
            "ok": True,
            "pid": os.getpid(),
            "stored": counters.stored,
            "forgotten": counters.forgotten,
            "dead_lettered": counters.dead_lettered,
        }
