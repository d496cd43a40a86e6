"""The one builder of dead-letter (`notification-dlq`) record headers, for every stage that dead-letters.

Whoever reads the DLQ (an operator, a replay tool) finds the same header names whatever put the record there:
why (`herald-dlq-reason`), where (`herald-dlq-stage`) and, for records that came from a Kafka topic, where they
came from (`herald-source-topic`, `-partition`, `-offset`), so they can be traced back and replayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from herald.events import MAX_EVENT_BYTES

HEADER_REASON: Final = "herald-dlq-reason"
HEADER_STAGE: Final = "herald-dlq-stage"
HEADER_SOURCE_TOPIC: Final = "herald-source-topic"
HEADER_SOURCE_PARTITION: Final = "herald-source-partition"
HEADER_SOURCE_OFFSET: Final = "herald-source-offset"
HEADER_ORIGINAL_BYTES: Final = "herald-dlq-original-bytes"  # only on records whose value was cut

# A record over the event limit keeps only its start in the DLQ: enough to see what it was, and a DLQ record can
# never outgrow the topic's max.message.bytes by the headers it gains. The source headers lead to the whole
# record while the events topic retains it; it cannot be redriven anyway (it would be refused again). Records
# within the limit are kept whole.
KEPT_PREFIX_BYTES: Final = 64 * 1024

# A reason can quote a whole traceback or event; headers count against the record's size limit.
MAX_REASON_BYTES: Final = 4000

STAGE_READER: Final = "reader"  # the record did not decode or validate
STAGE_AGGREGATOR: Final = "aggregator"  # the aggregator refused the event (the domain said no)
STAGE_APPLY: Final = "apply"  # applying kept failing with an application error; the reason says which


def delivery_stage(channel: str) -> str:
    """The stage of a delivery that failed for good on `channel`."""
    return f"delivery:{channel}"


@dataclass(frozen=True)
class SourceRecord:
    """Where a dead-lettered record was read from."""

    topic: str
    partition: int
    offset: int


def dlq_headers(
    *, reason: str, stage: str, source: SourceRecord | None = None, original_bytes: int | None = None
) -> list[tuple[str, bytes]]:
    """Headers of one DLQ record, in aiokafka's (name, bytes) form; `original_bytes` when the value was cut
    (kept_value)."""
    headers = [
        (HEADER_REASON, _truncated(reason)),
        (HEADER_STAGE, stage.encode()),
    ]
    if source is not None:
        headers += [
            (HEADER_SOURCE_TOPIC, source.topic.encode()),
            (HEADER_SOURCE_PARTITION, b"%d" % source.partition),
            (HEADER_SOURCE_OFFSET, b"%d" % source.offset),
        ]
    if original_bytes is not None:
        headers.append((HEADER_ORIGINAL_BYTES, b"%d" % original_bytes))
    return headers


def kept_value(value: bytes | None) -> tuple[bytes, int | None]:
    """What the DLQ keeps of a refused record's value, and its original size when that was cut."""
    if value is None:
        return b"", None  # a tombstone: its DLQ record says so in the reason
    if len(value) <= MAX_EVENT_BYTES:
        return value, None
    return value[:KEPT_PREFIX_BYTES], len(value)


def dlq_partition(source_partition: int, dlq_partitions: int) -> int:
    """The DLQ partition of a record dead-lettered from `source_partition`: a source partition's records stay
    together and in order, and (the events topic being keyed by user) so do a user's. Chosen here rather than by
    the producer's key hash, which aiokafka computes in pure Python for every record."""
    if dlq_partitions < 1:
        raise ValueError(f"the DLQ topic has {dlq_partitions} partitions")
    return source_partition % dlq_partitions


def _truncated(text: str) -> bytes:
    encoded = text.encode()
    if len(encoded) <= MAX_REASON_BYTES:
        return encoded  # the common case, written once per refused record
    # Cut on a character boundary: a reader decoding the header as UTF-8 must not fail on half a character.
    return encoded[:MAX_REASON_BYTES].decode(errors="ignore").encode()
