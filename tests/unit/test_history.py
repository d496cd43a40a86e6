"""The pure parts of replay, lag and audit: TIME arguments, the replay plan, lag arithmetic, and the audit's fold of
a user's events into versions (on the in-memory store, no Kafka or Redis)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from aiokafka import TopicPartition

from herald.audit import (
    AuditReport,
    NotificationTrail,
    TrailBuilder,
    attach_deliveries,
    compare,
    parse_receipt,
    trail_rows,
)
from herald.channels.base import Outcome
from herald.directory import UserProfile
from herald.event_log import OffsetRange, partition_of_key
from herald.events import NotificationEvent
from herald.json_case import camel_document
from herald.lag import LagReport, group_lags, partition_lag
from herald.prepared import prepare
from herald.replay import RecordClock, default_group, plan_partitions
from herald.timespec import TimeSpecError, iso_of, parse_time
from tests.support import app_events
from tests.support.events import event_dict

NOW_MS = 1_764_151_200_000  # 2025-11-26T10:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("earliest", None),
        ("now", NOW_MS),
        ("90s", NOW_MS - 90_000),
        ("15m", NOW_MS - 900_000),
        ("2h", NOW_MS - 7_200_000),
        ("7d", NOW_MS - 7 * 86_400_000),
        ("2025-11-26T10:00:00Z", NOW_MS),
        ("2025-11-26T11:00:00+01:00", NOW_MS),
        ("2025-11-26T10:00:00", NOW_MS),  # no offset: UTC
    ],
)
def test_parse_time(text: str, expected: int | None) -> None:
    assert parse_time(text, now_ms=NOW_MS) == expected


def test_parse_time_names_the_forms_it_accepts() -> None:
    with pytest.raises(TimeSpecError, match=r"not a time: 'yesterday'.*30m, 2h or 7d"):
        parse_time("yesterday", now_ms=NOW_MS)
    assert iso_of(NOW_MS) == "2025-11-26T10:00:00.000Z"
    assert default_group(NOW_MS) == "herald-replay-20251126T100000Z"


def test_partition_of_key_matches_the_java_client() -> None:
    # Utils.toPositive(Utils.murmur2(key)) % 12 computed with kafka-clients 4.1.1 (jshell): where the Java
    # producer, and so the application's own producers, put these keys.
    keys = ("user123", "u1", "alice", "user-7f3a")
    assert [partition_of_key(k.encode(), 12) for k in keys] == [9, 4, 9, 11]


def test_plan_caps_at_the_readers_commit_and_resumes_the_group() -> None:
    ranges = [OffsetRange(0, 0, 100), OffsetRange(1, 10, 50), OffsetRange(2, 5, 20)]
    plans = plan_partitions(ranges, readers_at={0: 60, 2: 30}, resume_at={1: 40}, past_readers=False)
    assert [(p.partition, p.start, p.stop, p.size, p.resumed) for p in plans] == [
        (0, 0, 60, 60, False),  # the readers are at 60: 60..100 is theirs
        (1, 40, 50, 10, True),  # an earlier run of the group got to 40; the readers never committed here
        (2, 5, 20, 15, False),  # the readers are past the range
    ]
    assert [p.requested_stop for p in plans] == [100, 50, 20]
    past = plan_partitions(ranges, readers_at={0: 60}, resume_at={}, past_readers=True)
    assert [p.stop for p in past] == [100, 50, 20]
    behind = plan_partitions([OffsetRange(0, 70, 100)], readers_at={0: 60}, resume_at={}, past_readers=False)
    assert (behind[0].start, behind[0].stop, behind[0].size) == (70, 70, 0)  # all of it is the readers'


def test_partition_lag() -> None:
    assert partition_lag(40, 0, 100) == 60
    assert partition_lag(None, 10, 100) == 90  # no commit: everything from the log start
    assert partition_lag(5, 10, 100) == 90  # retention deleted past the commit
    assert partition_lag(100, 0, 100) == 0


def test_group_lags_and_problems() -> None:
    events = [TopicPartition("ev", p) for p in range(3)]
    bounds = {tp: (0, 100) for tp in events}
    committed = {"readers": {events[0]: 100, events[1]: 90}, "other": {events[2]: 10}}
    groups = group_lags(committed, bounds, required=["readers", "gone"], always={"readers": events})
    assert [(g.group, g.required, g.missing, g.total) for g in groups] == [
        ("gone", True, True, 0),
        ("readers", True, False, 0 + 10 + 100),  # partition 2 uncommitted: read from the start
        ("other", False, False, 90),
    ]
    report = LagReport(groups)
    assert report.problems(None) == ["consumer group gone has no committed offsets (is the pipeline running?)"]
    assert report.problems(50)[1:] == ["consumer group readers is 100 records behind on a partition (> 50)"]
    assert LagReport(groups[1:]).problems(100) == []  # `other` is not required: its lag does not count


async def fold(builder: TrailBuilder, wires: list[dict[str, object]]) -> None:
    for offset, wire in enumerate(wires):
        event = NotificationEvent.model_validate({"eventId": f"e{offset}", **wire})
        await builder.add(prepare(event), partition=0, offset=offset, timestamp_ms=NOW_MS)


async def test_trail_builder_recomputes_versions_and_outcomes() -> None:
    builder = TrailBuilder("u1", late_allowance_ms=60_000, inbox_capacity=500)
    await fold(
        builder,
        [
            event_dict("u1", actor="a1", actor_name="John"),
            event_dict("u1", actor="a2", actor_name=None, at=timedelta(seconds=5)),
            event_dict("u1", actor="a2", actor_name=None, at=timedelta(seconds=6)),
            {**event_dict("u1", actor="a3", actor_name="Li"), "eventId": "e0"},  # e0 again
            app_events.prisma_created("u1", actor="a4", notification_id="app-1", kind="MENTIONED"),
            app_events.deleted("u1", "app-1"),
            {**app_events.read("u1", "nope"), "notificationId": 7},  # refused: names no notification
        ],
    )
    trails = {t.id: t for t in await builder.finish()}
    group = next(t for t in trails.values() if t.type == "POST_LIKED")
    assert [e.outcome for e in group.events] == ["v1", "v2", "no change (actor already counted)"]
    assert [(v.version, v.count, v.text) for v in group.versions] == [
        (1, 1, "John liked your post"),
        (2, 2, "John and Someone liked your post"),
    ]
    assert group.final == {"version": 2, "count": 2, "read": False}
    mention = trails["app-1"]
    assert [e.outcome for e in mention.events] == ["v1", "deleted"]
    assert mention.final is None
    assert builder.user_events[0].outcome == "duplicate (event id applied before)"
    assert builder.user_events[1].outcome.startswith("refused: NOTIFICATION_READ")


async def test_names_known_to_the_directory_are_used() -> None:
    builder = TrailBuilder("u1", late_allowance_ms=0, inbox_capacity=500, profiles=[UserProfile("a2", "Sarah")])
    await fold(builder, [event_dict("u1", actor="a2", actor_name=None)])
    [trail] = await builder.finish()
    assert trail.versions[0].text == "Sarah liked your post"


def test_receipts_attach_to_their_version_and_compare() -> None:
    trail = NotificationTrail("n1", "POST_LIKED", None, final={"version": 2, "count": 2, "read": True})
    delivered = Outcome("n1:2:EMAIL", "u1", "EMAIL", True, 1, 3.0, notification_id="n1").receipt()
    digest = Outcome("digest:u1:1", "u1", "EMAIL", True, 1, 3.0).receipt()
    attempts = [parse_receipt(delivered, ref="0:5"), parse_receipt(digest, ref="0:6")]
    assert (attempts[0].version, attempts[0].channel, attempts[0].status) == (2, "EMAIL", "DELIVERED")
    left = attach_deliveries([trail], attempts)
    assert [a.ref for a in trail.deliveries] == ["0:5"]
    assert [a.ref for a in left] == ["0:6"]
    assert compare(trail, {"version": 2, "count": 2, "read": False}) == []  # a Socket.IO read is no difference
    assert compare(trail, None) == ["missing in Redis (recomputed v2)"]
    assert compare(trail, {"version": 3, "count": 2}) == ["version: recomputed 2, Redis 3"]
    gone = NotificationTrail("n2", "MENTIONED", None)
    assert compare(gone, None) == []
    trail.checked = True
    rows = trail_rows(AuditReport("u1", "ev", 0, None, [trail], user_deliveries=left))
    assert [(r["notification"], r["kind"]) for r in rows] == [("n1", "delivery"), ("n1", "state"), ("-", "delivery")]
    assert rows[1]["detail"] == "consistent with Redis"


def test_the_replay_clock_follows_the_records() -> None:
    wall = [NOW_MS]
    clock = RecordClock(lambda: wall[0])
    assert clock() == NOW_MS  # nothing read yet
    clock.follow([NOW_MS - 7 * 86_400_000, NOW_MS - 6 * 86_400_000, -1])
    assert clock() == NOW_MS - 6 * 86_400_000  # the newest record of the batch, as the live aggregator saw it
    clock.follow([NOW_MS + 60_000])  # a producer's clock ahead of ours: never later than now
    assert clock() == NOW_MS
    clock.follow([-1])
    wall[0] += 5
    assert clock() == NOW_MS + 5


def test_json_documents_use_camel_case() -> None:
    assert camel_document({"held_back": 1, "partitions": [{"readers_at": 2, "start": 0}], "userId": "u"}) == {
        "heldBack": 1,
        "partitions": [{"readersAt": 2, "start": 0}],
        "userId": "u",
    }
