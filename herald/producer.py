"""The producer SDK: validate notification events and publish them to Kafka, keyed by recipient.

`NotificationProducer` is a facade over two small collaborators: `RecordBuilder` (validation and the wire
record) and `RecordSender` (the aiokafka producer, bounded in time). `SyncNotificationProducer` serves code
that has no event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError
from aiokafka.partitioner import DefaultPartitioner

from herald.config import Settings, load_settings
from herald.errors import BrokerUnavailableError, InvalidEventError
from herald.events import (
    MAX_EVENT_BYTES,
    SCHEMA_VERSION,
    EventType,
    NotificationEvent,
    derive_event_id,
    encode_event,
    validate_event,
)
from herald.kafka import close_client, make_producer, request_timeout_ms, start_bounded, unreachable
from herald.loop_thread import BlockingFacade
from herald.topics import TopicError

EventInput = NotificationEvent | Mapping[str, Any]
Headers = list[tuple[str, bytes]]
# aiokafka's partitioner signature: (key, all partitions, available partitions) -> partition.
Partitioner = Callable[[bytes, list[int], list[int]], int]
T = TypeVar("T")

# Below this many records a call goes through aiokafka's send(), which appends to the batch aiokafka keeps
# open per partition: concurrent small calls (publish() from many request handlers) then share batches and
# linger. From here on, packing our own batches pays off (aiokafka's send() costs more per record than
# validating and encoding the event does); concurrent large calls each fill whole batches anyway.
BATCH_API_MIN_RECORDS: Final = 64


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Where an event landed. `event_id` is the event's own id, or the one the pipeline derives from the
    Kafka coordinates when the event has none (the same id either way)."""

    topic: str
    partition: int
    offset: int
    event_id: str


class PartialPublishError(BrokerUnavailableError):
    """Some events of a batch were delivered and some were not; nothing is silently dropped.

    `results[i]` is the PublishResult of the i-th event, or None when it was not delivered.
    """

    def __init__(self, reason: str, results: list[PublishResult | None]) -> None:
        super().__init__(reason)
        self.results = results

    @property
    def failed_indices(self) -> list[int]:
        return [i for i, result in enumerate(self.results) if result is None]


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    key: bytes
    value: bytes
    headers: Headers
    event_id: str | None


def _utc_now() -> datetime:
    return datetime.now(UTC)


# Headers depend only on the event type: build each list once instead of per event.
_HEADERS: dict[EventType, Headers] = {
    event_type: [
        ("content-type", b"application/json"),
        ("herald-event-type", event_type.value.encode()),
        ("herald-schema", SCHEMA_VERSION.encode()),
    ]
    for event_type in EventType
}


class RecordBuilder:
    """Turns what a caller hands in into the Kafka record: validated, encoded, keyed by userId."""

    def __init__(self, clock: Callable[[], datetime] = _utc_now) -> None:
        self._clock = clock

    def validate(self, event: EventInput) -> NotificationEvent:
        if isinstance(event, NotificationEvent):
            return event
        if "timestamp" not in event:
            # The SDK stamps publish time so callers need not; the wire format itself requires it.
            event = {**event, "timestamp": self._clock()}
        return validate_event(event)

    def build(self, event: EventInput) -> OutgoingRecord:
        event = self.validate(event)
        value = encode_event(event)
        if len(value) > MAX_EVENT_BYTES:
            # Checked here, not by the broker, so the caller gets the event's fault rather than a Kafka error.
            raise InvalidEventError(f"encoded event is {len(value)} bytes, more than the limit of {MAX_EVENT_BYTES}")
        return OutgoingRecord(event.user_id.encode(), value, _HEADERS[event.type], event.event_id)

    def build_all(self, events: Iterable[EventInput]) -> list[OutgoingRecord]:
        """Validate everything before anything is sent, so a bad event cannot leave a batch half-published."""
        records = []
        for index, event in enumerate(events):
            try:
                records.append(self.build(event))
            except InvalidEventError as exc:
                raise InvalidEventError(f"event #{index}: {exc.reason}", field=exc.field) from None
        return records


def group_by_partition(
    keys: Sequence[bytes], all_partitions: list[int], available: list[int], partitioner: Partitioner
) -> dict[int, list[int]]:
    """Indices of `keys` per partition, in input order, chosen exactly as aiokafka's `send()` would choose.

    The default partitioner depends only on the key (murmur2 modulo the partition count), so its answer is
    computed once per distinct key; a custom partitioner is asked for every record.
    """
    groups: dict[int, list[int]] = {}
    if type(partitioner) is DefaultPartitioner:
        by_key: dict[bytes, int] = {}
        for index, key in enumerate(keys):
            partition = by_key.get(key)
            if partition is None:
                partition = by_key[key] = partitioner(key, all_partitions, available)
            groups.setdefault(partition, []).append(index)
    else:
        for index, key in enumerate(keys):
            groups.setdefault(partitioner(key, all_partitions, available), []).append(index)
    return groups


def _retrieve_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


@dataclass(frozen=True, slots=True)
class _Delivery:
    """Records handed to aiokafka together (a batch of ours, or one record given to send()): the future of
    their acknowledgement, whose offset is the first record's, and their indices in the caller's order."""

    future: asyncio.Future[Any]
    indices: list[int]


