"""Reading `notification-dlq` and sending its entries back (`herald dlq list|show|redrive`).

A redrive is idempotent twice over: Redis remembers which DLQ offsets were redriven (a second redrive of the same
entry does nothing), and what is sent back keeps its identity: a failed delivery re-enters its channel's outbox
with the same delivery id (the providers' idempotency key), a rejected event re-enters the events topic with its
event id (the aggregators' dedup drops it if it was applied after all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import TopicPartition

from herald import dlq, keys
from herald.config import Settings
from herald.kafka import close_client, make_consumer, make_producer, start_bounded
from herald.topics import DLQ_TOPIC, describe_topics, topic_specs

REDRIVEN_KEY = "herald:dlq:redriven"


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    timestamp_ms: int
    stage: str
    reason: str
    key: str | None
    value: bytes
    # Where the record was read from (the herald-source-* headers), for records that came from a Kafka topic.
    source: tuple[str, int, int] | None = None
    # The refused record's size when `value` holds only its start (records over the event limit).
    original_bytes: int | None = None

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def channel(self) -> str | None:
        return self.stage.split(":", 1)[1] if self.stage.startswith("delivery:") else None

    def to_json(self, *, with_value: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "ref": self.ref,
            "partition": self.partition,
            "offset": self.offset,
            "timestampMs": self.timestamp_ms,
            "stage": self.stage,
            "reason": self.reason,
            "key": self.key,
        }
        if self.original_bytes is not None:
            doc["originalBytes"] = self.original_bytes  # `value` is only the first bytes of the record
        if with_value:
            try:
                doc["value"] = orjson.loads(self.value)
            except orjson.JSONDecodeError:
                doc["value"] = self.value.decode(errors="replace")
        return doc


async def dlq_end_offsets(settings: Settings) -> dict[int, int]:
    """The DLQ's end offset per partition now: pass it as `since` to read only what is dead-lettered after."""
    partitions = await _dlq_partitions(settings)
    if not partitions:
        return {}
    consumer = make_consumer(settings)
    await start_bounded(consumer, settings, "DLQ reader")
    try:
        ends = await consumer.end_offsets(partitions)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await close_client(consumer)


async def _dlq_partitions(settings: Settings) -> list[TopicPartition]:
    dlq_spec = [s for s in topic_specs(settings) if s.name == DLQ_TOPIC]
    [report] = await describe_topics(settings, dlq_spec)
    return [TopicPartition(DLQ_TOPIC, p) for p in range(report.partitions or 0)]


async def read_dead_letters(
    settings: Settings, *, limit: int | None = None, since: dict[int, int] | None = None
) -> list[DeadLetter]:
    """Every DLQ record from the beginning (or from the offsets `since`, per partition) to the end as of now,
    oldest first, without joining a group. With `limit`, the newest `limit`: only each partition's last `limit`
    records are read, so a DLQ of millions answers as fast as a small one."""
    partitions = await _dlq_partitions(settings)
    if not partitions:
        return []
    consumer = make_consumer(settings)
    await start_bounded(consumer, settings, "DLQ reader")
    try:
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            start = max(starts[tp], (since or {}).get(tp.partition, 0))
            if limit:
                start = max(start, ends[tp] - limit)
            starts[tp] = start
            consumer.seek(tp, start)
        found = await _read_until(consumer, {tp for tp in partitions if ends[tp] > starts[tp]}, ends)
        found.sort(key=lambda d: (d.timestamp_ms, d.partition, d.offset))
        return found[-limit:] if limit else found
    finally:
        await close_client(consumer)


async def read_dead_letter(settings: Settings, partition: int, offset: int) -> DeadLetter | None:
    """The DLQ record at `partition`:`offset`, or None when there is none (never was, or expired)."""
    partitions = [tp for tp in await _dlq_partitions(settings) if tp.partition == partition]
    if not partitions:
        return None
    [tp] = partitions
    consumer = make_consumer(settings)
    await start_bounded(consumer, settings, "DLQ reader")
    try:
        consumer.assign([tp])
        start, end = (await consumer.beginning_offsets([tp]))[tp], (await consumer.end_offsets([tp]))[tp]
        if not start <= offset < end:
            return None
        consumer.seek(tp, offset)
        found = await _read_until(consumer, {tp}, {tp: offset + 1})
        return next((d for d in found if d.offset == offset), None)
    finally:
        await close_client(consumer)


