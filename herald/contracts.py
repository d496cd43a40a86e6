"""Typed shapes of what crosses a process boundary: Ray calls between actors, the driver's status, and the
notification body stored in the inbox and sent to clients.

TypedDicts rather than models: these are plain dicts on the hot path (pickled by Ray, JSON in Redis and on the
socket), so the types cost nothing at run time while mypy checks every place that builds or reads one. The
notification body also has a JSON Schema (`notification_json_schema`, `herald schema --notification`,
docs/schema/notification.schema.json) for clients in other languages.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, Required

from pydantic import ConfigDict, TypeAdapter, with_config

# typing_extensions': pydantic builds the schema only from its TypedDict on Python < 3.12.
from typing_extensions import TypedDict

# -- aggregator -> reader (AggregatorActor.apply) ---------------------------------------------------------


class ApplyResult(TypedDict):
    """What an aggregator answers for one part of a batch."""

    applied: int  # events that changed state
    duplicates: int  # events already applied (a replay): skipped
    changed: int  # notifications created or updated
    self_skipped: int  # events whose actor is the recipient: no notification
    rejected: list[tuple[str, str]]  # (wire id, reason) of events the domain refused: they go to the DLQ


# -- actor -> driver (health) ----------------------------------------------------------------------------


class ActorHealth(TypedDict, total=False):
    """One actor's answer to `health()`, and what `Pipeline.status()` lists per actor.

    One record for every kind of actor, so the driver and the benchmarks can read any counter of any actor
    without knowing its class; each kind fills in its own keys. `ok` is always there; an actor that could not
    be asked has only `actor`, `ok` (False) and `error`.
    """

    ok: Required[bool]
    actor: str  # its name, e.g. reader-0 (the driver labels an unreachable one by its place, readers[0])
    pid: int
    node: str  # the Ray node it runs on
    error: str  # why the driver could not ask it

    # Readers (herald.checkpoint.CheckpointCounters and the commit counters).
    partitions: list[str]  # topic:partition owned now
    lag: dict[str, int]  # per topic:partition, records not yet read
    gated: bool  # the benchmark's reader, waiting for its start signal
    batches: int  # readers: batches finished; aggregators: calls applied
    events: int
    dead_lettered: int
    duplicates: int
    self_skipped: int
    apply_retries: int
    application_errors: int
    dead_lettered_after_errors: int
    commits: int
    commit_failures: int

    # Aggregators.
    applied: int
    notifications_changed: int
    conflicts_retried: int
    channels_without_provider: int
    cache_users: int  # users the aggregator remembers (herald/user_cache.py)
    cache_hits: int
    cache_misses: int

    # Delivery actors (herald.outbox.OutboxWorker.health).
    channel: str
    consumer: str
    delivered: int
    failed: int
    reclaimed: int
    redis_errors: int
    last_error: str | None
    p50_send_ms: float | None

    # Gateways (herald.gateway.server.Gateway.health).
    subscribed: bool
    serving: bool
    gateway_id: str
    connections: int
    users: int
    counters: dict[str, int]  # GatewayCounters, live_notifications among them
    live_latency_ms: dict[str, float | int | None]
    dropped_stale: int
    remembered_versions: int  # versions the connections remember to drop duplicates (session.py)
    analytics: dict[str, int]
    port: int | None


# -- the notification body (inbox, outbox, Socket.IO) ----------------------------------------------------

Priority = Literal["LOW", "NORMAL", "HIGH", "URGENT", "CRITICAL"]


# Field docstrings become the schema's descriptions (use_attribute_docstrings), for clients in other languages.
_SCHEMA_CONFIG = ConfigDict(use_attribute_docstrings=True)


@with_config(_SCHEMA_CONFIG)
class NotificationActor(TypedDict):
    """Someone who acted, as clients show them."""

    id: str
    name: str
    """Display name; "Someone" until the user directory knows one."""
    avatarUrl: NotRequired[str]


@with_config(_SCHEMA_CONFIG)
class NotificationTarget(TypedDict):
    """What the notification is about (a post, a comment, ...)."""

    type: str
    id: str
    title: NotRequired[str | None]


# Unknown keys are allowed in the schema: clients must ignore fields a later Herald adds.
@with_config(ConfigDict(extra="allow", use_attribute_docstrings=True))
class InboxNotification(TypedDict):
    """One notification as the inbox stores it and clients receive it (herald.grouping.render_group and
    render_single, completed by herald.applier with the store fields).

    A grouped notification ("John and 2 others liked your post") has `groupKey`; one of its own (no rule, URGENT,
    no actor) has the event's `title`, `message` and `data`. Every change gets a new `version` of the same `id` and
    a new per-user `cursor`, so a client keeps the highest version per id and resumes after the highest cursor.
    """

    id: str
    """Stable across versions: Herald's id of the group, or the application's own id."""
    version: int
    """1, 2, ... per id: show the highest seen."""
    cursor: int
    """Per-user sequence number of this change: a reconnect asks for everything after the highest one seen."""
    userId: str
    """The recipient."""
    type: str
    """The notification type, e.g. POST_LIKED."""
    text: str
    """Rendered, ready to show."""
    actors: list[NotificationActor]
    """Most recent first, a few at most."""
    count: int
    """How many events the notification stands for."""
    target: NotificationTarget | None
    priority: Priority
    createdAt: str
    """ISO 8601, UTC, milliseconds."""
    updatedAt: str
    """ISO 8601, UTC, milliseconds."""
    groupKey: NotRequired[str]
    """Present on grouped notifications only."""
    title: NotRequired[str | None]
    message: NotRequired[str | None]
    data: NotRequired[dict[str, Any]]
    """The event's own data (notifications that are not grouped)."""
    category: NotRequired[str]
    actionUrl: NotRequired[str]
    imageUrl: NotRequired[str]
    read: NotRequired[bool]
    """Added when read back from the inbox; the stored body has no read flag."""


_NOTIFICATION = TypeAdapter(InboxNotification)


def notification_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the notification body clients receive, beside the input schema."""
    schema = _NOTIFICATION.json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Herald notification"
    schema["description"] = (
        "A notification as Herald's inbox stores it and Socket.IO clients receive it. Keep the highest `version` "
        "per `id`; resume after the highest `cursor`. Unknown fields may appear: ignore them."
    )
    return schema


def validate_notification(body: object) -> InboxNotification:
    """Check a body against the contract (tests, tools): raises pydantic.ValidationError naming the field."""
    return _NOTIFICATION.validate_python(body, strict=True)