class RecordSender:
    """Owns the aiokafka producer: bounded start, pipelined sends, acknowledgements awaited with a stall bound.

    Large calls are packed into aiokafka batches here (`create_batch` / `send_batch`) rather than handed over
    one `send()` at a time: `send()` costs more per record than validating and encoding the event does, and
    the batches are the ones aiokafka would build (same partition per key, same order, same batch size limit;
    compression, idempotence and acks are applied by aiokafka when it sends them).
    """

    def __init__(self, settings: Settings, topic: str, **producer_overrides: Any) -> None:
        self._settings = settings
        self._topic = topic
        self._overrides = producer_overrides
        self._partitioner: Partitioner = producer_overrides.get("partitioner") or DefaultPartitioner()
        self._producer: AIOKafkaProducer | None = None
        # No progress for this long means the broker is gone: connecting plus one request.
        self.stall_timeout_s = settings.connect_timeout_s + request_timeout_ms(settings) / 1000

    @property
    def topic(self) -> str:
        return self._topic

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = make_producer(self._settings, **self._overrides)
        await start_bounded(producer, self._settings, "starting producer")
        self._producer = producer

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await close_client(producer, timeout_s=self.stall_timeout_s)

    async def send(self, records: Sequence[OutgoingRecord]) -> list[PublishResult]:
        """Enqueue all records, then wait for all acknowledgements (aiokafka pipelines the batches meanwhile)."""
        producer = self._producer
        if producer is None:
            raise RuntimeError("producer is not started: use `async with NotificationProducer()` or start()")
        if not records:
            return []
        started = time.monotonic()
        topic = self._topic
        deliveries: list[_Delivery] = []
        try:
            if len(records) < BATCH_API_MIN_RECORDS:
                await self._enqueue_each(producer, records, deliveries)
            else:
                await self._enqueue_batches(producer, records, deliveries)
        except UnknownTopicOrPartitionError as exc:
            await self._settle(deliveries)
            raise TopicError(
                f"topic {topic!r} does not exist on {self._settings.kafka_bootstrap}; "
                "run `herald topics ensure` (or create it)"
            ) from exc
        except KafkaError as exc:
            await self._settle(deliveries)
            raise self._failure(records, deliveries, exc, started) from exc
        await self._settle(deliveries)
        failed = [d.future for d in deliveries if d.future.cancelled() or d.future.exception() is not None]
        if failed:
            causes = [e for f in failed if not f.cancelled() and (e := f.exception()) is not None]
            raise self._failure(records, deliveries, causes[0] if causes else "no acknowledgement", started)
        return [r for r in self._results(records, deliveries) if r is not None]

    async def _enqueue_each(
        self, producer: AIOKafkaProducer, records: Sequence[OutgoingRecord], deliveries: list[_Delivery]
    ) -> None:
        # No wait_for per record (a task each, which would cost more than the send): aiokafka bounds
        # send() itself by request_timeout_ms, both waiting for metadata and for buffer space.
        send = producer.send
        topic = self._topic
        for index, record in enumerate(records):
            future = await send(topic, record.value, key=record.key, headers=record.headers)
            future.add_done_callback(_retrieve_exception)
            deliveries.append(_Delivery(future, [index]))

    async def _enqueue_batches(
        self, producer: AIOKafkaProducer, records: Sequence[OutgoingRecord], deliveries: list[_Delivery]
    ) -> None:
        topic = self._topic
        # Bounded by request_timeout_ms, like send(): waits for the topic's metadata.
        partitions = await producer.partitions_for(topic)
        # The same expressions aiokafka's send() hands its partitioner, so a key lands where it would.
        all_partitions = list(partitions)
        available = list(producer.client.cluster.available_partitions_for_topic(topic))
        groups = group_by_partition([r.key for r in records], all_partitions, available, self._partitioner)
        # One coroutine per partition: while one waits for aiokafka to take its previous batch, the others
        # keep filling theirs, so each produce request carries a batch for every partition.
        outcomes = await asyncio.gather(
            *(self._send_partition(producer, p, indices, records, deliveries) for p, indices in groups.items()),
            return_exceptions=True,
        )
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors:
            raise errors[0]

    async def _send_partition(
        self,
        producer: AIOKafkaProducer,
        partition: int,
        indices: list[int],
        records: Sequence[OutgoingRecord],
        deliveries: list[_Delivery],
    ) -> None:
        """Pack one partition's records, in input order, into batches and hand each to aiokafka."""
        batch = producer.create_batch()
        carried: list[int] = []
        for index in indices:
            record = records[index]
            # timestamp=None: aiokafka stamps the send time, as send() does.
            if batch.append(timestamp=None, key=record.key, value=record.value, headers=record.headers) is None:
                await self._hand_over(producer, batch, partition, carried, deliveries)
                batch, carried = producer.create_batch(), []
                # A fresh batch always takes its first record, whatever its size.
                batch.append(timestamp=None, key=record.key, value=record.value, headers=record.headers)
            carried.append(index)
        if carried:
            await self._hand_over(producer, batch, partition, carried, deliveries)

    async def _hand_over(
        self, producer: AIOKafkaProducer, batch: Any, partition: int, carried: list[int], deliveries: list[_Delivery]
    ) -> None:
        # Closed, so aiokafka sends it without lingering and appends nothing of a concurrent send() to it.
        batch.close()
        # Waits (bounded by request_timeout_ms) until aiokafka has taken this partition's previous batch,
        # which keeps the partition's batches, and so each user's events, in order.
        future = await producer.send_batch(batch, self._topic, partition=partition)
        # aiokafka leaves a failed batch's exception to the batch API's caller; mark it retrieved even when
        # we give up early (unknown topic, stall), or asyncio logs "Future exception was never retrieved".
        future.add_done_callback(_retrieve_exception)
        deliveries.append(_Delivery(future, carried))

    async def _settle(self, deliveries: Sequence[_Delivery]) -> None:
        """Wait until every delivery is decided; give up on those still pending after a stall."""
        pending = {d.future for d in deliveries if not d.future.done()}
        while pending:
            done, pending = await asyncio.wait(pending, timeout=self.stall_timeout_s)
            if not done:
                # Cancelling our futures does not recall the batches from aiokafka's buffer: they may still
                # arrive, which is why the error says "not confirmed" rather than "lost".
                for future in pending:
                    future.cancel()
                return

    @staticmethod
    def _results(records: Sequence[OutgoingRecord], deliveries: Sequence[_Delivery]) -> list[PublishResult | None]:
        """Per record, in input order: where it landed, or None when its batch was not acknowledged."""
        results: list[PublishResult | None] = [None] * len(records)
        for delivery in deliveries:
            future = delivery.future
            if not future.done() or future.cancelled() or future.exception() is not None:
                continue
            metadata = future.result()
            topic, partition, base_offset = metadata.topic, metadata.partition, metadata.offset
            # Records of a batch get consecutive offsets from the batch's base offset, in append order.
            for position, index in enumerate(delivery.indices):
                offset = base_offset + position
                record = records[index]
                event_id = record.event_id or derive_event_id(topic, partition, offset)
                results[index] = PublishResult(topic, partition, offset, event_id)
        return results

    def _failure(
        self,
        records: Sequence[OutgoingRecord],
        deliveries: Sequence[_Delivery],
        cause: BaseException | str,
        started: float,
    ) -> BrokerUnavailableError:
        results = self._results(records, deliveries)
        confirmed = sum(r is not None for r in results)
        elapsed_s = round(time.monotonic() - started, 1)
        reason = unreachable(self._settings, f"publishing to {self._topic}", elapsed_s, cause)
        if confirmed == 0:
            return BrokerUnavailableError(reason)
        return PartialPublishError(
            f"{confirmed} of {len(records)} events confirmed, the others not (re-publishing is safe for "
            f"events with an eventId: the pipeline deduplicates them); {reason}",
            results,
        )


