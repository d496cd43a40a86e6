"""Dead letters written as record batches, one write at a time per DLQ partition (herald/dlq_writer.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from herald.dlq_writer import DeadLetterWriter, DlqRecord, RecordBatch


class FakeBatch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.values: list[bytes] = []
        self.closed = False

    def append(
        self, *, timestamp: float | None, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> object | None:
        assert not self.closed, "appended to a submitted batch"
        if self.values and len(self.values) >= self.capacity:
            return None  # like aiokafka: full, unless empty
        self.values.append(value or b"")
        return object()

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    """Records what was submitted and acknowledges each batch when the test says so."""

    def __init__(self, capacity: int = 2, fail_partition: int | None = None) -> None:
        self.capacity = capacity
        self.fail_partition = fail_partition
        self.sent: list[tuple[int, list[bytes]]] = []
        self.unacknowledged: dict[int, int] = {}
        self.most_unacknowledged = 0
        self.acks: list[asyncio.Future[None]] = []

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.capacity)

    async def send_batch(self, batch: RecordBatch, topic: str, *, partition: int) -> asyncio.Future[None]:
        assert isinstance(batch, FakeBatch)
        assert batch.closed
        assert topic == "dlq"
        self.sent.append((partition, batch.values))
        self.unacknowledged[partition] = self.unacknowledged.get(partition, 0) + 1
        self.most_unacknowledged = max(self.most_unacknowledged, self.unacknowledged[partition])
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ack.add_done_callback(lambda _: self.unacknowledged.__setitem__(partition, self.unacknowledged[partition] - 1))
        loop = asyncio.get_running_loop()
        if partition == self.fail_partition:
            loop.call_soon(ack.set_exception, TimeoutError("broker gone"))
        else:
            loop.call_soon(ack.set_result, None)
        return ack


def letters(partition: int, *values: bytes) -> list[DlqRecord]:
    return [DlqRecord(partition, b"k", v, [("herald-dlq-reason", b"bad")]) for v in values]


def test_records_go_in_order_in_full_batches_per_partition() -> None:
    producer = FakeProducer(capacity=2)
    writer = DeadLetterWriter(producer, "dlq")
    asyncio.run(writer.write(letters(0, b"a", b"b", b"c") + letters(1, b"x") + letters(0, b"d")))
    assert [values for partition, values in producer.sent if partition == 0] == [[b"a", b"b"], [b"c", b"d"]]
    assert [values for partition, values in producer.sent if partition == 1] == [[b"x"]]


def test_concurrent_writes_never_have_two_of_their_batches_pending_on_one_partition_at_once() -> None:
    # More than one would make aiokafka's send_batch wait out its cumulative timeout (the module docstring).
    producer = FakeProducer(capacity=1)
    writer = DeadLetterWriter(producer, "dlq")

    async def main() -> None:
        await asyncio.gather(*(writer.write(letters(0, b"%d" % i)) for i in range(20)))

    asyncio.run(main())
    assert len(producer.sent) == 20
    assert producer.most_unacknowledged == 1
    assert [values for _, values in producer.sent] == [[b"%d" % i] for i in range(20)]


def test_a_failed_batch_fails_the_write_only_once_every_partition_has_settled() -> None:
    producer = FakeProducer(capacity=1, fail_partition=1)
    writer = DeadLetterWriter(producer, "dlq")
    with pytest.raises(TimeoutError, match="broker gone"):
        asyncio.run(writer.write(letters(0, b"a", b"b") + letters(1, b"c")))
    assert producer.unacknowledged == {0: 0, 1: 0}
