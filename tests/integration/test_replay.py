"""`herald replay` against real Kafka and Redis: after the database is flushed it gives back the same inboxes the
pipeline's apply path built, a second run changes nothing, --user rebuilds one user from one partition, and a
replay never runs past the live readers' commit unless told to."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from herald import keys
from herald.config import Settings
from herald.event_log import partition_of_key
from herald.producer import NotificationProducer
from herald.workload import social_stream
from tests.integration.conftest import TopicFactory
from tests.integration.test_directory import herald
from tests.support import app_events
from tests.support.events import event_dict
from tests.support.history import apply_like_the_pipeline, cli_env, history_settings, inboxes

pytestmark = pytest.mark.integration

PARTITIONS = 4


@pytest.fixture
async def replay_settings(settings: Settings, fresh_topic: TopicFactory) -> AsyncIterator[Settings]:
    topic = await fresh_topic("replay", partitions=PARTITIONS)
    mine = history_settings(settings, topic)
    client = aioredis.Redis.from_url(mine.redis_url)
    await client.flushdb(asynchronous=True)
    yield mine
    await client.flushdb(asynchronous=True)
    await client.aclose()


def workload(prefix: str, *, duplicate: bool = True) -> tuple[list[dict[str, object]], list[str]]:
    """Groups growing over several batches, singles, an event published twice, reads and a delete."""
    events: list[dict[str, object]] = list(
        social_stream(
            prefix, events=240, users=12, base=datetime(2026, 11, 26, 10, tzinfo=UTC), spread=timedelta(minutes=20)
        )
    )
    users = sorted({str(e["userId"]) for e in events})
    if duplicate:
        events.append(dict(events[5]))  # the same eventId again: must count once
    first, second = users[0], users[1]
    events.append(app_events.bulk_read(first, before="2026-11-26T10:10:00Z"))
    events.append(app_events.prisma_created(second, actor="app-actor", notification_id="app-n1", kind="MENTIONED"))
    events.append(app_events.read(second, "app-n1"))
    events.append(app_events.prisma_created(second, actor="app-actor2", notification_id="app-n2", kind="MENTIONED"))
    events.append(app_events.deleted(second, "app-n2"))
    return events, users


async def publish(settings: Settings, events: list[dict[str, object]]) -> None:
    async with NotificationProducer(settings) as producer:
        await producer.publish_many(events)


def replay_json(settings: Settings, *args: str) -> dict[str, Any]:
    done = herald("replay", *args, "--json", **cli_env(settings))
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)  # exactly one JSON document on stdout
    return document


async def flush(settings: Settings) -> None:
    client = aioredis.Redis.from_url(settings.redis_url)
    await client.flushdb(asynchronous=True)
    await client.aclose()


async def test_replay_after_flush_gives_back_the_same_inboxes(replay_settings: Settings) -> None:
    events, users = workload("rp")
    await publish(replay_settings, events)
    assert await apply_like_the_pipeline(replay_settings) == len(events)
    before = await inboxes(replay_settings, users)
    assert sum(len(i["notifications"]) for i in before.values()) > len(users)  # something to lose
    assert any(n["count"] > 1 for i in before.values() for n in i["notifications"])  # groups, not only singles

    await flush(replay_settings)
    assert all(not i["notifications"] for i in (await inboxes(replay_settings, users)).values())

    group = f"test-replay-{uuid.uuid4().hex[:8]}"
    report = replay_json(replay_settings, "--since", "earliest", "--group", group)
    assert report["records"] == len(events)
    assert report["duplicates"] == 1  # the event published twice
    assert report["applied"] == len(events) - 1
    assert report["heldBack"] == 0
    assert await inboxes(replay_settings, users) == before

    # The group committed where it got to: `herald lag` shows it caught up, and a rerun under it has nothing left.
    lag = json.loads(herald("lag", "--group", group, "--json", **cli_env(replay_settings)).stdout)
    assert lag["groups"][0]["lag"] == 0
    assert len(lag["groups"][0]["partitions"]) == PARTITIONS
    resumed = replay_json(replay_settings, "--since", "earliest", "--group", group, "--dry-run")
    assert all(p["resumed"] and p["records"] == 0 for p in resumed["partitions"])

    again = replay_json(replay_settings, "--since", "earliest")
    assert again["applied"] == 0
    assert again["duplicates"] == len(events)
    assert again["notificationsChanged"] == 0
    assert await inboxes(replay_settings, users) == before


async def test_replay_of_one_user_reads_only_their_partition(replay_settings: Settings) -> None:
    events, users = workload("ru")
    await publish(replay_settings, events)
    await apply_like_the_pipeline(replay_settings)
    before = await inboxes(replay_settings, users)
    await flush(replay_settings)

    user = users[1]
    report = replay_json(replay_settings, "--since", "earliest", "--user", user)
    partitions = report["partitions"]
    assert isinstance(partitions, list)
    assert [p["partition"] for p in partitions] == [partition_of_key(user.encode(), PARTITIONS)]
    assert report["events"] == sum(1 for e in events if e["userId"] == user)
    after = await inboxes(replay_settings, users)
    assert after[user] == before[user]
    assert all(not after[u]["notifications"] for u in users if u != user)


async def test_replay_stops_at_the_live_readers_commit(replay_settings: Settings, kafka_bootstrap: str) -> None:
    events, users = workload("rc", duplicate=False)
    await publish(replay_settings, events)
    # The live readers committed one partition up to offset 3 only: the rest of it is theirs to apply (and
    # deliver). The others they never committed (not running yet): those are replayed whole.
    partition = partition_of_key(users[0].encode(), PARTITIONS)
    readers = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=replay_settings.reader_group, enable_auto_commit=False
    )
    await readers.start()
    tp = TopicPartition(replay_settings.events_topic, partition)
    readers.assign([tp])
    await readers.commit({tp: 3})
    await readers.stop()

    plan = json.loads(herald("replay", "--since", "earliest", "--dry-run", "--json", **cli_env(replay_settings)).stdout)
    first = next(p for p in plan["partitions"] if p["partition"] == partition)
    assert (first["start"], first["stop"], first["readersAt"]) == (0, 3, 3)
    assert first["heldBack"] > 0

    report = replay_json(replay_settings, "--since", "earliest")
    assert report["records"] == len(events) - first["heldBack"]
    everything = replay_json(replay_settings, "--since", "earliest", "--past-readers")
    assert everything["records"] == len(events)
    assert everything["applied"] == first["heldBack"]  # only what the first run left to the readers


def test_replay_refuses_bad_input() -> None:
    done = herald("replay", "--since", "last tuesday")
    assert done.returncode == 2
    assert "not a time" in done.stderr
    readers = herald("replay", "--since", "1h", "--group", "herald-readers", HERALD_READER_GROUP="herald-readers")
    assert readers.returncode == 2
    assert "the live readers' group" in readers.stderr


async def test_replayed_groups_live_as_long_as_they_did_live(replay_settings: Settings, kafka_bootstrap: str) -> None:
    # Records stamped three days ago, like the events they carry: the group opened then must get the TTL the live
    # aggregator gave it (its window end minus that time, plus the late allowance), not just the late allowance
    # that the wall clock would leave it, or a replay slower than that would split the group in two.
    user = f"rt-{uuid.uuid4().hex[:8]}"
    at = datetime.now(UTC) - timedelta(days=3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i, seconds in enumerate((0, 30)):
            wire = event_dict(user, actor=f"a{i}", at=timedelta(seconds=seconds), base=at, event_id=f"{user}-{i}")
            stamp_ms = int((at + timedelta(seconds=seconds)).timestamp() * 1000)
            await producer.send_and_wait(
                replay_settings.events_topic, json.dumps(wire).encode(), key=user.encode(), timestamp_ms=stamp_ms
            )
    finally:
        await producer.stop()
    replay_json(replay_settings, "--since", "earliest", "--user", user)
    client = aioredis.Redis.from_url(replay_settings.redis_url)
    ttl_ms = await client.pttl(keys.group_state_key(user, "POST_LIKED:post/p456"))
    await client.aclose()
    window_left_ms = 5 * 60_000 - 30_000  # POST_LIKED's 5 minute window, opened 30 s before the last record
    assert window_left_ms < ttl_ms <= window_left_ms + replay_settings.late_allowance_s * 1000
    [note] = (await inboxes(replay_settings, [user]))[user]["notifications"]
    assert (note["count"], note["version"]) == (2, 2)
