"""The typed contracts across process boundaries (herald/contracts.py): the notification body that Herald builds
matches its published schema, and the checked-in schema files match what `herald schema` prints."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pydantic
import pytest

from herald.applier import InboxApplier
from herald.checkpoint import CheckpointCounters
from herald.cli.ops import schema_text
from herald.contracts import ActorHealth, ApplyResult, notification_json_schema, validate_notification
from herald.events import NotificationEvent, decode_event
from herald.store_memory import MemoryStore
from tests.support.app_events import prisma_created
from tests.support.events import BASE_TIME, make_event

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schema"
NOW_MS = int(BASE_TIME.timestamp() * 1000)


@pytest.mark.parametrize(("notification", "file"), [(False, "event.schema.json"), (True, "notification.schema.json")])
def test_checked_in_schemas_are_what_herald_schema_prints(notification: bool, file: str) -> None:
    flag = " --notification" if notification else ""
    assert (SCHEMA_DIR / file).read_text() == schema_text(notification=notification), (
        f"docs/schema/{file} is stale: regenerate it with `herald schema{flag} > docs/schema/{file}`"
    )


def test_the_notification_schema_names_every_field_clients_rely_on() -> None:
    schema = notification_json_schema()
    assert set(schema["required"]) >= {"id", "version", "cursor", "userId", "type", "text", "actors", "count"}
    assert {"read", "title", "message", "groupKey", "createdAt", "updatedAt", "priority"} <= set(schema["properties"])
    assert schema["additionalProperties"] is True  # clients must ignore fields a later Herald adds


async def _bodies(events: list[NotificationEvent]) -> tuple[list[dict[str, Any]], list[Mapping[str, Any]]]:
    """What the inbox serves (with `read`) and what the commits push live, after applying `events`."""
    store = MemoryStore(lambda: NOW_MS, inbox_capacity=50)
    aggregator = InboxApplier(store, clock_ms=lambda: NOW_MS, late_allowance_ms=60_000, delivery_channels=("IN_APP",))
    await aggregator.apply(events)
    served = [note for user in sorted({e.user_id for e in events}) for note in store.snapshot_of(user)]
    sent = [note for entry in store.live for note in entry["notes"]]
    return served, sent


async def test_grouped_single_and_application_notifications_match_the_contract() -> None:
    grouped = [make_event(actor=f"a{i}", actor_name=f"A{i}", at=timedelta(seconds=i)) for i in range(3)]
    urgent = make_event(user="user7", priority="URGENT", title="Security", message="New sign-in")
    app = decode_event(
        orjson.dumps(prisma_created("user9", actor="u1", data={"k": 1})), fallback_event_id="kafka:t:0:1"
    )
    served, sent = await _bodies([*grouped, urgent, app])
    assert len(served) == 3
    assert len(sent) == 3
    for body in [*served, *sent]:
        validate_notification(body)
    assert {"groupKey" in body for body in served} == {True, False}


def test_a_body_missing_a_field_is_refused_with_the_field_named() -> None:
    body = {
        "id": "n1",
        "version": 1,
        "cursor": 3,
        "userId": "u1",
        "type": "POST_LIKED",
        "text": "John liked your post",
        "actors": [{"id": "u42", "name": "John"}],
        "target": {"type": "post", "id": "p1"},
        "priority": "NORMAL",
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-01T00:00:00.000Z",
    }
    with pytest.raises(pydantic.ValidationError, match="count"):
        validate_notification(body)
    assert validate_notification(body | {"count": 1, "futureField": "ignored"})["count"] == 1
    json.dumps(body)  # plain JSON: what Redis stores and Socket.IO sends


def test_every_reader_counter_has_a_place_in_the_health_record() -> None:
    # The reader copies CheckpointCounters into its health field by field; a new counter needs a key here too.
    counters = {f.name for f in dataclasses.fields(CheckpointCounters)}
    assert counters <= set(ActorHealth.__annotations__)


def test_the_apply_result_names_what_the_reader_reads() -> None:
    assert set(ApplyResult.__annotations__) == {"applied", "duplicates", "changed", "self_skipped", "rejected"}
