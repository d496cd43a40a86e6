"""send_in_batches (herald/batch_send.py): every record once, per-partition order, a new batch when one is full."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from herald.batch_send import OutgoingRecord, send_in_batches


@dataclass
class FakeBatch:
    capacity: int  # records; like aiokafka's builder, an empty batch takes its first record whatever its size
    records: list[bytes] = field(default_factory=list)

    def append(self, *, timestamp: int | None, key: bytes | None, value: bytes, headers: Any) -> object | None:
        if self.records and len(self.records) >= self.capacity:
            return None
        self.records.append(value)
        return object()


@dataclass
class FakeProducer:
    capacity: int
    sent: list[tuple[str, int, list[bytes]]] = field(default_factory=list)

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.capacity)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.sent.append((topic, partition, list(batch.records)))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(partition)
        return done


def records(spec: list[tuple[int, str]]) -> list[OutgoingRecord]:
    return [OutgoingRecord(partition, b"k", value.encode(), [("h", b"1")]) for partition, value in spec]


async def test_records_go_in_order_per_partition_in_as_many_batches_as_the_capacity_needs() -> None:
    producer = FakeProducer(capacity=2)
    spec = [(0, "a"), (1, "x"), (0, "b"), (0, "c"), (1, "y"), (0, "d"), (0, "e")]
    futures = await send_in_batches(producer, "dlq", records(spec))
    assert producer.sent == [
        ("dlq", 0, [b"a", b"b"]),
        ("dlq", 0, [b"c", b"d"]),
        ("dlq", 0, [b"e"]),
        ("dlq", 1, [b"x", b"y"]),
    ]
    assert len(futures) == 4
    assert [await f for f in futures] == [0, 0, 0, 1]


async def test_a_batch_that_refuses_even_a_first_record_is_an_error_not_a_loop() -> None:
    class Refusing(FakeProducer):
        def create_batch(self) -> FakeBatch:
            return FakeBatch(capacity=0, records=[b"full"])  # pretends to be full from the start

    with pytest.raises(RuntimeError, match="refused a record of 1 bytes"):
        await send_in_batches(Refusing(capacity=0), "dlq", records([(0, "a")]))


async def test_nothing_to_send_sends_nothing() -> None:
    producer = FakeProducer(capacity=2)
    assert await send_in_batches(producer, "dlq", []) == []
    assert producer.sent == []
