"""The pure half of the chaos run (scripts/chaos.py): which faults to inject when, which events ask for a
webhook, and the figures that compare what the system did with the reference model (tests/support/reference_model.py).

No Ray, no network: tests/unit/test_chaos_model.py checks it.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

FAULT_KINDS = (
    "kill_reader",
    "kill_aggregator",
    "kill_delivery",
    "kill_gateway",
    "kill_redis",
    "restart_kafka",
    "drop_clients",
)
WEBHOOK = "WEBHOOK"
Note = tuple[str, str, int, int]  # (id, text, count, version), as reference_model.expected_inboxes gives them


@dataclass(frozen=True)
class PlannedFault:
    at_s: float  # seconds after the stream started
    kind: str


def plan_faults(rng: random.Random, *, duration_s: float, per_kind: Mapping[str, int]) -> list[PlannedFault]:
    """Random moments within the stream (its first and last 5% excluded, so every fault lands while events
    flow), `per_kind[kind]` of each kind, in time order."""
    unknown = sorted(set(per_kind) - set(FAULT_KINDS))
    if unknown:
        raise ValueError(f"unknown fault kind(s) {unknown}; choose from {FAULT_KINDS}")
    planned = [
        PlannedFault(round(rng.uniform(0.05, 0.95) * duration_s, 2), kind)
        for kind in FAULT_KINDS
        for _ in range(per_kind.get(kind, 0))
    ]
    return sorted(planned, key=lambda f: (f.at_s, f.kind))


def webhook_users(users: Iterable[str], rng: random.Random, share: float) -> set[str]:
    """The users whose every event also asks for WEBHOOK. Whole users, not single events: then every version of
    their notifications asks for it, and the final version of each must be delivered (docs/architecture.md,
    "Delivery": one outbox entry per changed notification per commit, so intermediate versions may be skipped)."""
    return {u for u in sorted(set(users)) if rng.random() < share}


def ask_webhook(wire: list[dict[str, Any]], users: set[str]) -> None:
    for event in wire:
        if event["userId"] in users:
            event["channels"] = ["IN_APP", WEBHOOK]


def expected_deliveries(expected: Mapping[str, set[Note]], users: set[str]) -> dict[str, int]:
    """notification id -> the final version that must reach the webhook, for the users that asked for it.
    `expected` must come from a model without an inbox cap: a notification evicted from a full inbox was still
    delivered."""
    return {note[0]: note[3] for user in users for note in expected.get(user, set())}


@dataclass
class InboxFigures:
    users_checked: int = 0
    notifications_expected: int = 0
    notifications_missing: int = 0  # expected, not stored
    versions_missing: int = 0  # stored at an older version than the reference (an event not applied)
    notifications_extra: int = 0  # stored, not expected (an event applied twice could open one)
    versions_extra: int = 0  # stored at a newer version than the reference (an event applied twice)
    notifications_different: int = 0  # same id and version, other text or count
    examples: list[str] = field(default_factory=list)


def compare_inboxes(expected: Mapping[str, set[Note]], stored: Mapping[str, set[Note]]) -> InboxFigures:
    figures = InboxFigures(users_checked=len(expected))
    for user, notes in expected.items():
        want = {n[0]: n for n in notes}
        have = {n[0]: n for n in stored.get(user, set())}
        figures.notifications_expected += len(want)
        for nid, note in want.items():
            got = have.get(nid)
            if got is None:
                figures.notifications_missing += 1
                _example(figures, f"{user} {nid}: missing, want v{note[3]}")
            elif got[3] < note[3]:
                figures.versions_missing += note[3] - got[3]
                _example(figures, f"{user} {nid}: v{got[3]}, want v{note[3]}")
            elif got[3] > note[3]:
                figures.versions_extra += got[3] - note[3]
                _example(figures, f"{user} {nid}: v{got[3]}, want v{note[3]}")
            elif got != note:
                figures.notifications_different += 1
                _example(figures, f"{user} {nid}: {got}, want {note}")
        for nid in set(have) - set(want):
            figures.notifications_extra += 1
            _example(figures, f"{user} {nid}: not in the reference model")
    return figures


def _example(figures: InboxFigures, text: str) -> None:
    if len(figures.examples) < 10:
        figures.examples.append(text)


@dataclass
class DeliveryFigures:
    expected: int = 0
    received: int = 0  # requests, repeats included
    missing: int = 0  # final versions never delivered
    duplicated: int = 0  # repeats of a delivery id (at-least-once: reported, not a failure)
    unexpected: int = 0  # ids naming no notification of the reference, or a version past its final one
    examples: list[str] = field(default_factory=list)


def compare_deliveries(final_versions: Mapping[str, int], delivery_ids: Iterable[str]) -> DeliveryFigures:
    """Delivery ids are `<notification id>:<version>:WEBHOOK` (docs/channels.md, "Providers")."""
    seen = Counter(delivery_ids)
    figures = DeliveryFigures(expected=len(final_versions), received=sum(seen.values()))
    figures.duplicated = sum(times - 1 for times in seen.values())
    for nid, version in final_versions.items():
        if seen[f"{nid}:{version}:{WEBHOOK}"] == 0:
            figures.missing += 1
            if len(figures.examples) < 10:
                figures.examples.append(f"{nid}:{version}:{WEBHOOK} never delivered")
    for delivery_id in seen:
        nid, _, rest = delivery_id.partition(":")
        version = int(rest.split(":", 1)[0]) if rest.split(":", 1)[0].isdigit() else -1
        if nid not in final_versions or not 1 <= version <= final_versions[nid]:
            figures.unexpected += 1
            if len(figures.examples) < 10:
                figures.examples.append(f"{delivery_id} not expected")
    return figures


@dataclass
class ClientFigures:
    devices: int = 0
    connections: int = 0
    notifications_shown: int = 0
    shown_twice: int = 0  # (id, version) shown twice to one device
    behind: int = 0  # devices that never saw the stored final version of some notification
    examples: list[str] = field(default_factory=list)


def compare_clients(
    received: Mapping[str, list[tuple[str, int, int]]],
    connections: Mapping[str, int],
    stored: Mapping[str, set[Note]],
    attempts_of: Mapping[str, list[int]] | None = None,
) -> ClientFigures:
    """`received`: per user (one device each), every (id, version, cursor) it was shown, in order;
    `attempts_of`: for each of those, the connection attempt it arrived on (for the examples)."""
    figures = ClientFigures(devices=len(received), connections=sum(connections.values()))
    for user, shown in received.items():
        attempts = (attempts_of or {}).get(user, [])
        figures.notifications_shown += len(shown)
        counts = Counter((nid, version) for nid, version, _cursor in shown)
        twice = [key for key, times in counts.items() if times > 1]
        figures.shown_twice += sum(counts[key] - 1 for key in twice)
        if twice and len(figures.examples) < 10:
            nid, version = twice[0]
            where = [
                f"cursor {c} on attempt {attempts[i]}" if attempts else f"cursor {c}"
                for i, (n, v, c) in enumerate(shown)
                if (n, v) == (nid, version)
            ]
            figures.examples.append(f"{user} was shown {nid} v{version} {len(where)} times: {', '.join(where)}")
        newest: dict[str, int] = {}
        for nid, version, _cursor in shown:
            newest[nid] = max(version, newest.get(nid, 0))
        want = {n[0]: n[3] for n in stored.get(user, set())}
        if newest != want:
            figures.behind += 1
            if len(figures.examples) < 10:
                lacking = sorted(k for k in want if newest.get(k) != want[k])[:3]
                figures.examples.append(f"{user}: device lacks the final version of {lacking}")
    return figures


@dataclass
class Figures:
    events_published: int
    events_lost: int  # published ids missing from their user's `seen` set
    inbox: InboxFigures
    deliveries: DeliveryFigures
    clients: ClientFigures
    converged_s: float | None  # from the last event published to everything matching; None = never

    def must_be_zero(self) -> dict[str, int]:
        return {
            "events lost": self.events_lost,
            "notifications missing or behind": self.inbox.notifications_missing + self.inbox.versions_missing,
            "events counted twice": self.inbox.notifications_extra + self.inbox.versions_extra,
            "notifications different": self.inbox.notifications_different,
            "client duplicates (same id+version)": self.clients.shown_twice,
            "clients behind": self.clients.behind,
            "deliveries missing": self.deliveries.missing,
            "deliveries unexpected": self.deliveries.unexpected,
        }

    def ok(self) -> bool:
        return not any(self.must_be_zero().values()) and self.converged_s is not None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "must_be_zero": self.must_be_zero(), "ok": self.ok()}
