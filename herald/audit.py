"""`herald audit`: the trail of a user's notifications. The user's source events are folded again, in offset
order, through the same applier the aggregators run (on an in-memory store, clocked by each record's time), so
every version each event produced is recomputed; delivery receipts are attached to the version they delivered,
and the result is checked against what Redis holds now. Reading Kafka and Redis is herald/audit_read.py."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from herald.applier import InboxApplier
from herald.directory import MemoryUserDirectory, UserProfile
from herald.json_case import camel_document, camel_keys
from herald.prepared import PreparedEvent
from herald.store import UserChange, UserQuery, group_key
from herald.store_memory import MemoryStore
from herald.timespec import iso_of

USER_LEVEL = "-"  # the notification column of trail items that concern no one notification (bulk reads, digests)
ALL_CHANNELS = ("IN_APP", "PUSH", "EMAIL", "SMS", "WEBHOOK")


@dataclass(frozen=True)
class SourceEvent:
    partition: int
    offset: int
    timestamp_ms: int
    event_id: str
    type: str
    actor: str | None
    channels: tuple[str, ...]
    outcome: str  # what applying it did: "v3", "duplicate", "no change", "read", "refused: ...", ...
    notification_ids: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"


@dataclass(frozen=True)
class Version:
    notification_id: str
    version: int
    count: int
    text: str
    actors: tuple[str, ...]
    updated_at: str
    source: str  # partition:offset of the event that produced it
    channels: tuple[str, ...]  # what that event asked for; IN_APP versions go to the inbox and live


@dataclass(frozen=True)
class Attempt:
    """One delivery receipt from `notification-delivery`."""

    delivery_id: str
    notification_id: str | None
    version: int | None
    channel: str
    status: str
    attempts: int
    error: str | None
    timestamp: str
    ref: str  # partition:offset of the receipt


@dataclass
class NotificationTrail:
    id: str
    type: str
    target: dict[str, Any] | None
    app_ids: list[str] = field(default_factory=list)  # the application's own ids folded into it
    events: list[SourceEvent] = field(default_factory=list)
    versions: list[Version] = field(default_factory=list)
    deliveries: list[Attempt] = field(default_factory=list)
    final: dict[str, Any] | None = None  # recomputed: {version, count, read}, None once deleted or evicted
    stored: dict[str, Any] | None = None  # in Redis now: {version, count, read, text}
    checked: bool = False  # compared with Redis (only when the trail starts at the log start)
    differences: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return not self.differences

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["consistent"] = self.consistent
        return camel_document(doc)


@dataclass
class AuditReport:
    user: str
    events_topic: str
    partition: int
    since: str | None
    trails: list[NotificationTrail] = field(default_factory=list)
    user_events: list[SourceEvent] = field(default_factory=list)  # bulk reads, preferences, refusals, duplicates
    user_deliveries: list[Attempt] = field(default_factory=list)  # digests: they carry several notifications
    records_scanned: int = 0

    @property
    def consistent(self) -> bool:
        return all(t.consistent for t in self.trails)

    def select(self, notification_id: str) -> AuditReport:
        """Only the trail of one notification, named by Herald's id or the application's own."""
        chosen = [t for t in self.trails if notification_id == t.id or notification_id in t.app_ids]
        return AuditReport(
            self.user, self.events_topic, self.partition, self.since, chosen, records_scanned=self.records_scanned
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "userId": self.user,
            "topic": self.events_topic,
            "partition": self.partition,
            "since": self.since,
            "recordsScanned": self.records_scanned,
            "consistent": self.consistent,
            "notifications": [t.to_json() for t in self.trails],
            "userEvents": camel_keys([asdict(e) for e in self.user_events]),
            "userDeliveries": camel_keys([asdict(d) for d in self.user_deliveries]),
        }


class _RecordingStore(MemoryStore):
    """The in-memory store, keeping each accepted change so the audit sees every version an event produced."""

    def __init__(self, clock_ms: Any, inbox_capacity: int) -> None:
        super().__init__(clock_ms, inbox_capacity=inbox_capacity)
        self.changes: list[UserChange] = []

    async def commit(self, changes: Sequence[UserChange], *, now_ms: int) -> list[bool]:
        results = await super().commit(changes, now_ms=now_ms)
        self.changes.extend(c for c, ok in zip(changes, results, strict=True) if ok)
        return results


class TrailBuilder:
    """Folds one user's events, one at a time and in offset order, as the pipeline applied them."""

    def __init__(
        self,
        user: str,
        *,
        late_allowance_ms: int,
        inbox_capacity: int,
        profiles: Iterable[UserProfile] = (),
    ) -> None:
        self.user = user
        self._now_ms = 0
        self._store = _RecordingStore(lambda: self._now_ms, inbox_capacity)
        directory = MemoryUserDirectory()  # names known now; events that carry names teach it, as in Redis
        directory.profiles.update({p.id: p for p in profiles})
        self._applier = InboxApplier(
            self._store,
            clock_ms=lambda: self._now_ms,
            late_allowance_ms=late_allowance_ms,
            delivery_channels=ALL_CHANNELS,
            directory=directory,
        )
        self._trails: dict[str, NotificationTrail] = {}
        self.user_events: list[SourceEvent] = []

    async def add(self, event: PreparedEvent, *, partition: int, offset: int, timestamp_ms: int) -> SourceEvent:
        # The pipeline's clock at apply time was about the record's time: group windows and TTLs behave alike.
        self._now_ms = timestamp_ms
        seen = len(self._store.changes)
        report = await self._applier.apply_prepared([event])
        changes = self._store.changes[seen:]
        outcome, ids = await self._outcome(event, report.duplicates, report.self_skipped, report.rejected, changes)
        actor = event.occurrence.actor.id if event.occurrence and event.occurrence.actor else None
        source = SourceEvent(
            partition, offset, timestamp_ms, event.event_id, event.type, actor, event.channels, outcome, tuple(ids)
        )
        for change in changes:
            self._record_versions(change, event, source)
            for app_id, notification_id in change.aliases.items():
                self._trail(notification_id).app_ids.append(app_id)
        if ids:
            for notification_id in ids:
                self._trail(notification_id).events.append(source)
        else:
            self.user_events.append(source)
        return source

    async def _outcome(
        self,
        event: PreparedEvent,
        duplicates: int,
        self_skipped: int,
        rejected: Sequence[tuple[PreparedEvent, str]],
        changes: Sequence[UserChange],
    ) -> tuple[str, list[str]]:
        if duplicates:
            return "duplicate (event id applied before)", []
        if rejected:
            return f"refused: {rejected[0][1]}", []
        if self_skipped:
            return "skipped (the actor is the recipient)", []
        found = _change_outcome(changes)
        if found is not None:
            return found
        if event.occurrence is not None:
            key = group_key(event.occurrence.notification_type, event.occurrence.target_key)
            [snapshot] = await self._store.load([UserQuery(self.user, [], [key])])
            group = snapshot.groups.get(key)
            if group is not None:
                return "no change (actor already counted)", [group.notification_id]
        return "no change", []

    def _trail(self, notification_id: str) -> NotificationTrail:
        trail = self._trails.get(notification_id)
        if trail is None:
            trail = self._trails[notification_id] = NotificationTrail(notification_id, "", None)
        return trail

    def _record_versions(self, change: UserChange, event: PreparedEvent, source: SourceEvent) -> None:
        for body in change.notifications:
            trail = self._trail(body["id"])
            trail.type = body["type"]
            target = body.get("target")
            trail.target = dict(target) if target else None
            trail.versions.append(
                Version(
                    notification_id=body["id"],
                    version=int(body["version"]),
                    count=int(body["count"]),
                    text=str(body["text"]),
                    actors=tuple(a["id"] for a in body.get("actors", [])),
                    updated_at=str(body["updatedAt"]),
                    source=source.ref,
                    channels=event.channels,
                )
            )

    async def finish(self) -> list[NotificationTrail]:
        """The trails, oldest notification first, each with its recomputed final state."""
        now = {n["id"]: n for n in await self._store.notifications_before(self.user, None, len(self._trails) + 1)}
        for notification_id, trail in self._trails.items():
            note = now.get(notification_id)
            if note is not None:
                trail.final = {"version": note["version"], "count": note["count"], "read": note["read"]}
        return list(self._trails.values())


