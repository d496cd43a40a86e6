"""Producer SDK overhead: events/s through NotificationProducer.publish_many vs a plain AIOKafkaProducer
sending the same pre-serialized records with the same options, alternating rounds on the same broker.

    .venv/bin/python scripts/bench_produce.py [--events 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from aiokafka.admin import NewTopic

from herald.config import Settings, load_settings
from herald.events import Channel, EventType, NotificationEvent, Priority, encode_event
from herald.kafka import close_client, make_admin, make_producer, start_bounded
from herald.producer import NotificationProducer, RecordBuilder

NOTIFICATION_TYPES = ["POST_LIKED", "POST_COMMENTED", "USER_FOLLOWED", "MENTIONED"]


def make_events(count: int, users: int, seed: int = 7) -> list[NotificationEvent]:
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
        events.append(NotificationEvent.model_validate(wire))
    return events


async def run_sdk(settings: Settings, topic: str, events: list[NotificationEvent]) -> float:
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
    events = make_events(args.events, args.users)
    builder = RecordBuilder()
    records = [(r.key, r.value, r.headers) for r in (builder.build(e) for e in events)]
    mean_bytes = statistics.mean(len(encode_event(e)) for e in events[:1000])
    print(
        f"{args.events} events, ~{mean_bytes:.0f} B each, {args.users} users, compression="
        f"{settings.producer_compression}, linger_ms={settings.producer_linger_ms}, broker {settings.kafka_bootstrap}"
    )
    sdk_rates: list[float] = []
    plain_rates: list[float] = []

    async def rounds(topic: str) -> None:
        for round_no in range(1, args.rounds + 1):
            # Alternate which goes first so broker warm-up and log-segment effects do not favour one side.
            order = ("sdk", "plain") if round_no % 2 else ("plain", "sdk")
            for side in order:
                if side == "sdk":
                    elapsed = await run_sdk(settings, topic, events)
                    sdk_rates.append(args.events / elapsed)
                else:
                    elapsed = await run_plain(settings, topic, records)
                    plain_rates.append(args.events / elapsed)
                print(f"round {round_no} {side:5}: {args.events / elapsed:10,.0f} events/s ({elapsed:.2f}s)")

    await with_topic(settings, settings.events_partitions, rounds)
    for name, rates in (("sdk publish_many", sdk_rates), ("plain aiokafka", plain_rates)):
        print(f"{name:17}: best {max(rates):10,.0f}  median {statistics.median(rates):10,.0f} events/s")
    print(
        f"ratio sdk/plain   : best {max(sdk_rates) / max(plain_rates):.2f}  "
        f"median {statistics.median(sdk_rates) / statistics.median(plain_rates):.2f}  (goal >= 0.9)"
    )


if __name__ == "__main__":
    asyncio.run(main())
