"""Producer SDK overhead: events/s through NotificationProducer.publish_many vs a plain AIOKafkaProducer
sending the same pre-serialized records with the same options, rotating rounds on the same broker.

The SDK is measured with both inputs a user may hand it: camelCase dicts as the existing application builds
them (validated by publish_many, inside the timing) and already-built NotificationEvent models (validated when
the caller built them, outside the timing). The plain producer gets the encoded bytes, keys and headers. All
inputs are built before the clock starts and frozen out of the garbage collector's scans; both producers come
from herald.kafka.make_producer (same linger, compression, batch size, acks, idempotence) and are started
before it.

    .venv/bin/python scripts/bench_produce.py [--events 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from aiokafka.admin import NewTopic

from herald.config import Settings, load_settings
from herald.events import Channel, EventType, NotificationEvent, Priority
from herald.kafka import close_client, make_admin, make_producer, start_bounded
from herald.producer import EventInput, NotificationProducer, RecordBuilder

NOTIFICATION_TYPES = ["POST_LIKED", "POST_COMMENTED", "USER_FOLLOWED", "MENTIONED"]


def make_events(count: int, users: int, seed: int = 7) -> list[dict[str, object]]:
    """Realistic mix: mostly NOTIFICATION_CREATED with actors/targets, some read/delete, many users."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 26, 10, tzinfo=UTC)
    events = []
    for i in range(count):
        user = f"user{rng.randrange(users)}"
        kind = rng.choices(
            [EventType.NOTIFICATION_CREATED, EventType.NOTIFICATION_READ, EventType.NOTIFICATION_DELETED],
            weights=[90, 8, 2],
        )[0]
        wire: dict[str, object] = {
            "type": kind.value,
            "eventId": str(uuid.UUID(int=rng.getrandbits(128))),
            "userId": user,
            "timestamp": (start + timedelta(milliseconds=i)).isoformat(),
            "source": "bench",
        }
        if kind is EventType.NOTIFICATION_CREATED:
            actor = rng.randrange(5000)
            wire["notification"] = {
                "type": rng.choice(NOTIFICATION_TYPES),
                "actor": {"id": f"u{actor}", "name": f"Actor {actor}", "avatarUrl": f"https://cdn/a/{actor}.png"},
                "target": {"type": "post", "id": f"p{rng.randrange(20000)}", "title": "My trip"},
                "data": {},
            }
            wire["channels"] = [Channel.IN_APP.value, Channel.PUSH.value]
            wire["priority"] = rng.choice(list(Priority)).value
            wire["metadata"] = {"rooms": [f"user:{user}", f"notifications:{user}"], "requiresRealtime": True}
        events.append(wire)
    return events


async def run_sdk(settings: Settings, topic: str, events: Sequence[EventInput]) -> float:
    async with NotificationProducer(settings, topic=topic) as producer:
        started = time.perf_counter()
        await producer.publish_many(events)
        return time.perf_counter() - started


async def run_plain(
    settings: Settings, topic: str, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]
) -> float:
    producer = make_producer(settings)
    await start_bounded(producer, settings, "bench plain producer")
    try:
        started = time.perf_counter()
        futures = [await producer.send(topic, value, key=key, headers=headers) for key, value, headers in records]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await close_client(producer)


async def with_topic(settings: Settings, partitions: int, body: Callable[[str], Awaitable[None]]) -> None:
    topic = f"bench-produce-{uuid.uuid4().hex[:8]}"
    admin = make_admin(settings)
    await start_bounded(admin, settings, "bench admin")
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
        await body(topic)
    finally:
        await admin.delete_topics([topic])
        await close_client(admin)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = load_settings()
    dicts = make_events(args.events, args.users)
    models = [NotificationEvent.model_validate(d) for d in dicts]
    builder = RecordBuilder()
    records = [(r.key, r.value, r.headers) for r in (builder.build(e) for e in models)]
    # The inputs are millions of long-lived objects: without this, whichever side happens to trigger a full
    # collection pays ~1 s (on a small box) for scanning the benchmark's own inputs, a coin toss per round.
    gc.collect()
    gc.freeze()
    mean_bytes = statistics.mean(len(value) for _, value, _ in records[:1000])
    print(
        f"{args.events} events, ~{mean_bytes:.0f} B each, {args.users} users, compression="
        f"{settings.producer_compression}, linger_ms={settings.producer_linger_ms}, broker {settings.kafka_bootstrap}"
    )
    sides: dict[str, Callable[[str], Awaitable[float]]] = {
        "sdk dicts": lambda topic: run_sdk(settings, topic, dicts),
        "sdk models": lambda topic: run_sdk(settings, topic, models),
        "plain": lambda topic: run_plain(settings, topic, records),
    }
    rates: dict[str, list[float]] = {side: [] for side in sides}

    async def rounds(topic: str) -> None:
        names = list(sides)
        for round_no in range(1, args.rounds + 1):
            # Rotate which goes first so broker warm-up and log-segment effects do not favour one side.
            shift = (round_no - 1) % len(names)
            for side in names[shift:] + names[:shift]:
                elapsed = await sides[side](topic)
                rates[side].append(args.events / elapsed)
                print(f"round {round_no} {side:10}: {args.events / elapsed:10,.0f} events/s ({elapsed:.2f}s)")

    await with_topic(settings, settings.events_partitions, rounds)
    for side, side_rates in rates.items():
        print(f"{side:10}: best {max(side_rates):10,.0f}  median {statistics.median(side_rates):10,.0f} events/s")
    plain = rates["plain"]
    for side in ("sdk dicts", "sdk models"):
        print(
            f"ratio {side}/plain: best {max(rates[side]) / max(plain):.2f}  "
            f"median {statistics.median(rates[side]) / statistics.median(plain):.2f}  (goal >= 0.9)"
        )


if __name__ == "__main__":
    asyncio.run(main())
