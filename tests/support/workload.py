"""A realistic, deterministic event stream (likes, comments, follows, mentions) and its reference model."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from herald.applier import Aggregator
from herald.events import NotificationEvent
from herald.store_memory import MemoryStore
from tests.support.events import event_dict

NAMES = ["John", "Sarah", "Mike", "Ana", "Li", "Omar", "Zoe", "Ravi", "Emma", "Noah", "Ida", "Kai"]
KINDS = [("POST_LIKED", 60), ("POST_COMMENTED", 25), ("USER_FOLLOWED", 10), ("MENTIONED", 5)]


def social_stream(
    run_id: str, *, events: int, users: int, base: datetime, spread: timedelta, seed: int = 7
) -> list[dict[str, Any]]:
    """`events` wire events over `users` recipients, with popular posts getting bursts of likes."""
    rng = random.Random(seed)
    kinds = [k for k, weight in KINDS for _ in range(weight)]
    out = []
    for i in range(events):
        # A fifth of the traffic goes to a few popular users; the rest is spread over everyone.
        user = f"{run_id}-u{rng.randrange(min(20, users)) if rng.random() < 0.2 else rng.randrange(users)}"
        kind = rng.choice(kinds)
        actor = rng.randrange(400)
        target = user if kind == "USER_FOLLOWED" else f"p{rng.randrange(3)}"
        offset = timedelta(seconds=rng.uniform(0, spread.total_seconds()))
        out.append(
            event_dict(
                user,
                kind=kind,
                actor=f"a{actor}",
                actor_name=f"{NAMES[actor % len(NAMES)]}{actor}",
                target=target,
                at=offset,
                base=base,
                event_id=f"{run_id}-e{i}",
                message=f"mention {i}" if kind == "MENTIONED" else None,
            )
        )
    return out


async def reference_inboxes(
    wire_events: Iterable[dict[str, Any]], *, now_ms: int, late_allowance_ms: int, inbox_capacity: int
) -> dict[str, set[tuple[str, str, int, int]]]:
    """What each user's inbox must hold: the pure aggregation applied once, in order."""
    store = MemoryStore(lambda: now_ms, inbox_capacity=inbox_capacity)
    aggregator = Aggregator(store, clock_ms=lambda: now_ms, late_allowance_ms=late_allowance_ms)
    events = [NotificationEvent.model_validate(e) for e in wire_events]
    await aggregator.apply(events)
    return {
        user: {(n["id"], n["text"], n["count"], n["version"]) for n in store.snapshot_of(user)}
        for user in {e.user_id for e in events}
    }


def fingerprint(notes: Iterable[dict[str, Any]]) -> set[tuple[str, str, int, int]]:
    return {(n["id"], n["text"], n["count"], n["version"]) for n in notes}
