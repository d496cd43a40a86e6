"""Turns a fetched Kafka batch into per-aggregator work: decode and validate, route users to shards,
and the offsets that become safe to commit once every part of the batch is done."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from herald.dlq import SourceRecord, dlq_headers, dlq_partition, kept_value
from herald.dlq_writer import DlqRecord
from herald.errors import InvalidEventError
from herald.events import decode_event, derive_event_id
from herald.keys import stable_hash
from herald.prepared import PreparedEvent, prepare

log = logging.getLogger(__name__)


class KafkaRecord(Protocol):
    """What routing reads of an aiokafka ConsumerRecord (read-only, so any record-like object fits)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> int: ...  # Unix ms: the event's time when the event itself carries none


@dataclass(slots=True)
class Rejected:
    """A record that goes to the dead-letter topic, with why."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str


@dataclass
class RoutedBatch:
    per_actor: dict[int, list[PreparedEvent]] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    commit_offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) -> next
    # Keyed by the id derived from the record's coordinates: unique per record, unlike a producer's eventId.
    coordinates: dict[str, tuple[str, int, int, bytes | None, bytes | None]] = field(default_factory=dict)

    @property
    def event_count(self) -> int:
        return sum(len(v) for v in self.per_actor.values())

    @property
    def record_count(self) -> int:
        return self.event_count + len(self.rejected)

    def absorb(self, later: RoutedBatch) -> None:
        """Take in a batch routed from records fetched after this one's: each actor's events and the rejected
        records stay in fetch order, so per-partition (and per-user) order holds across the two."""
        for actor, items in later.per_actor.items():
            self.per_actor.setdefault(actor, []).extend(items)
        self.rejected.extend(later.rejected)
        for tp, offset in later.commit_offsets.items():
            self.commit_offsets[tp] = max(self.commit_offsets.get(tp, 0), offset)
        self.coordinates.update(later.coordinates)


def shard_of(user_id: str, shards: int) -> int:
    return stable_hash(user_id) % shards


def actor_of_shard(shard: int, actors: int) -> int:
    return shard % actors


def route(records: Iterable[KafkaRecord], *, shards: int, actors: int) -> RoutedBatch:
    """Records must come in offset order per partition; the order is kept within each actor's list."""
    batch = RoutedBatch()
    for record in records:
        tp = (record.topic, record.partition)
        batch.commit_offsets[tp] = max(batch.commit_offsets.get(tp, 0), record.offset + 1)
        wire_id = derive_event_id(record.topic, record.partition, record.offset)
        prepared = _decoded(record, wire_id)
        if isinstance(prepared, str):
            batch.rejected.append(
                Rejected(record.topic, record.partition, record.offset, record.key, record.value, prepared)
            )
            continue
        actor = actor_of_shard(shard_of(prepared.user_id, shards), actors)
        batch.per_actor.setdefault(actor, []).append(prepared)
        batch.coordinates[wire_id] = (record.topic, record.partition, record.offset, record.key, record.value)
    return batch


def _decoded(record: KafkaRecord, wire_id: str) -> PreparedEvent | str:
    """The record's event, prepared; or why it goes to the DLQ."""
    try:
        if record.value is None:
            raise InvalidEventError("record has no value (tombstone)")
        event = decode_event(record.value, fallback_event_id=wire_id, fallback_timestamp_ms=record.timestamp)
        return prepare(event, wire_id=wire_id, produced_ms=record.timestamp)
    except InvalidEventError as exc:
        return str(exc)
    except Exception as exc:
        # A decoder bug must not turn one record into a poison pill: raised from here it would end the reader's
        # loop, which restarts at the last commit and meets the same record again, forever. The record goes to
        # the DLQ with the error instead (docs/architecture.md, Guarantees: "Garbage in").
        log.exception("%s: unexpected decoding error", wire_id)
        return f"could not be decoded ({type(exc).__name__}: {exc})"


def dlq_record(rejected: Rejected, *, stage: str, dlq_partitions: int) -> DlqRecord:
    """The DLQ record of a rejected input record (herald.dlq builds the headers for every stage)."""
    value, original_bytes = kept_value(rejected.value)
    source = SourceRecord(rejected.topic, rejected.partition, rejected.offset)
    headers = dlq_headers(reason=rejected.reason, stage=stage, source=source, original_bytes=original_bytes)
    return DlqRecord(dlq_partition(rejected.partition, dlq_partitions), rejected.key, value, headers)
