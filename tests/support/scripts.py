"""Running one of the repository's scripts in a process of its own, as an operator would: the runs that start
their own Ray runtime (or a multi-raylet cluster) cannot share a driver with the test session's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_script(script: str, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """`python <script> <args>` from the repository root with the test environment; never raises on its exit code."""
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
