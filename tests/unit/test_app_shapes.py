"""The existing application's event shapes, decoded and folded: flat fields, `data: null`, CRITICAL, the
processor shape, singular and bulk reads and deletes by the application's own ids, self-notifications."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import orjson
import pytest

from herald.applier import ApplyReport, InboxApplier
from herald.directory import MemoryUserDirectory, UserProfile
from herald.errors import InvalidEventError
from herald.events import Channel, EventType, Priority, decode_event
from herald.grouping import ActorInfo
from herald.prepared import prepare
from herald.store import INBOX_CHANGE
from herald.store_memory import MemoryStore
from tests.support import app_events
from tests.support.events import BASE_TIME

NOW_MS = int(BASE_TIME.timestamp() * 1000)
_offsets = itertools.count()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(lambda: NOW_MS)


@pytest.fixture
def directory() -> MemoryUserDirectory:
    return MemoryUserDirectory()


@pytest.fixture
def aggregator(store: MemoryStore, directory: MemoryUserDirectory) -> InboxApplier:
    return InboxApplier(store, clock_ms=lambda: NOW_MS, delivery_channels=("IN_APP",), directory=directory)


async def apply(aggregator: InboxApplier, *wires: dict[str, Any]) -> ApplyReport:
    """As the reader does: no eventId on the wire, so the id comes from the record's coordinates."""
    events = [
        decode_event(orjson.dumps(w), fallback_event_id=f"kafka:notification-events:0:{next(_offsets)}") for w in wires
    ]
    return await aggregator.apply(events)


def test_prisma_record_decodes_with_flat_fields_and_null_data() -> None:
    wire = app_events.prisma_created("u1", actor="john", priority="CRITICAL", channels=("IN_APP", "WEBHOOK"))
    event = decode_event(orjson.dumps(wire))
    assert event.priority is Priority.CRITICAL
    assert event.channels == [Channel.IN_APP, Channel.WEBHOOK]
    assert event.notification is not None
    assert event.notification.data == {}
    actor, target = event.notification.effective_actor(), event.notification.effective_target()
    assert actor is not None
    assert actor.id == "john"
    assert target is not None
    assert (target.type, target.id) == ("post", "p1")
    assert (event.notification.model_extra or {})["isRead"] is False  # the record's other fields are kept


def test_processor_shape_is_normalized() -> None:
    wire = app_events.processor_event("u1", actor="john", kind="POST_COMMENTED", entity_id="p9")
    event = decode_event(orjson.dumps(wire), fallback_event_id="kafka:t:0:1")
    assert event.type is EventType.NOTIFICATION_CREATED
    assert event.user_id == "u1"
    assert event.notification is not None
    assert event.notification.type == "POST_COMMENTED"
    assert event.notification.actor_id == "john"
    assert event.notification.entity_id == "p9"


def test_processor_shape_without_time_takes_the_record_time() -> None:
    wire = app_events.processor_event("u1", actor="john", with_timestamp=False)
    event = decode_event(orjson.dumps(wire), fallback_timestamp_ms=NOW_MS + 5)
    assert event.timestamp_ms == NOW_MS + 5
    with pytest.raises(InvalidEventError) as excinfo:
        decode_event(orjson.dumps(wire))
    assert excinfo.value.field == "timestamp"


def test_processor_shape_without_recipient_names_it() -> None:
    wire = app_events.processor_event("u1", actor="john")
    del wire["data"]["userId"]
    with pytest.raises(InvalidEventError, match=r"data\.userId"):
        decode_event(orjson.dumps(wire))


def test_unknown_type_without_data_is_still_an_error() -> None:
    wire = {"type": "SOMETHING", "userId": "u1", "timestamp": "2026-11-26T10:00:00Z"}
    with pytest.raises(InvalidEventError) as excinfo:
        decode_event(orjson.dumps(wire))
    assert excinfo.value.field == "type"


def test_singular_notification_id_is_understood() -> None:
    event = decode_event(orjson.dumps(app_events.read("u1", "n-app-1")), fallback_event_id="kafka:t:0:1")
    assert prepare(event).notification_ids == ["n-app-1"]


async def test_three_likes_two_posts_stay_apart(
    aggregator: InboxApplier, store: MemoryStore, directory: MemoryUserDirectory
) -> None:
    """The defect this fixes: john and sarah on p1 and mike on p2 became ONE "Someone liked your post"."""
    await directory.remember([UserProfile(i, i.title(), None) for i in ("john", "sarah", "mike")])
    report = await apply(
        aggregator,
        app_events.prisma_created("u1", actor="john", entity_id="p1"),
        app_events.prisma_created("u1", actor="sarah", entity_id="p1", at=timedelta(minutes=1)),
        app_events.prisma_created("u1", actor="mike", entity_id="p2", at=timedelta(minutes=2)),
    )
    assert report.applied == 3
    notes = {n["target"]["id"]: n for n in store.snapshot_of("u1")}
    assert notes["p1"]["text"] == "John and Sarah liked your post"
    assert notes["p1"]["count"] == 2
    assert notes["p1"]["target"] == {"type": "post", "id": "p1"}
    assert notes["p1"]["actionUrl"] == "/posts/p1"
    assert notes["p1"]["category"] == "SOCIAL"
    assert notes["p2"]["text"] == "Mike liked your post"
    assert notes["p2"]["count"] == 1


