"""`herald replay`: apply a stretch of `notification-events` again, in-process, through the aggregators' apply
path (herald/routing.py, herald/applier.py, the Redis commit), under a consumer group of its own.

Safe beside a live pipeline (docs/architecture.md, "Replay"): every commit is a compare-and-set on the user's
sequence number and refuses event ids the user already has, so an event applied twice counts once, and a
replay racing an aggregator makes one of them fold again on fresh state. When Redis lost a user's state, the
same events build it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from aiokafka import TopicPartition

from herald.applier import ApplyReport, InboxApplier
from herald.channels.registry import configured_channels
from herald.config import Settings
from herald.directory import RedisUserDirectory
from herald.event_log import OffsetRange, make_reader, offset_ranges, partition_of_key, read_ranges, start_reader
from herald.json_case import camel_document
from herald.kafka import close_client, make_admin, start_bounded
from herald.routing import route
from herald.store_redis import RedisStore
from herald.timespec import iso_of

REPLAY_GROUP_PREFIX = "herald-replay-"
IN_APP = "IN_APP"


def default_group(now_ms: int) -> str:
    """herald-replay-20261126T100000Z: a group per run, so `herald lag` tells replays apart."""
    return REPLAY_GROUP_PREFIX + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_ms / 1000))


@dataclass(frozen=True)
class ReplayRequest:
    group: str
    since_ms: int | None  # None: the start of retention
    until_ms: int | None = None  # None: the end as of the start of the replay
    user: str | None = None
    # External channels (EMAIL, SMS, WEBHOOK, PUSH) get outbox entries only when asked: a replay that rebuilds
    # a week of inboxes must not send a week of mail. IN_APP changes are pushed live either way.
    deliver: bool = False
    # By default a replay stops where the live readers committed: an event the pipeline has not applied yet is
    # its to apply, with its deliveries; applied here first (without them), it would be a duplicate there.
    past_readers: bool = False


@dataclass(frozen=True)
class PartitionPlan:
    partition: int
    start: int
    stop: int
    requested_stop: int  # before the cap at the readers' commit
    readers_at: int | None  # the reader group's committed offset, when it has one
    resumed: bool = False  # the replay group had already got past `start` (a rerun under the same --group)

    @property
    def size(self) -> int:
        return max(self.stop - self.start, 0)


def plan_partitions(
    ranges: Sequence[OffsetRange],
    *,
    readers_at: Mapping[int, int],
    resume_at: Mapping[int, int],
    past_readers: bool,
) -> list[PartitionPlan]:
    """Cap each range at the readers' commit (unless `past_readers`) and start it where an earlier run of the
    same replay group got to."""
    plans = []
    for r in ranges:
        committed = readers_at.get(r.partition)
        stop = r.stop if past_readers or committed is None else min(r.stop, committed)
        resumed_from = resume_at.get(r.partition)
        start = r.start
        if resumed_from is not None and r.start < resumed_from:
            start = min(resumed_from, stop)
        plans.append(PartitionPlan(r.partition, start, max(stop, start), r.stop, committed, start != r.start))
    return plans


@dataclass
class ReplayReport:
    group: str
    topic: str
    user: str | None
    deliver: bool
    since: str | None
    until: str | None
    partitions: list[PartitionPlan] = field(default_factory=list)
    records: int = 0  # read from Kafka
    events: int = 0  # decoded and (with --user) the user's
    undecodable: int = 0  # refused by validation; the live readers dead-lettered them already
    applied: int = 0
    duplicates: int = 0
    self_skipped: int = 0
    refused: int = 0  # refused by the domain (a read naming nothing, ...); marked seen, not dead-lettered again
    notifications_changed: int = 0
    conflicts_retried: int = 0
    elapsed_s: float = 0.0

    @property
    def planned(self) -> int:
        return sum(p.size for p in self.partitions)

    @property
    def held_back(self) -> int:
        """Offsets left to the live readers (past their commit)."""
        return sum(max(p.requested_stop - p.stop, 0) for p in self.partitions)

    def add(self, report: ApplyReport) -> None:
        self.applied += report.applied
        self.duplicates += report.duplicates
        self.self_skipped += report.self_skipped
        self.refused += len(report.rejected)
        self.notifications_changed += report.notifications_changed
        self.conflicts_retried += report.conflicts_retried

    def to_json(self) -> dict[str, Any]:
        doc = {k: v for k, v in asdict(self).items() if k != "partitions"}
        doc["partitions"] = [asdict(p) for p in self.partitions]
        doc["planned"] = self.planned
        doc["held_back"] = self.held_back
        return camel_document(doc)


Progress = Callable[[int], None]  # offsets advanced since the last call


async def committed_offsets(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """A group's committed offsets on one topic, by partition (empty when the group never committed)."""
    admin = make_admin(settings, client_id="herald-replay-admin")
    await start_bounded(admin, settings, "reading consumer group offsets")
    try:
        found = await admin.list_consumer_group_offsets(group)
    finally:
        await close_client(admin)
    return {tp.partition: meta.offset for tp, meta in found.items() if tp.topic == topic and meta.offset >= 0}


