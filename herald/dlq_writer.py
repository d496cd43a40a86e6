"""Writes dead letters to the DLQ as whole record batches (docs/reliability.md, Bad input).

A reader fed garbage writes one dead letter per bad record, so the cost of one dead letter decides how much bad
input slows good input down. aiokafka's `send()` spends most of its time per record in Python (futures,
accumulator bookkeeping); appending to a batch builder and submitting whole batches costs a fraction of that.

Only one write at a time per DLQ partition: aiokafka's `send_batch` waits for the partition's previous batch to
drain and counts every wait against its timeout cumulatively, so writers queueing batches for one partition
concurrently run out of time and get KafkaTimeoutError. Holding the partition until its batches are acknowledged
keeps at most one batch of ours pending there, and keeps dead letters in the order they were written.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class DlqRecord:
    partition: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


class RecordBatch(Protocol):
    """What the writer uses of aiokafka's BatchBuilder."""

    def append(
        self, *, timestamp: float | None, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> object | None: ...  # None: the batch is full

    def close(self) -> None: ...


class BatchProducer(Protocol):
    """What the writer uses of aiokafka's AIOKafkaProducer."""

    def create_batch(self) -> RecordBatch: ...

    async def send_batch(self, batch: RecordBatch, topic: str, *, partition: int) -> Awaitable[object]: ...


class DeadLetterWriter:
    def __init__(self, producer: BatchProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._partition_locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def write(self, records: Sequence[DlqRecord]) -> None:
        """Return once the broker holds every record; raise if any batch failed (all have settled by then, so a
        retry of the whole write finds no batch of this one still pending)."""
        by_partition: dict[int, list[DlqRecord]] = {}
        for record in records:
            by_partition.setdefault(record.partition, []).append(record)
        await _all_settled(self._write_partition(partition, part) for partition, part in by_partition.items())

    async def _write_partition(self, partition: int, records: list[DlqRecord]) -> None:
        async with self._partition_locks[partition]:
            deliveries: list[Awaitable[object]] = []
            try:
                await self._submit_all(partition, records, deliveries)
            finally:
                await _all_settled(deliveries)

    async def _submit_all(self, partition: int, records: list[DlqRecord], deliveries: list[Awaitable[object]]) -> None:
        batch = self._producer.create_batch()
        for record in records:
            if not self._append(batch, record):
                deliveries.append(await self._submit(batch, partition))
                batch = self._producer.create_batch()
                if not self._append(batch, record):
                    # aiokafka takes any record into an empty batch; this guards against that changing.
                    raise ValueError(f"a dead letter of {len(record.value)} bytes does not fit a record batch")
        deliveries.append(await self._submit(batch, partition))

    @staticmethod
    def _append(batch: RecordBatch, record: DlqRecord) -> bool:
        appended = batch.append(timestamp=None, key=record.key, value=record.value, headers=record.headers)
        return appended is not None

    async def _submit(self, batch: RecordBatch, partition: int) -> Awaitable[object]:
        batch.close()  # so the producer's own send() can never add to a batch this writer accounts for
        return await self._producer.send_batch(batch, self._topic, partition=partition)


async def _all_settled(awaitables: Iterable[Awaitable[object]]) -> None:
    """Wait for every one, then raise the first failure: a caller that retries must find nothing still pending."""
    for result in await asyncio.gather(*awaitables, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result