async def test_no_target_groups_only_with_no_target(aggregator: InboxApplier, store: MemoryStore) -> None:
    await apply(
        aggregator,
        app_events.prisma_created("u1", actor="a", kind="USER_FOLLOWED", entity_type=None, entity_id=None),
        app_events.prisma_created("u1", actor="b", kind="USER_FOLLOWED", entity_type=None, entity_id=None),
        app_events.prisma_created("u1", actor="c", kind="USER_FOLLOWED", entity_type="user", entity_id="x"),
    )
    counts = sorted((n["target"] is None, n["count"]) for n in store.snapshot_of("u1"))
    assert counts == [(False, 1), (True, 2)]


async def test_same_id_different_target_types_stay_apart(aggregator: InboxApplier, store: MemoryStore) -> None:
    await apply(
        aggregator,
        app_events.prisma_created("u1", actor="a", entity_type="post", entity_id="7"),
        app_events.prisma_created("u1", actor="b", entity_type="comment", entity_id="7"),
    )
    assert sorted(n["target"]["type"] for n in store.snapshot_of("u1")) == ["comment", "post"]


async def test_actorless_events_are_not_merged(aggregator: InboxApplier, store: MemoryStore) -> None:
    await apply(
        aggregator,
        app_events.prisma_created("u1", actor=None, message="a like"),
        app_events.prisma_created("u1", actor=None, message="another like"),
    )
    assert sorted(n["text"] for n in store.snapshot_of("u1")) == ["a like", "another like"]


async def test_critical_is_never_aggregated(aggregator: InboxApplier, store: MemoryStore) -> None:
    await apply(
        aggregator,
        app_events.prisma_created("u1", actor="john", priority="CRITICAL", message="server on fire"),
        app_events.prisma_created("u1", actor="sarah", priority="CRITICAL", message="still on fire"),
    )
    notes = store.snapshot_of("u1")
    assert [n["count"] for n in notes] == [1, 1]
    assert {n["priority"] for n in notes} == {"CRITICAL"}


async def test_recipient_as_actor_is_skipped_and_counted(aggregator: InboxApplier, store: MemoryStore) -> None:
    report = await apply(aggregator, app_events.prisma_created("u1", actor="u1"))
    assert report.self_skipped == 1
    assert store.snapshot_of("u1") == []


async def test_single_notification_keeps_the_application_id(aggregator: InboxApplier, store: MemoryStore) -> None:
    await apply(aggregator, app_events.prisma_created("u1", actor="john", kind="GRADE_POSTED", notification_id="g1"))
    (note,) = store.snapshot_of("u1")
    assert note["id"] == "g1"
    await apply(aggregator, app_events.read("u1", "g1"))
    assert await store.unread_count("u1") == 0


async def test_read_and_delete_by_application_id_reach_the_group(aggregator: InboxApplier, store: MemoryStore) -> None:
    await apply(
        aggregator,
        app_events.prisma_created("u1", actor="john", notification_id="a1"),
        app_events.prisma_created("u1", actor="sarah", notification_id="a2", at=timedelta(minutes=1)),
        app_events.prisma_created("u1", actor="mike", entity_id="p2", notification_id="a3"),
    )
    group = next(n for n in store.snapshot_of("u1") if n["count"] == 2)
    store.live.clear()
    await apply(aggregator, app_events.read("u1", "a2"))  # sarah's like, folded into john's group
    assert await store.unread_count("u1") == 1
    (change,) = [e["inbox"] for e in store.live]
    assert change == {"kind": INBOX_CHANGE, "read": [group["id"]], "deleted": [], "all": False, "before": None}
    await apply(aggregator, app_events.deleted("u1", "a1"))
    assert [n["target"]["id"] for n in store.snapshot_of("u1")] == ["p2"]