def _change_outcome(changes: Sequence[UserChange]) -> tuple[str, list[str]] | None:
    """What the changes an event committed did, and to which notifications; None when they did nothing visible."""
    bodies = [b for c in changes for b in c.notifications]
    if bodies:
        return ", ".join(f"v{b['version']}" for b in bodies), [b["id"] for b in bodies]
    deleted = [i for c in changes for i in c.deleted_ids]
    if deleted:
        return "deleted", deleted
    read = [i for c in changes for i in c.read_ids]
    if read:
        return "read", read
    cutoffs = [c.read_all_before for c in changes if c.read_all_before is not None]
    if cutoffs:
        return (f"read all created up to {cutoffs[0]}" if cutoffs[0] else "read all"), []
    if any(c.preferences is not None for c in changes):
        return "preferences updated", []
    return None


def attach_deliveries(trails: Sequence[NotificationTrail], attempts: Iterable[Attempt]) -> list[Attempt]:
    """Each receipt onto the trail of its notification; returns those of no trail here (digests, older ones)."""
    by_id = {t.id: t for t in trails}
    left = []
    for attempt in attempts:
        trail = by_id.get(attempt.notification_id or "")
        if trail is None:
            left.append(attempt)
        else:
            trail.deliveries.append(attempt)
    return left


