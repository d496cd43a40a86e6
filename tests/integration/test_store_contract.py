"""One contract for both InboxStores: the same tests against MemoryStore (the unit tier's fake) and RedisStore
(the Lua scripts on the real Redis). Where they differ, the fake would let unit tests pass on wrong behavior."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from herald.config import Settings
from herald.contracts import InboxNotification
from herald.grouping import GroupState
from herald.store import InboxStore, UserChange, UserQuery
from herald.store_memory import MemoryStore
from herald.store_redis import RedisStore
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

CAPACITY = 4
NOW_MS = 1_795_900_000_000


class Clock:
    def __init__(self) -> None:
        self.now_ms = NOW_MS

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[InboxStore]:
    if request.param == "memory":
        yield MemoryStore(Clock(), inbox_capacity=CAPACITY)
        return
    redis_store = RedisStore.from_url(settings.redis_url, inbox_capacity=CAPACITY)
    yield redis_store
    await redis_store.close()


def new_user() -> str:
    return f"contract-{uuid.uuid4().hex[:10]}"


def body(user: str, notification_id: str, cursor: int, created: str = "2026-11-26T10:00:00.000Z") -> InboxNotification:
    return {
        "id": notification_id,
        "version": 1,
        "cursor": cursor,
        "userId": user,
        "type": "MENTIONED",
        "text": notification_id,
        "actors": [],
        "count": 1,
        "target": None,
        "priority": "NORMAL",
        "createdAt": created,
        "updatedAt": created,
    }


def change(user: str, expected: int, *notes: InboxNotification, **fields: Any) -> UserChange:
    """A change from `expected` that adds `notes` (cursors expected+1...) and moves seq past them."""
    result = UserChange(user_id=user, expected_seq=expected, new_seq=expected + len(notes) + 1, **fields)
    result.notifications.extend(notes)
    return result


async def ids_after(store: InboxStore, user: str) -> list[str]:
    return [n["id"] for n in await store.notifications_after(user, 0, 100)]


async def test_seen_ids_are_remembered_and_reported(store: InboxStore) -> None:
    user = new_user()
    assert await store.commit([change(user, 0, seen_event_ids=["e1", "e2"])], now_ms=NOW_MS) == [True]
    (snapshot,) = await store.load([UserQuery(user, ["e1", "e3"], [])])
    assert snapshot.seen == frozenset({"e1"})
    assert snapshot.seq == 1


async def test_a_stale_sequence_number_is_refused_and_writes_nothing(store: InboxStore) -> None:
    user = new_user()
    first = change(user, 0, body(user, "a", 1), seen_event_ids=["e1"])
    racing = change(user, 0, body(user, "b", 1), seen_event_ids=["e2"])
    assert await store.commit([first], now_ms=NOW_MS) == [True]
    assert await store.commit([racing], now_ms=NOW_MS) == [False]
    assert await ids_after(store, user) == ["a"]
    (snapshot,) = await store.load([UserQuery(user, ["e2"], [])])
    assert snapshot.seen == frozenset()


async def test_an_event_applied_before_is_refused(store: InboxStore) -> None:
    user = new_user()
    assert await store.commit([change(user, 0, seen_event_ids=["e1"])], now_ms=NOW_MS) == [True]
    assert await store.commit([change(user, 1, body(user, "x", 2), seen_event_ids=["e1"])], now_ms=NOW_MS) == [False]
    assert await ids_after(store, user) == []


async def test_the_inbox_pages_in_cursor_order_and_keeps_the_newest(store: InboxStore) -> None:
    user = new_user()
    notes = [body(user, f"n{i}", i) for i in range(1, 7)]
    assert await store.commit([change(user, 0, *notes)], now_ms=NOW_MS) == [True]
    # Capacity 4: the two oldest fell off, with their unread marks.
    assert await ids_after(store, user) == ["n3", "n4", "n5", "n6"]
    assert [n["id"] for n in await store.notifications_after(user, 4, 10)] == ["n5", "n6"]
    assert [n["id"] for n in await store.notifications_before(user, None, 2)] == ["n6", "n5"]
    assert [n["id"] for n in await store.notifications_before(user, 5, 10)] == ["n4", "n3"]
    assert await store.unread_count(user) == 4
    assert all(n["read"] is False for n in await store.notifications_after(user, 0, 10))


async def test_reads_deletes_and_read_all_up_to_a_time(store: InboxStore) -> None:
    user = new_user()
    old, new = "2026-11-26T09:00:00.000Z", "2026-11-26T11:00:00.000Z"
    notes = [body(user, "a", 1, old), body(user, "b", 2, old), body(user, "c", 3, new)]
    assert await store.commit([change(user, 0, *notes)], now_ms=NOW_MS) == [True]
    assert await store.commit([change(user, 4, read_ids=["a"], deleted_ids=["b"])], now_ms=NOW_MS) == [True]
    views = {n["id"]: n["read"] for n in await store.notifications_after(user, 0, 10)}
    assert views == {"a": True, "c": False}
    assert await store.unread_count(user) == 1
    # Everything created up to 10:00 is read; "c" (11:00) stays unread, and a new version read in the same
    # batch stays read.
    late = body(user, "d", 6, new)
    cutoff = change(user, 5, late, read_all_before="2026-11-26T10:00:00.000Z", read_in_batch=["d"])
    assert await store.commit([cutoff], now_ms=NOW_MS) == [True]
    assert await store.unread_count(user) == 1
    assert await store.commit([change(user, 7, read_all_before="")], now_ms=NOW_MS) == [True]
    assert await store.unread_count(user) == 0


async def test_application_ids_resolve_to_the_notification_holding_them(store: InboxStore) -> None:
    user = new_user()
    grouped = change(user, 0, body(user, "n_group", 1), aliases={"app-2": "n_group"})
    assert await store.commit([grouped], now_ms=NOW_MS) == [True]
    (snapshot,) = await store.load([UserQuery(user, [], [], ["app-2", "app-9"])])
    assert snapshot.aliases == {"app-2": "n_group"}
    assert await store.mark_read(user, ["app-2"]) == 0


async def test_a_group_state_lives_for_its_ttl(store: InboxStore) -> None:
    user = new_user()
    state = GroupState(
        notification_id="n_g",
        notification_type="POST_LIKED",
        target={"type": "post", "id": "p"},
        window_start_ms=NOW_MS,
        window_end_ms=NOW_MS + 300_000,
        actor_ids={"a1": None, "a2": None},
        recent_actors=(),
        leading_actors=(),
        version=2,
        created_ms=NOW_MS,
        updated_ms=NOW_MS,
    )
    key = "POST_LIKED:post/p"
    assert await store.commit([change(user, 0, groups={key: (state, 300)})], now_ms=NOW_MS) == [True]
    (snapshot,) = await store.load([UserQuery(user, [], [key])])
    assert snapshot.groups[key].actor_ids == {"a1": None, "a2": None}
    assert snapshot.groups[key].version == 2
    if isinstance(store, MemoryStore):
        clock = store._clock_ms
        assert isinstance(clock, Clock)
        clock.now_ms += 301
    await eventually(
        lambda: store.load([UserQuery(user, [], [key])]),
        lambda snapshots: key not in snapshots[0].groups,
        timeout_s=5,
        interval_s=0.05,
        what="the group state expired",
    )