async def test_bulk_read_all_and_up_to_a_time(aggregator: InboxApplier, store: MemoryStore) -> None:
    await apply(
        aggregator,
        app_events.prisma_created("u1", actor="a", kind="X_EARLY", at=timedelta(minutes=0)),
        app_events.prisma_created("u1", actor="b", kind="X_LATE", at=timedelta(minutes=10)),
    )
    cutoff = (BASE_TIME + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    await apply(aggregator, app_events.bulk_read("u1", before=cutoff))
    unread = [n["type"] for n in store.snapshot_of("u1") if not n["read"]]
    assert unread == ["X_LATE"]
    await apply(aggregator, app_events.bulk_read("u1"))
    assert await store.unread_count("u1") == 0


async def test_bulk_read_with_ids(aggregator: InboxApplier, store: MemoryStore) -> None:
    await apply(
        aggregator,
        app_events.prisma_created("u1", actor="a", kind="ONE", notification_id="x1"),
        app_events.prisma_created("u1", actor="b", kind="TWO", notification_id="x2"),
    )
    await apply(aggregator, app_events.bulk_read("u1", ids=["x1"]))
    assert [n["id"] for n in store.snapshot_of("u1") if not n["read"]] == ["x2"]


async def test_read_earlier_in_the_batch_does_not_hide_a_later_version(
    aggregator: InboxApplier, store: MemoryStore
) -> None:
    """Event order holds inside one batch: a read, then a new like, leaves the grown group unread."""
    await apply(aggregator, app_events.prisma_created("u1", actor="john", notification_id="a1"))
    await apply(
        aggregator,
        app_events.read("u1", "a1"),
        app_events.prisma_created("u1", actor="sarah", notification_id="a2", at=timedelta(minutes=1)),
    )
    (note,) = store.snapshot_of("u1")
    assert note["count"] == 2
    assert note["read"] is False


async def test_invalid_bulk_cutoff_is_rejected(aggregator: InboxApplier) -> None:
    report = await apply(aggregator, app_events.bulk_read("u1", before="yesterday"))
    ((_, reason),) = report.rejected
    assert "before" in reason


async def test_read_without_ids_is_rejected(aggregator: InboxApplier) -> None:
    wire = app_events.read("u1", "x")
    del wire["notificationId"]
    report = await apply(aggregator, wire)
    assert len(report.rejected) == 1


async def test_names_from_the_directory_and_learnt_from_events(
    aggregator: InboxApplier, store: MemoryStore, directory: MemoryUserDirectory
) -> None:
    await directory.remember([UserProfile("john", "John", None)])
    await apply(aggregator, app_events.prisma_created("u1", actor="john"))
    assert store.snapshot_of("u1")[0]["text"] == "John liked your post"
    # mike is in no directory and his event carries no name
    await apply(aggregator, app_events.prisma_created("u1", actor="mike", at=timedelta(minutes=1)))
    assert store.snapshot_of("u1")[0]["text"] == "John and Someone liked your post"
    # a name carried by an event is learnt
    named = app_events.processor_event("u2", actor="sarah")
    named["data"]["actorName"] = "Sarah"
    await apply(aggregator, named)
    assert (await directory.lookup(["sarah"]))["sarah"].name == "Sarah"


async def test_a_name_learnt_later_is_used_by_the_next_version(
    aggregator: InboxApplier, store: MemoryStore, directory: MemoryUserDirectory
) -> None:
    await apply(aggregator, app_events.prisma_created("u1", actor="john"))
    first = store.snapshot_of("u1")[0]
    assert first["text"] == "Someone liked your post"
    await directory.remember([UserProfile("john", "John", None)])
    await apply(aggregator, app_events.prisma_created("u1", actor="sarah", at=timedelta(minutes=1)))
    assert store.snapshot_of("u1")[0]["text"] == "John and Someone liked your post"
    assert first["text"] == "Someone liked your post"  # the version already sent is not rewritten


def test_actor_name_sources_in_order() -> None:
    wire = app_events.prisma_created("u1", actor="john", data={"actorName": "From data"})
    wire["metadata"]["actorName"] = "From metadata"
    event = decode_event(orjson.dumps(wire), fallback_event_id="k:0:1")
    occurrence = prepare(event).occurrence
    assert occurrence is not None
    assert occurrence.actor == ActorInfo("john", "From data")
    del wire["notification"]["data"]
    event = decode_event(orjson.dumps(wire), fallback_event_id="k:0:2")
    occurrence = prepare(event).occurrence
    assert occurrence is not None
    assert occurrence.actor == ActorInfo("john", "From metadata")


async def test_a_known_name_is_written_once(store: MemoryStore) -> None:
    """The directory is taught a name once, not on every batch that repeats it (the hot path stays clean)."""

    class Counting(MemoryUserDirectory):
        def __init__(self) -> None:
            super().__init__()
            self.writes: list[list[str]] = []

        async def remember(self, profiles: Iterable[UserProfile]) -> int:
            batch = list(profiles)
            self.writes.append([p.id for p in batch])
            return await super().remember(batch)

    directory = Counting()
    aggregator = InboxApplier(store, clock_ms=lambda: NOW_MS, directory=directory)
    for minute in range(3):
        wire = app_events.processor_event("u1", actor="sarah", entity_id=f"p{minute}")
        wire["data"]["actorName"] = "Sarah"
        await apply(aggregator, wire)
    renamed = app_events.processor_event("u1", actor="sarah", entity_id="p9")
    renamed["data"]["actorName"] = "Sarah B."
    await apply(aggregator, renamed)
    assert directory.writes == [["sarah"], ["sarah"]]
    assert (await directory.lookup(["sarah"]))["sarah"].name == "Sarah B."