class RecordClock:
    """The applier's clock during a replay: the time of the batch's newest record, as the live aggregator's wall
    clock was when it applied that batch. Group states then live as long as they did live (window end minus
    apply time, plus the late allowance), however long the replay takes: on the wall clock a replayed week-old
    group would expire after the late allowance, and a slow replay would split it in two."""

    def __init__(self, wall_ms: Callable[[], int]) -> None:
        self._wall_ms = wall_ms
        self._at_ms: int | None = None

    def follow(self, timestamps_ms: Sequence[int]) -> None:
        stamped = [t for t in timestamps_ms if t > 0]  # -1: a record without a timestamp
        self._at_ms = min(max(stamped), self._wall_ms()) if stamped else None

    def __call__(self) -> int:
        return self._wall_ms() if self._at_ms is None else self._at_ms


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _applier(
    settings: Settings, store: RedisStore, directory: RedisUserDirectory, deliver: bool, clock: RecordClock
) -> InboxApplier:
    """The applier as an aggregator actor builds it (actors/aggregator.py), minus the external channels unless
    the replay delivers."""
    channels = (IN_APP, *configured_channels(settings)) if deliver else (IN_APP,)
    return InboxApplier(
        store,
        clock_ms=clock,
        late_allowance_ms=settings.late_allowance_s * 1000,
        delivery_channels=channels,
        directory=directory,
        cache_users=settings.aggregator_cache_users,
    )


async def plan_replay(settings: Settings, request: ReplayRequest) -> list[PartitionPlan]:
    """What a replay would read, without reading it."""
    topic = settings.events_topic
    consumer = make_reader(settings, client_id="herald-replay-plan")
    count = await start_reader(consumer, settings, topic)
    try:
        partitions = [partition_of_key(request.user.encode(), count)] if request.user else list(range(count))
        ranges = await offset_ranges(consumer, topic, partitions, since_ms=request.since_ms, until_ms=request.until_ms)
    finally:
        await close_client(consumer)
    return plan_partitions(
        ranges,
        readers_at=await committed_offsets(settings, settings.reader_group, topic),
        resume_at=await committed_offsets(settings, request.group, topic),
        past_readers=request.past_readers,
    )


async def run_replay(
    settings: Settings,
    request: ReplayRequest,
    plans: Sequence[PartitionPlan],
    *,
    progress: Progress | None = None,
) -> ReplayReport:
    """Apply the planned offsets; the replay group's offsets are committed after every applied batch, so a rerun
    under the same group goes on where this one stopped."""
    started = time.monotonic()
    topic = settings.events_topic
    report = ReplayReport(
        group=request.group,
        topic=topic,
        user=request.user,
        deliver=request.deliver,
        since=iso_of(request.since_ms),
        until=iso_of(request.until_ms),
        partitions=list(plans),
    )
    store = RedisStore.from_url(
        settings.redis_url,
        inbox_capacity=settings.inbox_capacity,
        dedup_horizon_ms=settings.dedup_horizon_s * 1000,
        outbox_shards=settings.outbox_shards,
    )
    directory = RedisUserDirectory.from_url(settings.redis_url)
    clock = RecordClock(wall_clock_ms)
    applier = _applier(settings, store, directory, request.deliver, clock)
    consumer = make_reader(settings, group_id=request.group, client_id="herald-replay")
    try:
        await start_reader(consumer, settings, topic)
        ranges = [OffsetRange(p.partition, p.start, p.stop) for p in plans]
        async for records in read_ranges(consumer, topic, ranges, max_records=settings.reader_max_records):
            routed = route(records, shards=1, actors=1)
            events = routed.per_actor.get(0, [])
            if request.user is not None:
                events = [e for e in events if e.user_id == request.user]
            report.records += len(records)
            report.events += len(events)
            report.undecodable += len(routed.rejected)
            if events:
                clock.follow([r.timestamp for r in records])
                report.add(await applier.apply_prepared(events))
            await consumer.commit({TopicPartition(t, p): o for (t, p), o in routed.commit_offsets.items()})
            if progress is not None:
                progress(len(records))
    finally:
        await close_client(consumer)
        await store.close()
        await directory.close()
    report.elapsed_s = round(time.monotonic() - started, 3)
    return report
