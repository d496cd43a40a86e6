"""The bad-input run's Kafka side (docs/reliability.md, Bad input): valid events and malformed records
(herald.malformed) interleaved into one topic, and what `notification-dlq` holds for them afterwards.

Malformed records are recognised in the DLQ by where they came from (the `herald-source-*` headers the reader
writes), not by their content, which may be truncated or not even UTF-8.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from herald.config import Settings
from herald.dlq_admin import DeadLetter
from herald.kafka import close_client, make_producer, start_bounded
from herald.malformed import MalformedRecord

_INFLIGHT = 5000  # sends awaited together: bounded memory, still pipelined


@dataclass(frozen=True)
class SentMalformed:
    topic: str
    partition: int
    offset: int
    kind: str
    expect: str


async def produce_mixed(
    settings: Settings, topic: str, valid: Sequence[dict[str, Any]], malformed: Sequence[MalformedRecord]
) -> list[SentMalformed]:
    """Send `valid` events (keyed by userId) with `malformed` records spread evenly among them; returns where each
    malformed record landed. The valid events keep their relative order."""
    order = _interleaved(len(valid), len(malformed))
    producer = make_producer(settings, client_id="herald-badinput")
    await start_bounded(producer, settings, "bad-input producer")
    sent: list[SentMalformed] = []
    try:
        for start in range(0, len(order), _INFLIGHT):
            chunk = order[start : start + _INFLIGHT]
            futures = []
            for is_valid, i in chunk:
                if is_valid:
                    event = valid[i]
                    futures.append(await producer.send(topic, orjson.dumps(event), key=event["userId"].encode()))
                else:
                    bad = malformed[i]
                    futures.append(await producer.send(topic, bad.value, key=bad.key))
            metadata = await asyncio.gather(*futures)
            for (is_valid, i), meta in zip(chunk, metadata, strict=True):
                if not is_valid:
                    bad = malformed[i]
                    sent.append(SentMalformed(topic, meta.partition, meta.offset, bad.kind, bad.expect))
    finally:
        await close_client(producer)
    return sent


def _interleaved(valid: int, malformed: int) -> list[tuple[bool, int]]:
    """(is valid, index) in sending order: the malformed records at evenly spread positions."""
    total = valid + malformed
    bad_at = {int(j * total / malformed) for j in range(malformed)} if malformed else set()
    order: list[tuple[bool, int]] = []
    counts = [0, 0]  # malformed, valid
    for position in range(total):
        is_valid = position not in bad_at
        order.append((is_valid, counts[is_valid]))
        counts[is_valid] += 1
    return order


@dataclass
class KindFindings:
    sent: int = 0
    found: int = 0  # in the DLQ
    with_reason: int = 0  # ... and its reason names what is wrong (MalformedRecord.expect)
    stages: dict[str, int] = field(default_factory=dict)


@dataclass
class DlqFindings:
    by_kind: dict[str, KindFindings]
    missing: list[SentMalformed]  # sent, not (yet) in the DLQ
    wrong_reason: list[tuple[SentMalformed, str]]
    unexpected: list[DeadLetter]  # dead letters from the topic that were not malformed: valid events lost

    @property
    def sent(self) -> int:
        return sum(k.sent for k in self.by_kind.values())

    @property
    def found(self) -> int:
        return sum(k.found for k in self.by_kind.values())

    @property
    def with_reason(self) -> int:
        return sum(k.with_reason for k in self.by_kind.values())

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "found": self.found,
            "with_reason": self.with_reason,
            "missing": len(self.missing),
            "wrong_reason": [(s.kind, reason[:200]) for s, reason in self.wrong_reason[:10]],
            "valid_dead_lettered": len(self.unexpected),
            "by_kind": {
                kind: {"sent": k.sent, "found": k.found, "with_reason": k.with_reason, "stages": k.stages}
                for kind, k in sorted(self.by_kind.items())
            },
        }


def match_dead_letters(
    sent: Sequence[SentMalformed], letters: Sequence[DeadLetter], topics: Sequence[str]
) -> DlqFindings:
    """Which of `sent` the DLQ holds, with which reason; and what else it holds from `topics`."""
    wanted = {(s.topic, s.partition, s.offset): s for s in sent}
    by_kind: dict[str, KindFindings] = {}
    for s in sent:
        by_kind.setdefault(s.kind, KindFindings()).sent += 1
    seen: set[tuple[str, int, int]] = set()
    wrong: list[tuple[SentMalformed, str]] = []
    unexpected: list[DeadLetter] = []
    for letter in letters:
        if letter.source is None or letter.source[0] not in topics:
            continue
        match = wanted.get(letter.source)
        if match is None:
            unexpected.append(letter)
            continue
        if letter.source in seen:
            continue  # dead-lettered twice (a batch replayed after a restart): counted once
        seen.add(letter.source)
        kind = by_kind[match.kind]
        kind.found += 1
        kind.stages[letter.stage] = kind.stages.get(letter.stage, 0) + 1
        if match.expect in letter.reason:
            kind.with_reason += 1
        else:
            wrong.append((match, letter.reason))
    missing = [s for key, s in wanted.items() if key not in seen]
    return DlqFindings(by_kind, missing, wrong, unexpected)
