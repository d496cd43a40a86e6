"""An independent model of what each inbox must hold after a workload: the documented rules in plain Python.

It shares no code with herald's fold (herald/grouping.py, herald/applier.py), so a mistake there cannot hide in
the expectation. It covers what herald.workload generates: NOTIFICATION_CREATED events with an actor and a
target, in order per user, all applied at one moment (no group expires between them).
Rules (docs/architecture.md, "Aggregation"): a group is (user, type, target type/id); POST_LIKED groups for
5 minutes, POST_COMMENTED 10, USER_FOLLOWED 60, from the event time of its first event, half-open, with events
up to `late_allowance_ms` older than the start still joining; an actor counts once; other types, URGENT and
CRITICAL are notifications of their own. Ids: "n_" + blake2b-96 of the user, type, target and first event id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

WINDOWS_MS = {"POST_LIKED": 300_000, "POST_COMMENTED": 600_000, "USER_FOLLOWED": 3_600_000}
VERBS = {
    "POST_LIKED": "liked your post",
    "POST_COMMENTED": "commented on your post",
    "USER_FOLLOWED": "started following you",
}
UNGROUPED = {"URGENT", "CRITICAL"}


def _id(*parts: str) -> str:
    return "n_" + hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12).hexdigest()


def _ms(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)


@dataclass
class _Note:
    id: str
    text: str
    count: int = 1
    version: int = 1
    start_ms: int = 0
    actors: list[str] = field(default_factory=list)  # distinct, in order of first appearance
    names: dict[str, str] = field(default_factory=dict)


def _group_text(note: _Note, verb: str) -> str:
    first = note.names[note.actors[0]]
    if len(note.actors) == 1:
        return f"{first} {verb}"
    if len(note.actors) == 2:
        return f"{first} and {note.names[note.actors[1]]} {verb}"
    others = len(note.actors) - 1
    return f"{first} and {others} other{'s' if others > 1 else ''} {verb}"


def expected_inboxes(
    wire_events: Iterable[dict[str, Any]], *, late_allowance_ms: int, inbox_capacity: int
) -> dict[str, set[tuple[str, str, int, int]]]:
    """Per user: {(id, text, count, version)} of the notifications the inbox must hold."""
    inboxes: dict[str, dict[str, _Note]] = {}  # user -> notification id -> note, in order of last change
    open_groups: dict[tuple[str, str, str], _Note] = {}
    for event in wire_events:
        user, body = event["userId"], event["notification"]
        kind, actor, target = body["type"], body["actor"], body["target"]
        at_ms, inbox = _ms(event["timestamp"]), inboxes.setdefault(user, {})
        if actor["id"] == user:
            continue  # the recipient's own action is shown to no one
        if kind not in WINDOWS_MS or event.get("priority", "NORMAL") in UNGROUPED:
            note = _Note(_id(user, "single", event["eventId"]), body.get("message") or kind.replace("_", " ").lower())
        else:
            key = (user, kind, f"{target['type']}/{target['id']}")
            group = open_groups.get(key)
            window_ms = WINDOWS_MS[kind]
            if group is not None and group.start_ms - late_allowance_ms <= at_ms < group.start_ms + window_ms:
                if actor["id"] in group.names:
                    continue  # an actor counts once: nothing changes
                group.version += 1
            else:
                group = _Note(_id(user, kind, key[2], event["eventId"]), "", start_ms=at_ms)
                open_groups[key] = group
            group.actors.append(actor["id"])
            group.names[actor["id"]] = actor.get("name") or "Someone"
            group.count, group.text = len(group.actors), _group_text(group, VERBS[kind])
            note = group
        inbox.pop(note.id, None)
        inbox[note.id] = note  # the newest change last
        while len(inbox) > inbox_capacity:
            del inbox[next(iter(inbox))]
    return {user: {(n.id, n.text, n.count, n.version) for n in notes.values()} for user, notes in inboxes.items()}