def parse_receipt(receipt: Mapping[str, Any], *, ref: str) -> Attempt:
    """A receipt as herald/channels/base.py writes it; the delivery id is `<notification>:<version>:<channel>`."""
    delivery_id = str(receipt.get("deliveryId", ""))
    parts = delivery_id.rsplit(":", 2)
    version = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
    notification_id = receipt.get("notificationId")
    return Attempt(
        delivery_id=delivery_id,
        notification_id=notification_id if isinstance(notification_id, str) else None,
        version=version,
        channel=str(receipt.get("channel") or receipt.get("deliveryChannel") or ""),
        status=str(receipt.get("status", "")),
        attempts=int(receipt.get("attempts") or 0),
        error=receipt.get("error") if isinstance(receipt.get("error"), str) else None,
        timestamp=str(receipt.get("timestamp", "")),
        ref=ref,
    )


def compare(trail: NotificationTrail, stored: Mapping[str, Any] | None) -> list[str]:
    """How Redis departs from the recomputed trail. Texts may differ (a name learnt later) and reads made
    through Socket.IO never pass through Kafka, so only presence, version and count are held against it."""
    if trail.final is None:
        return [] if stored is None else [f"Redis holds v{stored['version']}; the trail ends deleted or evicted"]
    if stored is None:
        return [f"missing in Redis (recomputed v{trail.final['version']})"]
    return [
        f"{name}: recomputed {trail.final[name]}, Redis {stored.get(name)}"
        for name in ("version", "count")
        if trail.final[name] != stored.get(name)
    ]


def trail_rows(report: AuditReport) -> list[dict[str, Any]]:
    """One row per trail item (event, version, delivery, state) for the table and the piped lines."""
    rows: list[dict[str, Any]] = []
    for trail in report.trails:
        rows.extend(_rows_of(trail.id, trail.events, trail.versions, trail.deliveries))
        state = (
            "deleted or evicted"
            if trail.final is None
            else "v{version} count {count} read {read}".format(**trail.final)
        )
        if trail.checked:
            verdict = "consistent with Redis" if trail.consistent else "; ".join(trail.differences)
        else:
            verdict = "not compared (the trail starts after the log start)"
        rows.append(
            {"notification": trail.id, "kind": "state", "time": "", "ref": "", "what": state, "detail": verdict}
        )
    rows.extend(_rows_of(USER_LEVEL, report.user_events, [], report.user_deliveries))
    return rows


def _rows_of(
    notification_id: str, events: Sequence[SourceEvent], versions: Sequence[Version], deliveries: Sequence[Attempt]
) -> list[dict[str, Any]]:
    by_source = {v.source: v for v in versions if v.notification_id == notification_id}
    rows = []
    for e in events:
        rows.append(
            {
                "notification": notification_id,
                "kind": "event",
                "time": iso_of(e.timestamp_ms),
                "ref": e.ref,
                "what": f"{e.type} {e.actor or ''}".strip(),
                "detail": f"{e.outcome} (event {e.event_id})",
            }
        )
        version = by_source.get(e.ref)
        if version is not None:
            rows.append(
                {
                    "notification": notification_id,
                    "kind": "version",
                    "time": version.updated_at,
                    "ref": e.ref,
                    "what": f"v{version.version} count {version.count} to {','.join(version.channels)}",
                    "detail": version.text,
                }
            )
    for d in deliveries:
        outcome = d.status + (f" after {d.attempts} attempt(s)" if d.attempts else "")
        rows.append(
            {
                "notification": notification_id,
                "kind": "delivery",
                "time": d.timestamp,
                "ref": d.ref,
                "what": f"{d.channel} v{d.version}" if d.version is not None else d.channel,
                "detail": outcome + (f": {d.error}" if d.error else ""),
            }
        )
    return rows
