"""The reference model of a workload: what each inbox must hold after the events were applied once, in order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from herald.applier import InboxApplier
from herald.events import NotificationEvent
from herald.store_memory import MemoryStore


async def reference_inboxes(
    wire_events: Iterable[dict[str, Any]], *, now_ms: int, late_allowance_ms: int, inbox_capacity: int
) -> dict[str, set[tuple[str, str, int, int]]]:
    """What each user's inbox must hold: the pure aggregation applied once, in order."""
    store = MemoryStore(lambda: now_ms, inbox_capacity=inbox_capacity)
    aggregator = InboxApplier(store, clock_ms=lambda: now_ms, late_allowance_ms=late_allowance_ms)
    events = [NotificationEvent.model_validate(e) for e in wire_events]
    await aggregator.apply(events)
    return {
        user: {(n["id"], n["text"], n["count"], n["version"]) for n in store.snapshot_of(user)}
        for user in {e.user_id for e in events}
    }


def fingerprint(notes: Iterable[dict[str, Any]]) -> set[tuple[str, str, int, int]]:
    return {(n["id"], n["text"], n["count"], n["version"]) for n in notes}
