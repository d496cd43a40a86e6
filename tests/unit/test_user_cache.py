"""The aggregator's memory of its users (herald/user_cache.py): loads it saves, and why it is never trusted
blindly (a second writer, a redelivered event, an expiring group)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import orjson

from herald.applier import InboxApplier
from herald.events import NotificationEvent, decode_event
from herald.store import UserQuery, UserSnapshot
from herald.store_memory import MemoryStore
from tests.support import app_events
from tests.support.events import BASE_TIME, make_event

NOW_MS = int(BASE_TIME.timestamp() * 1000)  # the clock agrees with the events


class CountingStore(MemoryStore):
    """A MemoryStore that counts which users were loaded."""

    def __init__(self, clock: list[int]) -> None:
        super().__init__(lambda: clock[0])
        self.loaded: list[str] = []

    async def load(self, queries: Sequence[UserQuery]) -> list[UserSnapshot]:
        self.loaded += [q.user_id for q in queries]
        return await super().load(queries)


def setup(capacity: int = 100) -> tuple[CountingStore, InboxApplier, list[int]]:
    clock = [NOW_MS]
    store = CountingStore(clock)
    return store, InboxApplier(store, clock_ms=lambda: clock[0], cache_users=capacity), clock


def like(actor: str, seconds: int = 0, user: str = "user123", **extra: Any) -> NotificationEvent:
    return make_event(user=user, actor=actor, actor_name=actor.title(), at=timedelta(seconds=seconds), **extra)


async def test_a_user_is_loaded_once_then_folded_from_memory() -> None:
    store, aggregator, _clock = setup()
    for i, actor in enumerate(["ann", "bob", "cid"]):
        await aggregator.apply([like(actor, i)])
    assert store.loaded == ["user123"]
    assert aggregator.cache.hits == 2
    (note,) = store.snapshot_of("user123")
    assert (note["count"], note["version"], note["text"]) == (3, 3, "Ann and 2 others liked your post")


async def test_a_redelivered_event_is_refused_by_the_commit_and_counted_once() -> None:
    store, aggregator, _clock = setup()
    first = like("ann", event_id="e-ann")
    await aggregator.apply([first])
    await aggregator.apply([like("bob", 1)])
    # Memory has no seen ids: the commit refuses e-ann, the user is loaded, and it is a duplicate.
    report = await aggregator.apply([like("ann", event_id="e-ann"), like("cid", 2)])
    assert (report.duplicates, report.applied, report.conflicts_retried) == (1, 1, 1)
    assert store.loaded == ["user123", "user123"]
    (note,) = store.snapshot_of("user123")
    assert (note["count"], note["version"]) == (3, 3)


async def test_a_second_writer_behind_its_back_is_noticed() -> None:
    store, first_writer, clock = setup()
    second_writer = InboxApplier(store, clock_ms=lambda: clock[0])
    await first_writer.apply([like("ann")])
    await second_writer.apply([like("bob", 1)])  # a replay tool, another pipeline
    report = await first_writer.apply([like("cid", 2)])  # its memory says seq after ann: refused, reloaded
    assert report.conflicts_retried == 1
    (note,) = store.snapshot_of("user123")
    assert (note["count"], note["version"], note["text"]) == (3, 3, "Ann and 2 others liked your post")


async def test_an_expiring_group_is_asked_of_the_store() -> None:
    store, aggregator, clock = setup()
    await aggregator.apply([like("ann")])
    clock[0] += 5 * 60_000 + 60_000 - 1_000  # within the margin of the group's expiry
    await aggregator.apply([like("bob", 400)])  # outside the 5-minute window: a new notification
    assert store.loaded == ["user123", "user123"]
    assert len(store.snapshot_of("user123")) == 2


async def test_the_least_recently_used_users_are_forgotten() -> None:
    store, aggregator, _clock = setup(capacity=2)
    for user in ("u1", "u2", "u3"):
        await aggregator.apply([like("ann", user=user)])
    assert len(aggregator.cache) == 2
    await aggregator.apply([like("bob", 1, user="u3"), like("bob", 1, user="u2"), like("bob", 1, user="u1")])
    assert store.loaded == ["u1", "u2", "u3", "u1"]


async def test_reads_by_id_are_resolved_by_the_store() -> None:
    store, aggregator, _clock = setup()
    created = decode_event(
        orjson.dumps(app_events.prisma_created("u1", actor="john", notification_id="a1")), fallback_event_id="k:0:1"
    )
    read = decode_event(orjson.dumps(app_events.read("u1", "a1")), fallback_event_id="k:0:2")
    await aggregator.apply([created])
    await aggregator.apply([read])
    assert store.loaded == ["u1", "u1"]
    assert await store.unread_count("u1") == 0


async def test_nothing_is_remembered_with_capacity_zero() -> None:
    store, aggregator, _clock = setup(capacity=0)
    await aggregator.apply([like("ann")])
    await aggregator.apply([like("bob", 1)])
    assert store.loaded == ["user123", "user123"]
