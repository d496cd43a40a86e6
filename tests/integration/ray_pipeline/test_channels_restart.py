"""External channels through the real pipeline: events -> Kafka -> readers -> aggregators -> outbox -> delivery
actors -> local HTTP servers (an SMS API and a webhook receiver). While deliveries are deferred by quiet hours and
gathered into a digest, the delivery actors are killed with SIGKILL; each deferred SMS and the digest still arrive,
once (by idempotency key)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import cast

import orjson
import pytest
import redis.asyncio as aioredis

from herald import keys
from herald.channels.webhook import verify_signature
from herald.config import Settings, load_settings
from herald.contacts import Contact, ContactBook
from herald.producer import NotificationProducer
from herald.schedule import digest_prefix, schedule_key
from pipeline import Pipeline
from tests.integration.conftest import TopicFactory
from tests.support.http_sink import HttpSink, Reply, SeenRequest
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.ray]

QUIET_FOR_S = 20  # long enough to kill the delivery actors while the SMS wait, short enough for a test
SECRET = "test-webhook-secret"
PHONE = "+4915112345678"


def for_user(requests: list[SeenRequest], user: str) -> list[SeenRequest]:
    """This test's requests (its SMS number, its user's webhooks): other pipelines sharing the Redis schedule
    may release their own due deliveries to this test's endpoints."""
    return [
        r
        for r in requests
        if (r.form().get("To") == PHONE if r.path.startswith("/sms") else r.json().get("userId") == user)
    ]


def _answer(request: SeenRequest) -> Reply:
    return Reply(201 if request.path.startswith("/sms") else 200)


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    async with HttpSink(_answer) as running:
        yield running


async def test_deferred_and_digested_deliveries_survive_killed_delivery_actors(
    ray_runtime: None, pipeline_settings: Settings, fresh_topic: TopicFactory, sink: HttpSink
) -> None:
    topic = await fresh_topic("channels", partitions=3)
    settings = load_settings(
        events_topic=topic,
        events_partitions=3,
        reader_group=f"channels-{uuid.uuid4().hex[:6]}",
        gateway_enabled=False,
        readers=1,
        aggregators=1,
        delivery_actors=1,
        delivery_reclaim_idle_s=2.0,
        webhook_url=f"{sink.url}/hook",
        webhook_secret=SECRET,
        sms_url=f"{sink.url}/sms/{{account}}",
        sms_account="acct",
        sms_token="sms-token",
        sms_from="+15550000000",
        delivery_hourly_limits={"WEBHOOK": 1},
    )
    user = f"ch-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    await ContactBook(client).save([Contact(user, phone=PHONE)])
    now = datetime.now(UTC)
    quiet = {
        "start": (now - timedelta(minutes=1)).time().isoformat(timespec="seconds"),
        "end": (now + timedelta(seconds=QUIET_FOR_S)).time().isoformat(timespec="seconds"),
        "timezone": "UTC",
    }
    await client.set(keys.preferences_key(user), orjson.dumps({"quietHours": quiet}))
    running = await asyncio.to_thread(Pipeline(settings, name=f"channels-{user}").start)
    supervisor = running.supervise_in_background()
    try:
        async with NotificationProducer(settings) as producer:
            for i in range(3):
                await producer.publish(
                    {
                        "eventId": f"{user}-e{i}",
                        "type": "NOTIFICATION_CREATED",
                        "userId": user,
                        "priority": "HIGH",
                        "channels": ["IN_APP", "SMS", "WEBHOOK"],
                        "notification": {
                            "type": "MENTIONED",
                            "actor": {"id": f"a{i}", "name": f"A{i}"},
                            "message": f"mention {i}",
                        },
                    }
                )

        # One webhook goes at once (the hourly limit is 1), two wait for the digest; the three SMS wait out the
        # quiet hours. All of it is held in Redis before the delivery actors die.
        async def mine_arrived() -> list[SeenRequest]:
            return for_user(sink.requests, user)

        await eventually(mine_arrived, lambda got: len(got) >= 1, timeout_s=60, what="the first webhook")
        sched_sms = [schedule_key("SMS", s) for s in range(settings.outbox_shards)]
        sched_hook = [schedule_key("WEBHOOK", s) for s in range(settings.outbox_shards)]

        async def mine(keys_: list[str]) -> list[str]:
            """This user's held deliveries and digest markers (other tests and demos share the schedule keys)."""
            members = [m for k in keys_ for m in cast(list[str], await client.zrange(k, 0, -1))]
            return [m for m in members if m == f"digest|{user}" or f'"u":"{user}"' in m]

        digest_list = digest_prefix("WEBHOOK", keys.outbox_shard_of(user, settings.outbox_shards)) + user

        async def held() -> tuple[int, int, int]:
            return len(await mine(sched_sms)), len(await mine(sched_hook)), int(await client.llen(digest_list))

        what = "3 SMS deferred, a digest of 2 held"
        assert await eventually(held, lambda n: n == (3, 1, 2), timeout_s=30, what=what)
        assert time.time() < now.timestamp() + QUIET_FOR_S - 3, "the pipeline was too slow for this test's window"

        before_kill = for_user(sink.requests, user)
        assert len(before_kill) == 1, "an SMS went out during the quiet hours, or the digest left early"
        for health in await asyncio.to_thread(lambda: running.status()["delivery"]):
            os.kill(int(health["pid"]), signal.SIGKILL)
        # The digest's due time moves to now, as an hour passing would (its own window is an hour).
        for key in sched_hook:
            for member in await mine([key]):
                await client.zadd(key, {member: int(time.time() * 1000)}, xx=True)

        def tally() -> Counter[str]:
            return Counter(r.headers["idempotency-key"] for r in for_user(sink.requests, user))

        await eventually(
            mine_arrived,
            lambda got: len({r.headers["idempotency-key"] for r in got}) == 5,
            timeout_s=QUIET_FOR_S + 60,
            what="3 SMS and 2 webhooks",
        )
        counts = tally()
        # The webhook sent before the kill may come again, with the same idempotency key, if its actor died
        # between the send and the acknowledgement (the receiver drops it by key). What was held while the
        # actors died (the deferred SMS, the digest) must arrive exactly once.
        first_key = before_kill[0].headers["idempotency-key"]
        assert all(n == 1 for key, n in counts.items() if key != first_key), f"a held delivery came twice: {counts}"
        assert counts[first_key] <= 2
        sms = [r for r in for_user(sink.requests, user) if r.path.startswith("/sms")]
        hooks = [r for r in for_user(sink.requests, user) if r.path == "/hook"]
        assert hooks[-1].headers["idempotency-key"].startswith(f"digest:{user}:WEBHOOK:")
        assert len(sms) == 3
        assert all(r.form()["To"] == PHONE for r in sms)
        digest = hooks[-1].json()
        assert digest["digest"]["count"] == 2
        for hook in hooks:
            assert verify_signature(
                SECRET,
                hook.headers["x-herald-timestamp"],
                hook.body,
                hook.headers["x-herald-signature"],
                now=time.time(),
            )
    finally:
        supervisor.stop()
        await asyncio.to_thread(running.drain)
        await client.delete(keys.preferences_key(user))
        await client.hdel("herald:contacts", user)
        await client.aclose()
