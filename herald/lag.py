"""`herald lag`: how far each consumer group of Herald's topics is behind, per partition, and how much waits in
the delivery outboxes (Redis stream consumer group `herald-delivery`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis
from aiokafka import TopicPartition
from redis.exceptions import ResponseError

from herald import keys
from herald.channels.registry import PROVIDER_MODULES
from herald.config import Settings
from herald.json_case import camel_document
from herald.kafka import close_client, make_admin, make_consumer, start_bounded
from herald.schedule import schedule_key
from herald.topics import partition_counts, topic_specs


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group has no commit here and starts from the log start
    end: int
    lag: int


@dataclass(frozen=True)
class GroupLag:
    group: str
    required: bool  # named by --group, or the reader group: its absence makes the command fail
    partitions: tuple[PartitionLag, ...]

    @property
    def missing(self) -> bool:
        return not self.partitions

    @property
    def total(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def max_lag(self) -> int:
        return max((p.lag for p in self.partitions), default=0)


@dataclass(frozen=True)
class OutboxBacklog:
    channel: str
    shard: int
    length: int  # entries in the stream (delivered ones are deleted)
    pending: int  # read by a delivery actor, outcome not recorded yet
    unread: int  # not read by any delivery actor yet
    scheduled: int  # held for quiet hours or a digest


@dataclass
class LagReport:
    groups: list[GroupLag] = field(default_factory=list)
    outbox: list[OutboxBacklog] = field(default_factory=list)

    def problems(self, max_lag: int | None) -> list[str]:
        """Why the pipeline is not healthy: a required group missing, or behind by more than max_lag."""
        found = []
        for g in self.groups:
            if g.required and g.missing:
                found.append(f"consumer group {g.group} has no committed offsets (is the pipeline running?)")
            elif g.required and max_lag is not None and g.max_lag > max_lag:
                found.append(f"consumer group {g.group} is {g.max_lag} records behind on a partition (> {max_lag})")
        return found

    def to_json(self, max_lag: int | None) -> dict[str, Any]:
        document = {
            "groups": [
                {
                    "group": g.group,
                    "required": g.required,
                    "missing": g.missing,
                    "lag": g.total,
                    "partitions": [asdict(p) for p in g.partitions],
                }
                for g in self.groups
            ],
            "outbox": [asdict(o) for o in self.outbox],
            "maxLag": max_lag,
            "problems": self.problems(max_lag),
        }
        return camel_document(document)


def partition_lag(committed: int | None, beginning: int, end: int) -> int:
    """Records left to read: from the commit, or from the log start when there is none or retention deleted
    past it (the consumer resets to the earliest offset)."""
    position = beginning if committed is None else max(committed, beginning)
    return max(end - position, 0)


def herald_topics(settings: Settings) -> list[str]:
    return sorted({spec.name for spec in topic_specs(settings)} | {settings.events_topic})


def group_lags(
    committed: dict[str, dict[TopicPartition, int]],
    bounds: dict[TopicPartition, tuple[int, int]],
    *,
    required: Sequence[str],
    always: dict[str, list[TopicPartition]],
) -> list[GroupLag]:
    """Per group, the partitions it committed on (and those of `always`, the topics it is known to read), with
    (beginning, end) offsets from `bounds`; required groups first, then by name."""
    result = []
    for group in sorted(set(committed) | set(required), key=lambda g: (g not in required, g)):
        offsets = committed.get(group, {})
        tps = sorted(set(offsets) | (set(always.get(group, ())) if offsets else set()))
        rows = []
        for tp in tps:
            if tp not in bounds:
                continue
            beginning, end = bounds[tp]
            done = offsets.get(tp)
            rows.append(PartitionLag(group, tp.topic, tp.partition, done, end, partition_lag(done, beginning, end)))
        result.append(GroupLag(group, group in required, tuple(rows)))
    return result


async def read_lag(settings: Settings, *, groups: Sequence[str] = ()) -> LagReport:
    """Every group with commits on Herald's topics (or only `groups`, when given), and the outbox backlog."""
    required = list(groups) or [settings.reader_group]
    topics = herald_topics(settings)
    admin = make_admin(settings, client_id="herald-lag")
    await start_bounded(admin, settings, "reading consumer groups")
    try:
        names = list(groups) or sorted({str(g[0]) for g in await admin.list_consumer_groups()} | set(required))
        committed: dict[str, dict[TopicPartition, int]] = {}
        for name in names:
            offsets = await admin.list_consumer_group_offsets(name)
            mine = {tp: meta.offset for tp, meta in offsets.items() if tp.topic in topics and meta.offset >= 0}
            if mine:
                committed[name] = mine
    finally:
        await close_client(admin)
    bounds = await _bounds(settings, topics)
    events = [tp for tp in bounds if tp.topic == settings.events_topic]
    report = LagReport(group_lags(committed, bounds, required=required, always={settings.reader_group: events}))
    report.outbox = await outbox_backlog(settings)
    return report


async def _bounds(settings: Settings, topics: Iterable[str]) -> dict[TopicPartition, tuple[int, int]]:
    """(log start, end) of every partition of these topics."""
    counts = await partition_counts(settings, list(topics))
    tps = [TopicPartition(topic, p) for topic, count in counts.items() for p in range(count)]
    if not tps:
        return {}
    consumer = make_consumer(settings, client_id="herald-lag")
    await start_bounded(consumer, settings, "reading topic offsets")
    try:
        beginning = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
    finally:
        await close_client(consumer)
    return {tp: (beginning[tp], end[tp]) for tp in tps}


async def outbox_backlog(settings: Settings) -> list[OutboxBacklog]:
    """Per external channel and outbox shard that exists: stream length, pending, unread, scheduled."""
    client = aioredis.Redis.from_url(
        settings.redis_url, decode_responses=True, socket_connect_timeout=settings.connect_timeout_s
    )
    found = []
    try:
        for channel in PROVIDER_MODULES:
            for shard in range(settings.outbox_shards):
                stream = keys.outbox_key(channel, shard)
                async with client.pipeline(transaction=False) as pipe:
                    pipe.exists(stream)
                    pipe.xlen(stream)
                    pipe.zcard(schedule_key(channel, shard))
                    exists, length, scheduled = await pipe.execute()
                if not exists and not scheduled:
                    continue
                pending = await _pending(client, stream) if exists else 0
                # Delivered entries are deleted (XACK + XDEL), so what is left is pending or not read yet. (Redis's
                # own group `lag` is not reliable once entries are deleted.)
                unread = max(int(length) - pending, 0)
                found.append(OutboxBacklog(channel, shard, int(length), pending, unread, int(scheduled)))
    finally:
        await client.aclose()
    return found


async def _pending(client: aioredis.Redis, stream: str) -> int:
    try:
        groups: list[dict[str, Any]] = await client.xinfo_groups(stream)
    except ResponseError:
        return 0
    return sum(int(info.get("pending", 0)) for info in groups if info.get("name") == keys.OUTBOX_GROUP)
