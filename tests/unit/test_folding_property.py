"""Nothing is silently merged or dropped: random mixes of actors, targets and no-targets in the application's
flat shape, applied in random batches, against a reference model of the aggregation rules."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.applier import InboxApplier
from herald.directory import MemoryUserDirectory, UserProfile
from herald.events import decode_event
from herald.grouping import DEFAULT_RULES, render_text
from herald.store_memory import MemoryStore
from tests.support import app_events
from tests.support.events import BASE_TIME

NOW_MS = int(BASE_TIME.timestamp() * 1000)
LATE_MS = 60_000
USER = "u1"
ACTORS = [None, "a", "b", "c", "d", USER]  # USER: the recipient acting on their own post
TARGETS = [None, ("post", "p1"), ("post", "p2"), ("comment", "p1")]
KINDS = ["POST_LIKED", "POST_COMMENTED", "GRADE_POSTED"]  # the last has no rule


@dataclass
class _Group:
    start_ms: int
    actors: list[str] = field(default_factory=list)


def reference(events: list[tuple[str, str | None, tuple[str, str] | None, int]]) -> list[tuple[Any, ...]]:
    """(type, target, count, text) of every notification the rules call for, written independently."""
    singles: list[tuple[Any, ...]] = []
    closed: list[tuple[str, Any, _Group]] = []
    open_groups: dict[tuple[str, Any], _Group] = {}
    for kind, actor, target, at_ms in events:
        if actor == USER:
            continue
        rule = DEFAULT_RULES.get(kind)
        if rule is None or actor is None:
            name = actor.upper() if actor else None
            singles.append((kind, target, 1, f"message {kind} {name}"))
            continue
        group = open_groups.get((kind, target))
        if group is not None and group.start_ms - LATE_MS <= at_ms < group.start_ms + rule.window_ms:
            if actor not in group.actors:
                group.actors.append(actor)
            continue
        if group is not None:
            closed.append((kind, target, group))
        open_groups[(kind, target)] = _Group(at_ms, [actor])
    closed.extend((kind, target, group) for (kind, target), group in open_groups.items())
    grouped = [
        (
            kind,
            target,
            len(g.actors),
            render_text(DEFAULT_RULES[kind].verb, [a.upper() for a in g.actors[:2]], len(g.actors)),
        )
        for kind, target, g in closed
    ]
    return sorted(singles + grouped, key=repr)


event_strategy = st.tuples(
    st.sampled_from(KINDS),
    st.sampled_from(ACTORS),
    st.sampled_from(TARGETS),
    st.integers(min_value=0, max_value=40),  # minutes: windows of 5 and 10 minutes open and close
)


async def _run(events: list[tuple[str, str | None, tuple[str, str] | None, int]], cuts: list[int]) -> list[Any]:
    store = MemoryStore(lambda: NOW_MS)
    directory = MemoryUserDirectory()
    await directory.remember([UserProfile(a, a.upper(), None) for a in ACTORS if a])
    aggregator = InboxApplier(store, clock_ms=lambda: NOW_MS, late_allowance_ms=LATE_MS, directory=directory)
    wires = []
    for kind, actor, target, minute in events:
        wire = app_events.prisma_created(
            USER,
            actor=actor,
            kind=kind,
            entity_type=target[0] if target else None,
            entity_id=target[1] if target else None,
            at=timedelta(minutes=minute),
            message=f"message {kind} {actor.upper() if actor else None}",
        )
        wires.append(wire)
    decoded = [
        decode_event(orjson.dumps(w), fallback_event_id=f"kafka:notification-events:0:{i}") for i, w in enumerate(wires)
    ]
    bounds = sorted({0, len(decoded), *(c % (len(decoded) + 1) for c in cuts)})
    for lo, hi in itertools.pairwise(bounds):
        await aggregator.apply(decoded[lo:hi])
    seen = []
    for note in store.snapshot_of(USER):
        target = (note["target"]["type"], note["target"]["id"]) if note["target"] else None
        seen.append((note["type"], target, note["count"], note["text"]))
    return sorted(seen, key=repr)


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(event_strategy, min_size=1, max_size=25),
    cuts=st.lists(st.integers(min_value=0, max_value=30), max_size=4),
)
def test_folding_matches_the_reference_model(
    events: list[tuple[str, str | None, tuple[str, str] | None, int]], cuts: list[int]
) -> None:
    timed = [(kind, actor, target, NOW_MS + minute * 60_000) for kind, actor, target, minute in events]
    assert asyncio.run(_run(events, cuts)) == reference(timed)
