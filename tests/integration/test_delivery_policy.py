"""Preferences at delivery time on real Redis: channels turned off, quiet hours that defer and then deliver once,
digests, hourly limits folded into the digest, and URGENT through all of them. The clock is injected: windows
pass by moving it, never by waiting."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from herald import keys
from herald.channels.base import DeliveryJob, Outcome
from herald.config import Settings
from herald.contacts import Contact, ContactBook
from herald.delivery_gate import DeliveryGate
from herald.outbox import OutboxWorker
from herald.schedule import Schedule, digest_prefix, schedule_key
from tests.support.providers import RecordingProvider

pytestmark = pytest.mark.integration

NIGHT = datetime(2026, 1, 15, 23, 30, tzinfo=UTC)  # quiet in UTC with 22:00-07:00
MORNING = datetime(2026, 1, 16, 7, 0, 1, tzinfo=UTC)
NOON = datetime(2026, 1, 16, 12, 10, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> float:
        return self.now.timestamp()


@dataclass
class Rig:
    client: aioredis.Redis
    channel: str
    user: str
    clock: Clock
    outcomes: list[Outcome] = field(default_factory=list)
    workers: list[tuple[OutboxWorker, RecordingProvider]] = field(default_factory=list)

    def worker(self, *, hourly_limit: int | None = None) -> tuple[OutboxWorker, RecordingProvider]:
        provider = RecordingProvider(self.channel)

        async def record(results: Sequence[tuple[Outcome, DeliveryJob]]) -> None:
            self.outcomes.extend(o for o, _ in results)

        gate = DeliveryGate(self.client, self.channel, clock=self.clock, hourly_limit=hourly_limit, digest_below="HIGH")
        worker = OutboxWorker(
            self.client,
            provider,
            consumer_name=f"c{len(self.workers)}",
            outbox_shards=1,
            on_outcomes=record,
            gate=gate,
            schedule=Schedule(self.client, self.channel),
            clock=self.clock,
        )
        self.workers.append((worker, provider))
        return worker, provider

    async def enqueue(self, n: int, *, priority: str = "NORMAL", kind: str = "MENTIONED", version: int = 1) -> None:
        for i in range(n):
            body = {
                "id": f"{self.user}-n{i}",
                "version": version,
                "type": kind,
                "priority": priority,
                "text": f"note {i}",
                "updatedAt": f"2026-01-15T10:00:{i:02d}.000Z",
            }
            entry = {"id": f"{body['id']}:{version}:{self.channel}", "u": self.user, "d": orjson.dumps(body).decode()}
            await self.client.xadd(keys.outbox_key(self.channel, 0), entry)  # type: ignore[arg-type]

    async def prefs(self, prefs: dict[str, Any]) -> None:
        await self.client.set(keys.preferences_key(self.user), orjson.dumps(prefs))


async def _clean(client: aioredis.Redis, channel: str, user: str) -> None:
    await client.delete(
        keys.outbox_key(channel, 0),
        schedule_key(channel, 0),
        digest_prefix(channel, 0) + user,
        keys.preferences_key(user),
    )


@pytest.fixture(params=["PUSH", "EMAIL"])
async def rig(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Rig]:
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    channel, user = request.param, f"pol-{uuid.uuid4().hex[:8]}"
    await _clean(client, channel, user)
    try:
        yield Rig(client, channel, user, Clock(NOON))
    finally:
        await _clean(client, channel, user)
        await client.aclose()


async def test_a_channel_turned_off_is_not_used_and_the_receipt_says_why(rig: Rig) -> None:
    await rig.prefs({"channels": {"MENTIONED": {rig.channel: False}}})
    worker, provider = rig.worker()
    await rig.enqueue(2, priority="HIGH")
    await worker.run(until_empty=True)
    assert provider.sent == []
    assert [o.status for o in rig.outcomes] == ["SUPPRESSED", "SUPPRESSED"]
    assert f"{rig.channel} is off for MENTIONED" in rig.outcomes[0].receipt()["error"]
    assert await rig.client.xlen(keys.outbox_key(rig.channel, 0)) == 0


async def test_quiet_hours_defer_then_deliver_exactly_once_across_two_workers(rig: Rig) -> None:
    await rig.prefs({"quietHours": {"start": "22:00", "end": "07:00", "timezone": "UTC"}})
    rig.clock.now = NIGHT
    first, first_sent = rig.worker()
    second, second_sent = rig.worker()
    await rig.enqueue(3, priority="HIGH")
    await first.run(until_empty=True)
    assert first_sent.sent == []
    assert first.stats.deferred == 3
    assert await Schedule(rig.client, rig.channel).pending([0]) == 3

    assert await first.release_due() == 0, "released before the quiet hours ended"
    rig.clock.now = MORNING
    moved = [await first.release_due(), await second.release_due()]
    assert sorted(moved) == [0, 3], "a deferred delivery was released twice"
    await first.run(until_empty=True)
    await second.run(until_empty=True)
    delivered = sorted(j.delivery_id for j in [*first_sent.sent, *second_sent.sent])
    assert delivered == [f"{rig.user}-n{i}:1:{rig.channel}" for i in range(3)]


async def test_urgent_goes_through_quiet_hours_and_limits(rig: Rig) -> None:
    await rig.prefs({"quietHours": {"start": "22:00", "end": "07:00", "timezone": "UTC"}})
    rig.clock.now = NIGHT
    worker, provider = rig.worker(hourly_limit=1)
    await rig.enqueue(3, priority="URGENT")
    await worker.run(until_empty=True)
    assert len(provider.sent) == 3
    assert worker.stats.deferred == worker.stats.digested == 0


async def test_the_excess_over_the_hourly_limit_is_folded_into_one_digest(rig: Rig) -> None:
    worker, provider = rig.worker(hourly_limit=2)
    await rig.enqueue(5, priority="HIGH")
    await worker.run(until_empty=True)
    assert len(provider.sent) == 2
    assert worker.stats.digested == 3

    rig.clock.now = NOON.replace(hour=13, minute=0, second=1)  # the next full hour
    assert await worker.release_due() == 1
    await worker.run(until_empty=True)
    digest = provider.sent[-1]
    assert digest.is_digest
    assert digest.payload["digest"]["count"] == 3
    assert {i["id"] for i in digest.digest_items()} == {f"{rig.user}-n{i}" for i in (2, 3, 4)}
    assert digest.delivery_id.startswith(f"digest:{rig.user}:{rig.channel}:")


@pytest.mark.parametrize("rig", ["EMAIL"], indirect=True)
async def test_email_below_high_waits_for_the_digest_which_shows_each_notification_once(rig: Rig) -> None:
    worker, provider = rig.worker()
    await rig.enqueue(2, priority="NORMAL", version=1)
    await rig.enqueue(2, priority="NORMAL", version=2)  # the same two notifications, updated
    await worker.run(until_empty=True)
    assert provider.sent == []
    rig.clock.now = NOON.replace(hour=13, minute=0, second=1)
    await worker.release_due()
    await worker.run(until_empty=True)
    [digest] = provider.sent
    assert digest.payload["digest"]["count"] == 2
    assert sorted(i["version"] for i in digest.digest_items()) == [2, 2]


async def test_recipients_come_from_the_contact_book(rig: Rig) -> None:
    await ContactBook(rig.client).save([Contact(rig.user, email="a@example.org", timezone="Asia/Tokyo")])
    try:
        worker, provider = rig.worker()
        await rig.enqueue(1, priority="HIGH")
        await worker.run(until_empty=True)
        [job] = provider.sent
        assert job.recipient is not None
        assert job.recipient.email == "a@example.org"
        assert job.recipient.timezone == "Asia/Tokyo"
    finally:
        await rig.client.hdel("herald:contacts", rig.user)


async def test_a_redelivered_entry_is_not_folded_into_the_digest_by_its_own_count(rig: Rig) -> None:
    gate = DeliveryGate(rig.client, rig.channel, clock=rig.clock, hourly_limit=1, digest_below="HIGH")
    body = {"id": f"{rig.user}-n0", "version": 1, "type": "MENTIONED", "priority": "HIGH", "text": "x"}
    first = DeliveryJob(f"{rig.user}-n0:1:{rig.channel}", rig.user, body)
    [(_, sent)] = await gate.prepare([first])
    assert sent.verdict.value == "SEND"
    # Its owner died before acknowledging: the same entry comes back, and the hour's count already holds it.
    again = DeliveryJob(first.delivery_id, rig.user, body, attempts_before=1)
    [(_, resent)] = await gate.prepare([again])
    assert resent.verdict.value == "SEND", "a redelivery went into the digest: the user would see it twice"
    # An entry that comes back without ever having been let through (its owner died before deciding) is not
    # waved through: it counts against the limit like any other.
    other = DeliveryJob(f"{rig.user}-n1:1:{rig.channel}", rig.user, {**body, "id": f"{rig.user}-n1"}, attempts_before=1)
    [(_, limited)] = await gate.prepare([other])
    assert limited.verdict.value == "DIGEST"
    await rig.client.delete(*[key async for key in rig.client.scan_iter(keys.user_key(rig.user, "rate:*"))])
