"""The reading side of `herald audit` (herald/audit.py): the user's partition of the events topic, the receipts in
`notification-delivery`, the user directory and the notifications Redis holds now."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from herald import keys
from herald.audit import Attempt, AuditReport, TrailBuilder, attach_deliveries, compare, parse_receipt
from herald.config import Settings
from herald.directory import RedisUserDirectory, UserProfile
from herald.event_log import make_reader, offset_ranges, partition_of_key, read_ranges, start_reader
from herald.kafka import close_client
from herald.prepared import PreparedEvent
from herald.routing import route
from herald.timespec import iso_of
from herald.topics import DELIVERY_TOPIC


async def audit_user(settings: Settings, user: str, *, since_ms: int | None) -> AuditReport:
    """The whole trail of `user` from `since_ms` (None: the log start), compared with Redis when complete."""
    topic = settings.events_topic
    key = user.encode()
    partition, records = await _user_records(settings, topic, key, since_ms)
    routed = route(records, shards=1, actors=1)
    mine = [e for e in routed.per_actor.get(0, []) if e.user_id == user]
    builder = TrailBuilder(
        user,
        late_allowance_ms=settings.late_allowance_s * 1000,
        inbox_capacity=settings.inbox_capacity,
        profiles=await _profiles(settings, mine),
    )
    times = {r.offset: r.timestamp for r in records}
    for event in mine:
        _topic, _partition, offset, _key, _value = routed.coordinates[event.wire_id or ""]
        await builder.add(event, partition=partition, offset=offset, timestamp_ms=times[offset])
    trails = await builder.finish()
    report = AuditReport(user, topic, partition, iso_of(since_ms), trails, builder.user_events)
    report.records_scanned = len(records)
    # A receipt never precedes the first event of its notification: the (large) receipts topic is read from there.
    first_ms = min(times.values(), default=since_ms)
    report.user_deliveries = attach_deliveries(trails, await _receipts(settings, key, first_ms))
    stored = await _stored(settings, user, [t.id for t in trails])
    for trail in trails:
        trail.stored = stored.get(trail.id)
        if since_ms is None:
            trail.checked = True
            trail.differences = compare(trail, trail.stored)
    return report


async def _profiles(settings: Settings, events: Sequence[PreparedEvent]) -> list[UserProfile]:
    """The directory's entries for actors the events name without a name (the fold shows them by name)."""
    unnamed = sorted(
        {e.occurrence.actor.id for e in events if e.occurrence and e.occurrence.actor and not e.occurrence.actor.name}
    )
    if not unnamed:
        return []
    directory = RedisUserDirectory.from_url(settings.redis_url)
    try:
        return list((await directory.lookup(unnamed)).values())
    finally:
        await directory.close()


async def _user_records(settings: Settings, topic: str, key: bytes, since_ms: int | None) -> tuple[int, list[Any]]:
    """The user's partition and the records keyed by the user there, from `since_ms` to the end as of now."""
    consumer = make_reader(settings, client_id="herald-audit")
    count = await start_reader(consumer, settings, topic)
    partition = partition_of_key(key, count)
    try:
        ranges = await offset_ranges(consumer, topic, [partition], since_ms=since_ms, until_ms=None)
        found: list[Any] = []
        async for batch in read_ranges(consumer, topic, ranges):
            found.extend(r for r in batch if r.key == key)
        return partition, found
    finally:
        await close_client(consumer)


async def _receipts(settings: Settings, key: bytes, since_ms: int | None) -> list[Attempt]:
    """Delivery receipts of the user (keyed by user id, like the events) since `since_ms`."""
    consumer = make_reader(settings, client_id="herald-audit-receipts")
    count = await start_reader(consumer, settings, DELIVERY_TOPIC)
    try:
        ranges = await offset_ranges(
            consumer, DELIVERY_TOPIC, [partition_of_key(key, count)], since_ms=since_ms, until_ms=None
        )
        attempts = []
        async for batch in read_ranges(consumer, DELIVERY_TOPIC, ranges):
            for record in batch:
                if record.key != key or not record.value:
                    continue
                try:
                    receipt = orjson.loads(record.value)
                except orjson.JSONDecodeError:
                    continue  # not a receipt Herald wrote; the audit shows what it can read
                if isinstance(receipt, dict):
                    attempts.append(parse_receipt(receipt, ref=f"{record.partition}:{record.offset}"))
        return attempts
    finally:
        await close_client(consumer)


async def _stored(settings: Settings, user: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """What Redis holds now of these notifications: version, count, text and whether it is read."""
    if not ids:
        return {}
    client = aioredis.Redis.from_url(
        settings.redis_url, decode_responses=True, socket_connect_timeout=settings.connect_timeout_s
    )
    try:
        async with client.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.bodies_key(user), ids)
            pipe.smismember(keys.unread_key(user), ids)
            bodies, unread = cast(tuple[list[str | None], list[int]], await pipe.execute())
    finally:
        await client.aclose()
    found = {}
    for notification_id, raw, is_unread in zip(ids, bodies, unread, strict=True):
        if raw is not None:
            body = orjson.loads(raw)
            found[notification_id] = {
                "version": body.get("version"),
                "count": body.get("count"),
                "text": body.get("text"),
                "read": not is_unread,
            }
    return found
