"""Realistic synthetic traffic for the demo, the benchmarks and the tests: likes, comments, follows and
mentions across many users, with bursts on a few popular posts. Deterministic for a given seed."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

NAMES = ["John", "Sarah", "Mike", "Ana", "Li", "Omar", "Zoe", "Ravi", "Emma", "Noah", "Ida", "Kai"]
KIND_WEIGHTS = {"POST_LIKED": 60, "POST_COMMENTED": 25, "USER_FOLLOWED": 10, "MENTIONED": 5}
ACTOR_POOL = 400


def wire_event(
    user: str,
    *,
    kind: str,
    actor: int,
    target: str,
    at: datetime,
    event_id: str | None = None,
    message: str | None = None,
    channels: tuple[str, ...] = ("IN_APP",),
) -> dict[str, Any]:
    """One NOTIFICATION_CREATED event in the shape the existing application publishes."""
    notification: dict[str, Any] = {
        "type": kind,
        "actor": {"id": f"a{actor}", "name": f"{NAMES[actor % len(NAMES)]}{actor}"},
        "target": {"type": "user" if kind == "USER_FOLLOWED" else "post", "id": target},
        "data": {},
    }
    if message:
        notification["message"] = message
    event: dict[str, Any] = {
        "type": "NOTIFICATION_CREATED",
        "userId": user,
        "notification": notification,
        "channels": list(channels),
        "priority": "NORMAL",
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "source": "herald-workload",
    }
    if event_id is not None:
        event["eventId"] = event_id
    return event


class SocialTraffic:
    """Draws events: a share of the traffic goes to a few popular users, the rest is spread over everyone."""

    def __init__(self, prefix: str, *, users: int, popular: int = 20, popular_share: float = 0.2, seed: int = 7):
        self._prefix = prefix
        self._users = users
        self._popular = min(popular, users)
        self._popular_share = popular_share
        self._rng = random.Random(seed)  # noqa: S311 - synthetic traffic, reproducible by seed
        self._kinds = [k for k, weight in KIND_WEIGHTS.items() for _ in range(weight)]
        self._count = 0

    def user_name(self, index: int) -> str:
        return f"{self._prefix}-u{index}"

    def next(self, at: datetime) -> dict[str, Any]:
        rng = self._rng
        popular = rng.random() < self._popular_share
        user = self.user_name(rng.randrange(self._popular) if popular else rng.randrange(self._users))
        kind = rng.choice(self._kinds)
        target = user if kind == "USER_FOLLOWED" else f"p{rng.randrange(3)}"
        self._count += 1
        return wire_event(
            user,
            kind=kind,
            actor=rng.randrange(ACTOR_POOL),
            target=target,
            at=at,
            event_id=f"{self._prefix}-e{self._count}",
            message=f"{NAMES[self._count % len(NAMES)]} mentioned you" if kind == "MENTIONED" else None,
        )


def social_stream(
    prefix: str, *, events: int, users: int, base: datetime, spread: timedelta, seed: int = 7
) -> list[dict[str, Any]]:
    """`events` events with event times spread uniformly over [base, base + spread)."""
    traffic = SocialTraffic(prefix, users=users, seed=seed)
    rng = random.Random(seed + 1)  # noqa: S311 - synthetic traffic, reproducible by seed
    return [traffic.next(base + timedelta(seconds=rng.uniform(0, spread.total_seconds()))) for _ in range(events)]
