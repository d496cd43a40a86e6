"""`herald run` told to join a cluster (HERALD_RAY_ADDRESS=auto) where none was started: a clear error and a
failing exit code, never a private runtime and never Ray's fallback of joining another Ray on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from herald.config import load_settings
from herald.doctor import check_ray

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


async def test_doctor_checks_the_cluster_auto_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    missing = await check_ray(load_settings(ray_address="auto"))
    assert not missing.ok
    assert "no Ray cluster was started on this node" in missing.detail
    (tmp_path / "ray").mkdir()
    # A port nothing listens on: doctor probes the recorded address, not whatever Ray runs on the machine.
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.1:1\n")
    unreachable = await check_ray(load_settings(ray_address="auto", connect_timeout_s=1))
    assert not unreachable.ok
    assert "127.0.0.1:1" in unreachable.detail
