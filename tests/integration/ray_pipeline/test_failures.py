"""kill -9 of a reader and of an aggregator mid-stream: nothing lost, nothing counted twice."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from herald.config import Settings
from herald.producer import NotificationProducer
from herald.store_redis import RedisStore
from herald.workload import social_stream
from pipeline import Pipeline
from tests.support.reference_model import expected_inboxes
from tests.support.waiting import eventually
from tests.support.workload import fingerprint

pytestmark = [pytest.mark.integration, pytest.mark.ray]

EVENTS = 20_000
USERS = 2_000
CHUNK = 500


async def _actor_pid(pipeline: Pipeline, group: str, index: int) -> int:
    status = await asyncio.to_thread(pipeline.status)
    return int(status[group][index]["pid"])


@pytest.mark.timeout(600)
async def test_kill_reader_and_aggregator_mid_stream(
    pipeline: Pipeline,
    pipeline_settings: Settings,
    producer: NotificationProducer,
    store: RedisStore,
) -> None:
    run_id = f"k{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    wire = social_stream(run_id, events=EVENTS, users=USERS, base=now, spread=timedelta(minutes=20))
    # An independent model of the rules (not herald's own fold run a second time).
    expected = expected_inboxes(
        wire,
        late_allowance_ms=pipeline_settings.late_allowance_s * 1000,
        inbox_capacity=pipeline_settings.inbox_capacity,
    )
    reader_pid = await _actor_pid(pipeline, "readers", 0)
    aggregator_pid = await _actor_pid(pipeline, "aggregators", 1)
    supervisor = pipeline.supervise_in_background()
    try:
        for start in range(0, EVENTS, CHUNK):
            await producer.publish_many(wire[start : start + CHUNK])
            if start == EVENTS // 4:
                os.kill(reader_pid, signal.SIGKILL)
            if start == EVENTS // 2:
                os.kill(aggregator_pid, signal.SIGKILL)
            await asyncio.sleep(0.1)  # pacing, so the kills land while the stream flows

        async def mismatched_users() -> list[str]:
            bad = []
            for user, reference in expected.items():
                if fingerprint(await store.notifications_after(user, 0, 10_000)) != reference:
                    bad.append(user)
            return bad

        await eventually(mismatched_users, lambda bad: not bad, timeout_s=300, interval_s=2, what="reference model")
    finally:
        supervisor.stop()
    status = await asyncio.to_thread(pipeline.status)
    assert await _actor_pid(pipeline, "readers", 0) != reader_pid, "the killed reader was not restarted"
    assert await _actor_pid(pipeline, "aggregators", 1) != aggregator_pid, "the killed aggregator was not restarted"
    assert all(r.get("ok") for r in status["readers"]), status["readers"]