class NotificationProducer:
    """Publish notification events. Use as `async with NotificationProducer() as producer: ...`.

    Raises InvalidEventError before sending anything when an event does not match the wire format, and
    BrokerUnavailableError (or its PartialPublishError) when Kafka does not confirm within the bound.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        topic: str | None = None,
        clock: Callable[[], datetime] = _utc_now,
        **producer_overrides: Any,
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        self._builder = RecordBuilder(clock)
        # No topic: the one the pipeline reads (settings.events_topic).
        topic = self.settings.events_topic if topic is None else topic
        self._sender = RecordSender(self.settings, topic, **producer_overrides)

    @property
    def topic(self) -> str:
        return self._sender.topic

    async def start(self) -> None:
        await self._sender.start()

    async def close(self) -> None:
        await self._sender.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def publish(self, event: EventInput) -> PublishResult:
        (result,) = await self._sender.send([self._builder.build(event)])
        return result

    async def publish_many(self, events: Iterable[EventInput]) -> list[PublishResult]:
        """Validate all, send all, then await all acknowledgements: pipelined, in input order per user."""
        return await self._sender.send(self._builder.build_all(events))


class SyncNotificationProducer(BlockingFacade[NotificationProducer]):
    """Blocking facade for code without an event loop: a NotificationProducer on a private loop thread."""

    def __init__(self, settings: Settings | None = None, *, topic: str | None = None, **overrides: Any) -> None:
        self._settings = settings if settings is not None else load_settings()
        self._topic = self._settings.events_topic if topic is None else topic
        self._overrides = overrides
        # aiokafka binds to the loop it is created on, so the producer lives on the loop thread.
        super().__init__("SyncNotificationProducer", "herald-producer", self._create_and_start)

    async def _create_and_start(self) -> NotificationProducer:
        producer = NotificationProducer(self._settings, topic=self._topic, **self._overrides)
        await producer.start()
        return producer

    def publish(self, event: EventInput) -> PublishResult:
        return self._call(lambda producer: producer.publish(event))

    def publish_many(self, events: Iterable[EventInput]) -> list[PublishResult]:
        batch = list(events)
        return self._call(lambda producer: producer.publish_many(batch))
