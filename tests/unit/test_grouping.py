"""Rules, windows and texts (docs/architecture.md, Aggregation), through the InboxApplier over an in-memory store
and a fake clock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from herald.applier import InboxApplier, iso_ms
from herald.events import NotificationEvent
from herald.grouping import DEFAULT_RULES, render_text, window_accepts
from herald.store import UserChange
from herald.store_memory import MemoryStore
from tests.support.events import BASE_TIME, event_dict, make_event

NOW_MS = int(BASE_TIME.timestamp() * 1000)


class FakeClock:
    def __init__(self, now_ms: int = NOW_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryStore:
    return MemoryStore(clock, inbox_capacity=50)


@pytest.fixture
def aggregator(store: MemoryStore, clock: FakeClock) -> InboxApplier:
    return InboxApplier(store, clock_ms=clock, late_allowance_ms=60_000, delivery_channels=("IN_APP", "PUSH"))


@pytest.mark.parametrize(
    ("names", "count", "text"),
    [
        (["John"], 1, "John liked your post"),
        (["John", "Sarah"], 2, "John and Sarah liked your post"),
        (["John", "Sarah"], 3, "John and 2 others liked your post"),
        (["John", "Sarah"], 6, "John and 5 others liked your post"),
    ],
)
def test_render_text(names: list[str], count: int, text: str) -> None:
    assert render_text("liked your post", names, count) == text


def test_window_is_half_open_with_late_allowance() -> None:
    window = {"window_start_ms": 1_000_000, "window_ms": 300_000, "late_allowance_ms": 60_000}
    assert window_accepts(event_ms=1_000_000, **window)
    assert window_accepts(event_ms=1_299_999, **window)
    assert not window_accepts(event_ms=1_300_000, **window)
    assert window_accepts(event_ms=940_000, **window)
    assert not window_accepts(event_ms=939_999, **window)


async def test_design_example_three_likes(aggregator: InboxApplier, store: MemoryStore) -> None:
    events = [
        make_event(actor="u42", actor_name="John"),
        make_event(actor="u43", actor_name="Sarah", at=timedelta(minutes=1)),
        make_event(actor="u44", actor_name="Mike", at=timedelta(minutes=4)),
    ]
    for event in events:  # one batch each, so every like is its own state change
        await aggregator.apply([event])
    (note,) = store.snapshot_of("user123")
    assert note["text"] == "John and 2 others liked your post"
    assert note["version"] == 3
    assert note["count"] == 3
    assert [a["name"] for a in note["actors"]] == ["Mike", "Sarah", "John"]
    assert note["read"] is False
    # Every version pushed live to the user's gateways with its commit, in order; IN_APP needs no outbox.
    assert [n["version"] for n in live_notes(store)] == [1, 2, 3]
    assert [(e["from"], e["to"]) for e in store.live] == [(0, 2), (2, 4), (4, 6)]
    assert [e["unread"] for e in store.live] == [1, 1, 1]
    assert store.outbox == []


async def test_one_batch_coalesces_into_one_change(aggregator: InboxApplier, store: MemoryStore) -> None:
    report = await aggregator.apply(
        [make_event(actor=f"a{i}", actor_name=f"A{i}", at=timedelta(seconds=i)) for i in range(6)]
    )
    assert report.applied == 6
    (note,) = store.snapshot_of("user123")
    assert (note["version"], note["count"], note["text"]) == (6, 6, "A0 and 5 others liked your post")
    assert len(note["actors"]) == DEFAULT_RULES["POST_LIKED"].actors_shown
    assert [(n["id"], n["version"]) for n in live_notes(store)] == [(note["id"], 6)]


async def test_like_after_window_opens_new_notification(aggregator: InboxApplier, store: MemoryStore) -> None:
    await aggregator.apply([make_event(actor="u42")])
    await aggregator.apply([make_event(actor="u43", actor_name="Sarah", at=timedelta(minutes=5, seconds=1))])
    first, second = store.snapshot_of("user123")
    assert first["id"] != second["id"]
    assert (first["text"], second["text"]) == ("John liked your post", "Sarah liked your post")
    assert await store.unread_count("user123") == 2


async def test_like_just_inside_window_joins(aggregator: InboxApplier, store: MemoryStore) -> None:
    await aggregator.apply([make_event(actor="u42")])
    await aggregator.apply([make_event(actor="u43", actor_name="Sarah", at=timedelta(minutes=4, seconds=59))])
    (note,) = store.snapshot_of("user123")
    assert note["text"] == "John and Sarah liked your post"


@pytest.mark.parametrize(
    ("kind", "inside", "outside", "two_text", "shown"),
    [
        ("POST_COMMENTED", timedelta(minutes=9), timedelta(minutes=10), "John and Sarah commented on your post", 2),
        ("USER_FOLLOWED", timedelta(minutes=59), timedelta(hours=1), "John and Sarah started following you", 5),
    ],
)
async def test_rule_windows_and_texts(
    aggregator: InboxApplier,
    store: MemoryStore,
    kind: str,
    inside: timedelta,
    outside: timedelta,
    two_text: str,
    shown: int,
) -> None:
    await aggregator.apply([make_event(kind=kind, actor="u42")])
    await aggregator.apply([make_event(kind=kind, actor="u43", actor_name="Sarah", at=inside)])
    await aggregator.apply([make_event(kind=kind, actor="u44", actor_name="Mike", at=outside)])
    first, second = store.snapshot_of("user123")
    assert first["text"] == two_text
    assert second["text"] == f"Mike {two_text.split(' and Sarah ')[1]}"
    assert DEFAULT_RULES[kind].actors_shown == shown


async def test_same_actor_counts_once(aggregator: InboxApplier, store: MemoryStore) -> None:
    await aggregator.apply([make_event(actor="u42"), make_event(actor="u42", at=timedelta(seconds=30))])
    await aggregator.apply([make_event(actor="u42", at=timedelta(minutes=1))])
    (note,) = store.snapshot_of("user123")
    assert (note["count"], note["version"], note["text"]) == (1, 1, "John liked your post")
    assert len(live_notes(store)) == 1


async def test_type_without_rule_is_not_aggregated(aggregator: InboxApplier, store: MemoryStore) -> None:
    await aggregator.apply(
        [
            make_event(kind="MENTIONED", actor="u42", title="Mention", message="John mentioned you"),
            make_event(kind="MENTIONED", actor="u43", title="Mention", message="Sarah mentioned you"),
        ]
    )
    notes = store.snapshot_of("user123")
    assert [n["text"] for n in notes] == ["John mentioned you", "Sarah mentioned you"]
    assert all(n["title"] == "Mention" and n["count"] == 1 for n in notes)


async def test_urgent_bypasses_aggregation(aggregator: InboxApplier, store: MemoryStore) -> None:
    await aggregator.apply([make_event(actor="u42"), make_event(actor="u43", priority="URGENT")])
    assert len(store.snapshot_of("user123")) == 2


async def test_groups_are_per_target_and_user(aggregator: InboxApplier, store: MemoryStore) -> None:
    await aggregator.apply(
        [
            make_event(actor="u42", target="p1"),
            make_event(actor="u43", target="p2"),
            make_event(user="other", actor="u44", target="p1"),
        ]
    )
    assert len(store.snapshot_of("user123")) == 2
    assert len(store.snapshot_of("other")) == 1


async def test_redelivery_changes_nothing(aggregator: InboxApplier, store: MemoryStore) -> None:
    events = [make_event(actor=f"a{i}", at=timedelta(seconds=i)) for i in range(3)]
    await aggregator.apply(events)
    before = store.snapshot_of("user123")
    pushed_before = len(live_notes(store))
    report = await aggregator.apply(events)
    assert report.duplicates == 3
    assert report.applied == 0
    assert store.snapshot_of("user123") == before
    assert len(live_notes(store)) == pushed_before


async def test_group_expires_by_clock(aggregator: InboxApplier, store: MemoryStore, clock: FakeClock) -> None:
    await aggregator.apply([make_event(actor="u42")])
    clock.now_ms += 5 * 60_000 + 60_000 + 1  # past window end plus the late allowance
    await aggregator.apply([make_event(actor="u43", at=timedelta(minutes=1))])
    assert len(store.snapshot_of("user123")) == 2


async def test_channels_without_delivery_pool_get_no_outbox_entry(aggregator: InboxApplier, store: MemoryStore) -> None:
    report = await aggregator.apply([make_event(channels=("IN_APP", "EMAIL", "PUSH"))])
    # IN_APP goes live, PUSH (which has a pool here) to the outbox, EMAIL (no pool) is counted.
    assert sorted(e.channel for _, e in store.outbox) == ["PUSH"]
    assert len(live_notes(store)) == 1
    assert report.channels_without_provider == 1


async def test_in_app_off_pushes_nothing_live(aggregator: InboxApplier, store: MemoryStore) -> None:
    await aggregator.apply([make_event(channels=("PUSH",))])
    assert live_notes(store) == []
    assert [e.channel for _, e in store.outbox] == ["PUSH"]


def live_notes(store: MemoryStore) -> list[dict[str, Any]]:
    return [note for entry in store.live for note in entry["notes"]]


async def test_mark_read_and_update_makes_unread_again(aggregator: InboxApplier, store: MemoryStore) -> None:
    await aggregator.apply([make_event(actor="u42")])
    assert await store.mark_read("user123", None) == 0
    await aggregator.apply([make_event(actor="u43", at=timedelta(minutes=1))])
    assert await store.unread_count("user123") == 1


async def test_read_event_without_ids_is_rejected(aggregator: InboxApplier) -> None:
    read = NotificationEvent.model_validate(event_dict(event_id="r1") | {"type": "NOTIFICATION_READ"})
    report = await aggregator.apply([read])
    assert len(report.rejected) == 1
    assert "notificationIds" in report.rejected[0][1]


async def test_inbox_capacity_drops_oldest(aggregator: InboxApplier, store: MemoryStore) -> None:
    await aggregator.apply([make_event(kind="MENTIONED", actor=f"a{i}") for i in range(60)])
    notes = store.snapshot_of("user123")
    assert len(notes) == 50
    assert await store.unread_count("user123") == 50


class RefusingOnce(MemoryStore):
    """Refuses the first commit it is asked for, as Redis does when another writer moved the user's sequence."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.refused = 0

    async def commit(self, changes: Sequence[UserChange], *, now_ms: int) -> list[bool]:
        if not self.refused:
            self.refused = 1
            return [False] * len(changes)
        return await super().commit(changes, now_ms=now_ms)


