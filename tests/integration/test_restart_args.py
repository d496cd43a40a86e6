"""Restarts must not depend on the object store (ray-project/ray#53727): Ray warns, from the driver, about every
restartable actor whose constructor arguments live there (arguments holding actor handles do). Readers get the
aggregators' names instead, so a full start of the pipeline prints no such warning."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import TopicFactory

pytestmark = [pytest.mark.integration, pytest.mark.ray]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
async def test_no_actor_keeps_constructor_arguments_in_the_object_store(fresh_topic: TopicFactory) -> None:
    topic = await fresh_topic("restart-args", partitions=12)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HERALD_GATEWAY_PORT": "0",
        "HERALD_EVENTS_TOPIC": topic,
        "HERALD_READER_GROUP": f"restart-args-{uuid.uuid4().hex[:8]}",
    }
    # Its own process: the warning comes from a driver's core worker when it creates the actors.
    herald = Path(sys.executable).parent / "herald"
    done = await asyncio.to_thread(
        subprocess.run,
        [str(herald), "--verbose", "run", "--seconds", "2"],
        capture_output=True,
        text=True,
        timeout=220,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "drained" in done.stderr, done.stderr[-3000:]
    assert "constructor arguments in the object store" not in done.stderr, done.stderr[-3000:]
