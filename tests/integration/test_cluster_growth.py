"""A node joins: the pipeline places a gateway on it and grows its readers; the node leaves: its gateway goes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.ray]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(400)
def test_gateways_follow_nodes_and_readers_grow() -> None:
    # Its own process: a multi-raylet cluster cannot share a driver with the session's Ray runtime.
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests/integration/cluster_scenario.py")],
        capture_output=True,
        text=True,
        timeout=360,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["before"] == {"gateways": 1, "readers": 2}
    assert report["joined"]["gateways"] == 2
    assert len(set(report["joined"]["ports"])) == 2
    assert report["joined"]["readers"] == 5  # 10 CPUs: half of them, never more than the 12 partitions
    assert report["left"]["gateways"] == 1
