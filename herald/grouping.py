"""Per-user aggregation as a pure fold: rules, event-time windows and the texts they render. No I/O, no clock."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from herald.pickling import tuple_pickled


@dataclass(frozen=True)
class AggregationRule:
    """How one notification type is grouped: the window length and how many actors the payload shows."""

    window_ms: int
    actors_shown: int
    verb: str


DEFAULT_RULES: Mapping[str, AggregationRule] = {
    "POST_LIKED": AggregationRule(window_ms=5 * 60_000, actors_shown=3, verb="liked your post"),
    "POST_COMMENTED": AggregationRule(window_ms=10 * 60_000, actors_shown=2, verb="commented on your post"),
    "USER_FOLLOWED": AggregationRule(window_ms=60 * 60_000, actors_shown=5, verb="started following you"),
}


def window_accepts(*, window_start_ms: int, window_ms: int, event_ms: int, late_allowance_ms: int) -> bool:
    """True when an event at `event_ms` belongs to the window opened at `window_start_ms`.

    The window is half-open, [start, start + window_ms): an event exactly one window after the first opens a
    new group. Events slightly older than the window's start (out of order by at most `late_allowance_ms`)
    still join it rather than opening a group of their own.
    """
    return window_start_ms - late_allowance_ms <= event_ms < window_start_ms + window_ms


@tuple_pickled
@dataclass(frozen=True)
class ActorInfo:
    id: str
    name: str | None = None
    avatar_url: str | None = None

    @property
    def display_name(self) -> str:
        # An id is no name to show a person ("cku8x9 liked your post"); the directory fills names in later.
        return self.name or "Someone"

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"id": self.id, "name": self.display_name}
        if self.avatar_url:
            wire["avatarUrl"] = self.avatar_url
        return wire


def _actor_json(actor: ActorInfo) -> dict[str, Any]:
    return {"id": actor.id, "name": actor.name, "avatarUrl": actor.avatar_url}


def _actor_from_json(data: Mapping[str, Any]) -> ActorInfo:
    return ActorInfo(id=data["id"], name=data.get("name"), avatar_url=data.get("avatarUrl"))


@dataclass(frozen=True)
class GroupState:
    """One open group: everything needed to render its notification and to decide what joins it."""

    notification_id: str
    notification_type: str
    target: dict[str, Any] | None
    window_start_ms: int
    window_end_ms: int
    # Every distinct actor, in order of first appearance: a dict used as an ordered set, so membership is O(1)
    # (a viral post has 100,000 actors). A fold takes its own copy once (`owned`) and then grows it in place.
    actor_ids: dict[str, None]
    recent_actors: tuple[ActorInfo, ...]  # most recent first, at most rule.actors_shown
    leading_actors: tuple[ActorInfo, ...]  # the first two actors, in order: the text names them
    version: int
    created_ms: int
    updated_ms: int
    # Presentation fields of the event that opened the group (category, actionUrl, imageUrl).
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.actor_ids)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.notification_id,
            "type": self.notification_type,
            "target": self.target,
            "ws": self.window_start_ms,
            "we": self.window_end_ms,
            "actorIds": list(self.actor_ids),
            "recent": [_actor_json(a) for a in self.recent_actors],
            "leading": [_actor_json(a) for a in self.leading_actors],
            "version": self.version,
            "created": self.created_ms,
            "updated": self.updated_ms,
            "extras": self.extras,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GroupState:
        return cls(
            notification_id=data["id"],
            notification_type=data["type"],
            target=data["target"],
            window_start_ms=int(data["ws"]),
            window_end_ms=int(data["we"]),
            actor_ids=dict.fromkeys(data["actorIds"]),
            recent_actors=tuple(_actor_from_json(a) for a in data["recent"]),
            leading_actors=tuple(_actor_from_json(a) for a in data["leading"]),
            version=int(data["version"]),
            created_ms=int(data["created"]),
            updated_ms=int(data["updated"]),
            extras=dict(data.get("extras") or {}),
        )


@tuple_pickled
@dataclass(frozen=True)
class Occurrence:
    """The parts of one NOTIFICATION_CREATED event that aggregation looks at."""

    event_id: str
    user_id: str
    notification_type: str
    target: dict[str, Any] | None
    actor: ActorInfo | None
    event_ms: int
    title: str | None = None
    message: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    app_id: str | None = None  # the producing application's own id of this notification
    extras: dict[str, Any] = field(default_factory=dict)  # category, actionUrl, imageUrl when given

    @property
    def target_key(self) -> str:
        """Which target a group is about: type and id, so post p1 and comment p1 never share a group; "" when
        there is no target, which groups only with other events that have none."""
        if not self.target:
            return ""
        return f"{self.target.get('type', '')}/{self.target.get('id', '')}"


def notification_id_for(user_id: str, *parts: str) -> str:
    """Deterministic ids: replaying the same events after a crash names the same notifications."""
    digest = hashlib.blake2b("\x1f".join((user_id, *parts)).encode(), digest_size=12).hexdigest()
    return f"n_{digest}"


def initialize(rule: AggregationRule, occurrence: Occurrence) -> GroupState:
    """Open a group with its first event."""
    actor = occurrence.actor
    return GroupState(
        notification_id=notification_id_for(
            occurrence.user_id, occurrence.notification_type, occurrence.target_key, occurrence.event_id
        ),
        notification_type=occurrence.notification_type,
        target=occurrence.target,
        window_start_ms=occurrence.event_ms,
        window_end_ms=occurrence.event_ms + rule.window_ms,
        actor_ids={actor.id: None} if actor else {},
        recent_actors=(actor,) if actor else (),
        leading_actors=(actor,) if actor else (),
        version=1,
        created_ms=occurrence.event_ms,
        updated_ms=occurrence.event_ms,
        extras=occurrence.extras,
    )


def with_names(state: GroupState, names: Mapping[str, ActorInfo]) -> GroupState:
    """Fill in actors shown without a name from `names` (the user directory): a name learnt later is used
    by the next version of the notification, never written into versions already sent."""
    if not names:
        return state

    def named(actors: tuple[ActorInfo, ...]) -> tuple[ActorInfo, ...]:
        return tuple(a if a.name or a.id not in names else names[a.id] for a in actors)

    recent, leading = named(state.recent_actors), named(state.leading_actors)
    if recent == state.recent_actors and leading == state.leading_actors:
        return state
    return replace(state, recent_actors=recent, leading_actors=leading)


def owned(state: GroupState) -> GroupState:
    """A copy of `state` whose actor set may be grown in place by add(): take it once per group per fold, so
    the snapshot the fold started from stays as it was (a refused commit folds again from it)."""
    return replace(state, actor_ids=dict(state.actor_ids))


def add(rule: AggregationRule, state: GroupState, occurrence: Occurrence) -> GroupState | None:
    """Fold one more event into an open group; None when it changes nothing (an actor already counted).

    `state` must come from owned() or initialize() within the caller's fold: its actor set is grown in
    place and shared by the returned state, which keeps folding O(1) per event.

    Events without an actor never reach a group (the applier gives each its own notification): an anonymous
    event cannot be told apart from another, so folding it would silently merge it."""
    actor = occurrence.actor
    if actor is None or actor.id in state.actor_ids:
        return None
    state.actor_ids[actor.id] = None
    recent = (actor, *state.recent_actors)[: rule.actors_shown]
    return replace(
        state,
        recent_actors=recent,
        leading_actors=state.leading_actors if len(state.leading_actors) >= 2 else (*state.leading_actors, actor),
        version=state.version + 1,
        updated_ms=max(state.updated_ms, occurrence.event_ms),
    )


def render_text(verb: str, actor_names: list[str], count: int) -> str:
    """'John liked your post', 'John and Sarah liked your post', 'John and 2 others liked your post'.

    `actor_names` are the leading actors in order of arrival: the text names the first one who acted.
    """
    if not actor_names:
        return f"Someone {verb}"
    first = actor_names[0]
    if count <= 1:
        return f"{first} {verb}"
    if count == 2 and len(actor_names) >= 2:
        return f"{first} and {actor_names[1]} {verb}"
    others = count - 1
    return f"{first} and {others} {'other' if others == 1 else 'others'} {verb}"


def render_group(rule: AggregationRule, state: GroupState, group_key: str) -> dict[str, Any]:
    """The notification a group shows: text, actors (most recent first) and count, without store fields."""
    names = [a.display_name for a in state.leading_actors]
    return {
        **state.extras,
        "id": state.notification_id,
        "version": state.version,
        "type": state.notification_type,
        "text": render_text(rule.verb, names, state.count),
        "actors": [a.to_wire() for a in state.recent_actors],
        "count": state.count,
        "target": state.target,
        "groupKey": group_key,
        "createdAt": state.created_ms,
        "updatedAt": state.updated_ms,
    }


def render_single(occurrence: Occurrence) -> dict[str, Any]:
    """A notification of its own (a type without a rule, an URGENT event, an event without an actor), with
    the event's own title and message. It keeps the application's id when the event has one, so the
    application's reads and deletes name it directly."""
    actor = occurrence.actor
    text = occurrence.message or occurrence.title or occurrence.notification_type.replace("_", " ").lower()
    return {
        **occurrence.extras,
        "id": occurrence.app_id or notification_id_for(occurrence.user_id, "single", occurrence.event_id),
        "version": 1,
        "type": occurrence.notification_type,
        "text": text,
        "title": occurrence.title,
        "message": occurrence.message,
        "actors": [actor.to_wire()] if actor else [],
        "count": 1,
        "target": occurrence.target,
        "data": occurrence.data,
        "createdAt": occurrence.event_ms,
        "updatedAt": occurrence.event_ms,
    }
