"""`herald run` told to join a cluster (HERALD_RAY_ADDRESS=auto) where none was started: a clear error and a
failing exit code, never a private runtime and never Ray's fallback of joining another Ray on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray]

HERALD = Path(sys.executable).parent / "herald"


def test_run_with_auto_and_no_cluster_on_this_node_fails_clearly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HERALD_RAY_ADDRESS="auto", RAY_TMPDIR=str(tmp_path), COLUMNS="300")
    done = subprocess.run(
        [str(HERALD), "run", "--seconds", "1"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no Ray cluster was started on this node" in done.stderr
    assert f"{tmp_path}/ray/ray_current_cluster" in done.stderr.replace("\n", "")
    assert "starting herald-" not in done.stderr  # no actor was placed anywhere
