"""The producer SDK: validate notification events and publish them to Kafka, keyed by recipient.

`NotificationProducer` is a facade over two small collaborators: `RecordBuilder` (validation and the wire
record) and `RecordSender` (the aiokafka producer, bounded in time). `SyncNotificationProducer` serves code
that has no event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError

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
from herald.topics import EVENTS_TOPIC, TopicError

EventInput = NotificationEvent | Mapping[str, Any]
Headers = list[tuple[str, bytes]]
T = TypeVar("T")


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


class RecordSender:
    """Owns the aiokafka producer: bounded start, pipelined sends, deliveries awaited with a stall bound."""

    def __init__(self, settings: Settings, topic: str, **producer_overrides: Any) -> None:
        self._settings = settings
        self._topic = topic
        self._overrides = producer_overrides
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
        """Enqueue all records, then wait for all acknowledgements (aiokafka batches them meanwhile)."""
        producer = self._producer
        if producer is None:
            raise RuntimeError("producer is not started: use `async with NotificationProducer()` or start()")
        started = time.monotonic()
        futures: list[asyncio.Future[Any]] = []
        send = producer.send
        topic = self._topic
        try:
            # No wait_for per record (a task each, which would cost more than the send): aiokafka bounds
            # send() itself by request_timeout_ms, both waiting for metadata and for buffer space.
            for record in records:
                futures.append(await send(topic, record.value, key=record.key, headers=record.headers))
        except UnknownTopicOrPartitionError as exc:
            await self._settle(futures)
            raise TopicError(
                f"topic {topic!r} does not exist on {self._settings.kafka_bootstrap}; "
                "run `herald topics ensure` (or create it)"
            ) from exc
        except KafkaError as exc:
            await self._settle(futures)
            raise self._failure(records, futures, exc, started) from exc
        await self._settle(futures)
        failed = [f for f in futures if f.cancelled() or f.exception() is not None]
        if failed:
            errors = [e for f in failed if not f.cancelled() and (e := f.exception()) is not None]
            cause = errors[0] if errors else "no acknowledgement"
            raise self._failure(records, futures, cause, started)
        return [self._result(r, f.result()) for r, f in zip(records, futures, strict=True)]

    async def _settle(self, futures: Sequence[asyncio.Future[Any]]) -> None:
        """Wait until every delivery is decided; give up on those still pending after a stall."""
        pending = {f for f in futures if not f.done()}
        while pending:
            done, pending = await asyncio.wait(pending, timeout=self.stall_timeout_s)
            if not done:
                # Cancelling our futures does not recall the records from aiokafka's buffer: they may still
                # arrive, which is why the error says "not confirmed" rather than "lost".
                for future in pending:
                    future.cancel()
                return

    def _failure(
        self,
        records: Sequence[OutgoingRecord],
        futures: Sequence[asyncio.Future[Any]],
        cause: BaseException | str,
        started: float,
    ) -> BrokerUnavailableError:
        results: list[PublishResult | None] = [None] * len(records)
        for index, future in enumerate(futures):
            if future.done() and not future.cancelled() and future.exception() is None:
                results[index] = self._result(records[index], future.result())
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

    @staticmethod
    def _result(record: OutgoingRecord, metadata: Any) -> PublishResult:
        event_id = record.event_id or derive_event_id(metadata.topic, metadata.partition, metadata.offset)
        return PublishResult(metadata.topic, metadata.partition, metadata.offset, event_id)


class NotificationProducer:
    """Publish notification events. Use as `async with NotificationProducer() as producer: ...`.

    Raises InvalidEventError before sending anything when an event does not match the wire format, and
    BrokerUnavailableError (or its PartialPublishError) when Kafka does not confirm within the bound.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        topic: str = EVENTS_TOPIC,
        clock: Callable[[], datetime] = _utc_now,
        **producer_overrides: Any,
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        self._builder = RecordBuilder(clock)
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


class SyncNotificationProducer:
    """Blocking facade for code without an event loop: a NotificationProducer on a private loop thread."""

    def __init__(self, settings: Settings | None = None, *, topic: str = EVENTS_TOPIC, **overrides: Any) -> None:
        self._settings = settings if settings is not None else load_settings()
        self._topic = topic
        self._overrides = overrides
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._producer: NotificationProducer | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._producer is not None:
                return
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="herald-producer", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
            try:
                # aiokafka binds to the loop it is created on, so the producer is built on the loop thread.
                self._producer = self._call(self._create_and_start())
            except BaseException:
                self._stop_loop()
                raise

    async def _create_and_start(self) -> NotificationProducer:
        producer = NotificationProducer(self._settings, topic=self._topic, **self._overrides)
        await producer.start()
        return producer

    def publish(self, event: EventInput) -> PublishResult:
        return self._call(self._started().publish(event))

    def publish_many(self, events: Iterable[EventInput]) -> list[PublishResult]:
        return self._call(self._started().publish_many(list(events)))

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
            if producer is not None:
                try:
                    self._call(producer.close())
                finally:
                    self._stop_loop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _started(self) -> NotificationProducer:
        if self._producer is None:
            self.start()
        assert self._producer is not None  # start() either set it or raised
        return self._producer

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("SyncNotificationProducer is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