async def _read_until(
    consumer: Any, remaining: set[TopicPartition], ends: dict[TopicPartition, int]
) -> list[DeadLetter]:
    """What the assigned, positioned `consumer` reads of `remaining` up to (not including) each end offset."""
    found: list[DeadLetter] = []
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=1000)
        for tp, records in batch.items():
            found.extend(_dead_letter(r) for r in records if r.offset < ends[tp])
        for tp in list(remaining):
            # By position, not by the last record: compacted or expired records may leave a gap up to the end.
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
    return found


def _dead_letter(record: Any) -> DeadLetter:
    headers = {name: value.decode(errors="replace") for name, value in record.headers or ()}
    source = None
    if dlq.HEADER_SOURCE_TOPIC in headers:
        try:
            partition = int(headers.get(dlq.HEADER_SOURCE_PARTITION, ""))
            offset = int(headers.get(dlq.HEADER_SOURCE_OFFSET, ""))
        except ValueError:
            pass  # written by something else than herald.dlq: no usable source
        else:
            source = (headers[dlq.HEADER_SOURCE_TOPIC], partition, offset)
    original = headers.get(dlq.HEADER_ORIGINAL_BYTES, "")
    return DeadLetter(
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        stage=headers.get(dlq.HEADER_STAGE, "unknown"),
        reason=headers.get(dlq.HEADER_REASON, ""),
        key=record.key.decode(errors="replace") if record.key else None,
        value=record.value or b"",
        source=source,
        original_bytes=int(original) if original.isascii() and original.isdigit() else None,
    )


@dataclass(frozen=True)
class RedriveResult:
    redriven: list[str]
    already: list[str]  # redriven before: left alone
    refused: dict[str, str]  # ref -> why it cannot go back


async def redrive(settings: Settings, letters: list[DeadLetter]) -> RedriveResult:
    client = aioredis.Redis.from_url(settings.redis_url)
    producer = make_producer(settings, client_id="herald-dlq-redrive")
    await start_bounded(producer, settings, "DLQ redrive producer")
    redriven: list[str] = []
    already: list[str] = []
    refused: dict[str, str] = {}
    try:
        for letter in letters:
            target = _target(letter, settings)
            if isinstance(target, str):
                refused[letter.ref] = target
                continue
            if not await client.sadd(REDRIVEN_KEY, letter.ref):
                already.append(letter.ref)
                continue
            try:
                if target["kind"] == "outbox":
                    await client.xadd(target["stream"], target["fields"])
                else:
                    key = letter.key.encode() if letter.key else None
                    await (await producer.send(settings.events_topic, letter.value, key=key))
            except Exception:
                await client.srem(REDRIVEN_KEY, letter.ref)  # not sent: may be retried
                raise
            redriven.append(letter.ref)
    finally:
        await close_client(producer)
        await client.aclose()
    return RedriveResult(redriven, already, refused)


def _target(letter: DeadLetter, settings: Settings) -> dict[str, Any] | str:
    """Where an entry goes back to, or why it cannot."""
    if letter.channel is None:
        if letter.stage in (dlq.STAGE_AGGREGATOR, dlq.STAGE_APPLY):
            return {"kind": "events"}
        return f"stage {letter.stage!r}: the record itself is malformed; fix and publish it again"
    try:
        doc = orjson.loads(letter.value)
        receipt, payload = doc["receipt"], doc["payload"]
        fields = {"id": receipt["deliveryId"], "u": receipt["userId"], "d": orjson.dumps(payload).decode()}
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "not a delivery dead letter Herald wrote (no receipt and payload)"
    shard = keys.outbox_shard_of(fields["u"], settings.outbox_shards)
    return {"kind": "outbox", "stream": keys.outbox_key(letter.channel, shard), "fields": fields}
