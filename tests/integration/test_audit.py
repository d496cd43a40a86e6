"""`herald audit` for a known sequence: the source events with their offsets and outcomes, each version they
produced, the delivery receipts of each version, and the check against Redis (exit 1 when Redis disagrees)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import orjson
import pytest
import redis.asyncio as aioredis

from herald import keys
from herald.channels.base import Outcome
from herald.config import Settings
from herald.grouping import notification_id_for
from herald.producer import NotificationProducer, OutgoingRecord, RecordSender
from herald.topics import DELIVERY_TOPIC
from tests.integration.conftest import TopicFactory
from tests.integration.test_directory import herald
from tests.support import app_events
from tests.support.events import event_dict
from tests.support.history import apply_like_the_pipeline, cli_env, history_settings

pytestmark = pytest.mark.integration


@pytest.fixture
async def audit_settings(settings: Settings, fresh_topic: TopicFactory) -> AsyncIterator[Settings]:
    mine = history_settings(settings, await fresh_topic("audit", partitions=3))
    client = aioredis.Redis.from_url(mine.redis_url)
    await client.flushdb(asynchronous=True)
    yield mine
    await client.flushdb(asynchronous=True)
    await client.aclose()


def known_sequence(user: str) -> list[dict[str, object]]:
    def like(actor: str, name: str, event_id: str, seconds: int = 0) -> dict[str, object]:
        return event_dict(
            user,
            kind="POST_LIKED",
            actor=actor,
            actor_name=name,
            target="p1",
            channels=("IN_APP", "EMAIL"),
            event_id=f"{user}-{event_id}",
            at=timedelta(seconds=seconds),
        )

    return [
        like("a1", "John", "e1"),  # v1
        like("a2", "Sarah", "e2", 10),  # v2
        like("a1", "John", "e3", 20),  # no change: John is counted already
        like("a1", "John", "e1"),  # a duplicate of e1
        event_dict(user, kind="POST_COMMENTED", actor="a3", actor_name="Li", target="p1", event_id=f"{user}-e4"),
        event_dict(user, kind="POST_LIKED", actor=user, actor_name="Me", target="p1", event_id=f"{user}-e5"),  # self
        app_events.bulk_read(user, before="2026-11-26T09:00:00Z", at=timedelta(minutes=1)),  # reads nothing
    ]


async def publish_receipts(settings: Settings, outcomes: list[Outcome]) -> None:
    sender = RecordSender(settings, DELIVERY_TOPIC, client_id="test-audit-receipts")
    await sender.start()
    try:
        await sender.send([OutgoingRecord(o.user_id.encode(), orjson.dumps(o.receipt()), [], None) for o in outcomes])
    finally:
        await sender.close()


@pytest.fixture
async def audited(audit_settings: Settings) -> tuple[Settings, str, str, str]:
    """A user with the known sequence applied the pipeline's way and two EMAIL receipts of the like group."""
    user = f"audit-{uuid.uuid4().hex[:8]}"
    async with NotificationProducer(audit_settings) as producer:
        await producer.publish_many(known_sequence(user))
    await apply_like_the_pipeline(audit_settings)
    like = notification_id_for(user, "POST_LIKED", "post/p1", f"{user}-e1")
    comment = notification_id_for(user, "POST_COMMENTED", "post/p1", f"{user}-e4")
    await publish_receipts(
        audit_settings,
        [
            Outcome(f"{like}:1:EMAIL", user, "EMAIL", True, 1, 12.0, notification_id=like),
            Outcome(f"{like}:2:EMAIL", user, "EMAIL", False, 5, 40.0, "550 mailbox unavailable", like),
        ],
    )
    return audit_settings, user, like, comment


def test_audit_json_shows_the_whole_trail(audited: tuple[Settings, str, str, str]) -> None:
    settings, user, like, comment = audited
    done = herald("audit", "--user", user, "--json", **cli_env(settings))
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["consistent"] is True
    trails = {t["id"]: t for t in doc["notifications"]}
    assert set(trails) == {like, comment}

    liked = trails[like]
    assert [e["outcome"] for e in liked["events"]] == ["v1", "v2", "no change (actor already counted)"]
    assert [e["offset"] for e in liked["events"]] == sorted(e["offset"] for e in liked["events"])
    assert [(v["version"], v["count"], v["text"]) for v in liked["versions"]] == [
        (1, 1, "John liked your post"),
        (2, 2, "John and Sarah liked your post"),
    ]
    assert [(d["version"], d["status"], d["attempts"], d["error"]) for d in liked["deliveries"]] == [
        (1, "DELIVERED", 1, None),
        (2, "FAILED", 5, "550 mailbox unavailable"),
    ]
    assert liked["final"] == {"version": 2, "count": 2, "read": False}
    assert liked["stored"]["version"] == 2
    assert liked["checked"] is True

    assert [v["version"] for v in trails[comment]["versions"]] == [1]
    assert trails[comment]["deliveries"] == []
    outcomes = [e["outcome"] for e in doc["userEvents"]]
    assert outcomes == [
        "duplicate (event id applied before)",
        "skipped (the actor is the recipient)",
        "read all created up to 2026-11-26T09:00:00.000Z",
    ]


def test_audit_piped_prints_one_full_line_per_trail_item(audited: tuple[Settings, str, str, str]) -> None:
    settings, user, like, _comment = audited
    done = herald("audit", "--user", user, "--notification", like, **cli_env(settings))
    assert done.returncode == 0, done.stderr
    lines = [line.split("\t") for line in done.stdout.splitlines()]
    assert all(len(fields) == 6 for fields in lines)
    assert {fields[0] for fields in lines} == {like}
    kinds = [fields[1] for fields in lines]
    assert kinds == ["event", "version", "event", "version", "event", "delivery", "delivery", "state"]
    assert lines[3][5] == "John and Sarah liked your post"
    assert lines[6][4] == "EMAIL v2"
    assert lines[6][5] == "FAILED after 5 attempt(s): 550 mailbox unavailable"
    assert lines[7][5] == "consistent with Redis"


async def test_audit_exits_1_when_redis_disagrees(audited: tuple[Settings, str, str, str]) -> None:
    settings, user, like, _comment = audited
    client = aioredis.Redis.from_url(settings.redis_url)
    stored = await client.hget(keys.bodies_key(user), like)
    assert stored is not None
    body = orjson.loads(stored)
    await client.hset(keys.bodies_key(user), like, orjson.dumps(body | {"version": 7, "count": 9}))
    await client.aclose()
    done = herald("audit", "--user", user, "--json", **cli_env(settings))
    assert done.returncode == 1
    [trail] = [t for t in json.loads(done.stdout)["notifications"] if t["id"] == like]
    assert trail["differences"] == ["version: recomputed 2, Redis 7", "count: recomputed 2, Redis 9"]


def test_audit_of_an_unknown_notification_exits_1(audited: tuple[Settings, str, str, str]) -> None:
    settings, user, _like, _comment = audited
    done = herald("audit", "--user", user, "--notification", "n_nope", **cli_env(settings))
    assert done.returncode == 1
    assert "no trail of notification n_nope" in done.stderr
