"""The malformed-input run on the real pipeline (docs/reliability.md, Bad input): thousands of malformed records of
every kind mixed into valid traffic. Every malformed one ends in `notification-dlq` with a reason naming what is
wrong, every valid one is applied exactly as the reference model says, and no actor restarts.

The full-size run (100,000 malformed, with throughput clean vs mixed) is `./scripts/dev bench badinput`.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from herald.config import Settings
from herald.contracts import ActorHealth
from herald.dlq import KEPT_PREFIX_BYTES
from herald.dlq_admin import dlq_end_offsets, read_dead_letters
from herald.events import MAX_EVENT_BYTES
from herald.malformed import KINDS, malformed_records
from herald.malformed_run import DlqFindings, match_dead_letters, produce_mixed
from herald.store_redis import RedisStore
from herald.workload import social_stream
from pipeline import Pipeline
from tests.support.reference_model import expected_inboxes
from tests.support.waiting import eventually
from tests.support.workload import fingerprint

pytestmark = [pytest.mark.integration, pytest.mark.ray]

MALFORMED = 3000
VALID = 3000
USERS = 300


def pids(status: dict[str, list[ActorHealth]]) -> dict[str, int | None]:
    return {f"{group}[{i}]": h.get("pid") for group, hs in status.items() for i, h in enumerate(hs)}


def application_errors(status: dict[str, list[ActorHealth]]) -> int:
    return sum(h.get("application_errors", 0) for h in status["readers"])


@pytest.mark.timeout(600)
async def test_malformed_records_mixed_into_valid_traffic(
    pipeline: Pipeline, pipeline_settings: Settings, store: RedisStore
) -> None:
    settings = pipeline_settings
    run = f"bad{uuid.uuid4().hex[:6]}"
    valid = social_stream(run, events=VALID, users=USERS, base=datetime.now(UTC), spread=timedelta(minutes=20))
    expected = expected_inboxes(
        valid, late_allowance_ms=settings.late_allowance_s * 1000, inbox_capacity=settings.inbox_capacity
    )
    malformed = malformed_records(run, MALFORMED, users=USERS)
    assert {m.kind for m in malformed} == set(KINDS)
    before = await asyncio.to_thread(pipeline.status)
    since = await dlq_end_offsets(settings)

    sent = await produce_mixed(settings, settings.events_topic, valid, malformed)

    async def mismatched_users() -> list[str]:
        return [
            user
            for user, reference in expected.items()
            if fingerprint(await store.notifications_after(user, 0, 10_000)) != reference
        ]

    await eventually(mismatched_users, lambda bad: not bad, timeout_s=240, interval_s=1, what="valid traffic applied")

    async def findings() -> DlqFindings:
        letters = await read_dead_letters(settings, since=since)
        return match_dead_letters(sent, letters, [settings.events_topic])

    found = await eventually(findings, lambda f: not f.missing, timeout_s=120, interval_s=1, what="malformed in DLQ")
    assert found.sent == MALFORMED
    assert found.with_reason == MALFORMED, found.summary()
    assert not found.unexpected, [(d.source, d.reason) for d in found.unexpected[:5]]  # no valid event lost
    # Refused at the reader, except reads naming nothing, which decode and are refused by the aggregator.
    stages = {kind: set(k.stages) for kind, k in found.by_kind.items()}
    assert stages.pop("names_nothing") == {"aggregator"}
    assert all(s == {"reader"} for s in stages.values()), stages
    # Values over the event limit are kept as their first bytes and their size (herald/dlq.py, kept_value).
    oversized = {(s.topic, s.partition, s.offset) for s in sent if s.kind == "over_1_mib"}
    cut = [d for d in await read_dead_letters(settings, since=since) if d.source in oversized]
    assert len({d.source for d in cut}) == len(oversized)
    assert all(len(d.value) == KEPT_PREFIX_BYTES for d in cut)
    assert all(d.original_bytes is not None and d.original_bytes > MAX_EVENT_BYTES for d in cut)

    after = await asyncio.to_thread(pipeline.status)
    assert pids(after) == pids(before), "an actor restarted"
    assert all(h["ok"] for group in after.values() for h in group)
    # Nothing of it reached the aggregators as a failing call (that would be retried, then dead-lettered as "apply").
    assert application_errors(after) == application_errors(before)