async def test_a_refused_commit_folds_again_from_an_untouched_snapshot(clock: FakeClock) -> None:
    store = RefusingOnce(clock)
    store.refused = 1  # let the first batch through
    aggregator = InboxApplier(store, clock_ms=clock)
    await aggregator.apply([make_event(actor="a", actor_name="A")])
    store.refused = 0
    # The first fold of this batch grows the group to A, B, C; its commit is refused. The second fold must
    # start again from what the store holds (A only), not from a snapshot the first fold grew in place.
    report = await aggregator.apply(
        [
            make_event(actor="b", actor_name="B", at=timedelta(seconds=1)),
            make_event(actor="c", actor_name="C", at=timedelta(seconds=2)),
        ]
    )
    assert report.conflicts_retried == 1
    (note,) = store.snapshot_of("user123")
    assert (note["count"], note["version"], note["text"]) == (3, 3, "A and 2 others liked your post")


async def test_tens_of_thousands_of_actors_count_once_each(aggregator: InboxApplier, store: MemoryStore) -> None:
    actors = [f"fan{i}" for i in range(20_000)]
    first = [make_event(actor=a, actor_name=a, at=timedelta(milliseconds=i)) for i, a in enumerate(actors)]
    await aggregator.apply(first[:10_000])
    await aggregator.apply(first[10_000:])
    # The same likes again under new event ids (a client retrying): every actor is already counted.
    again = [
        make_event(actor=a, actor_name=a, at=timedelta(milliseconds=i), event_id=f"retry-{i}")
        for i, a in enumerate(actors)
    ]
    report = await aggregator.apply(again)
    assert report.applied == 20_000
    (note,) = store.snapshot_of("user123")
    assert (note["count"], note["version"]) == (20_000, 20_000)
    assert note["text"] == "fan0 and 19999 others liked your post"
    assert [a["id"] for a in note["actors"]] == ["fan19999", "fan19998", "fan19997"]


@pytest.mark.parametrize("epoch_ms", [0, 1, 999, 1_000, 1_764_151_200_123, 1_795_903_833_544, 4_102_444_799_999])
def test_iso_ms_writes_utc_with_milliseconds(epoch_ms: int) -> None:
    expected = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    assert iso_ms(epoch_ms) == expected.replace("+00:00", "Z")
