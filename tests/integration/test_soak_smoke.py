"""The soak's first minute as a smoke test: the command runs, samples over time, and what it can judge in a
minute holds (nothing lost or shown twice, nothing without an expiry that must have one, inboxes within their cap,
the pipeline's memory flat). The long run is `./scripts/dev soak --minutes N` (docs/reliability.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.scripts import run_script

pytestmark = [pytest.mark.integration, pytest.mark.ray]


@pytest.mark.timeout(300)
def test_soak_first_minute(tmp_path: Path) -> None:
    # Its own process: the soak starts and shuts down its own Ray runtime, which the session's must not be.
    args = ["--minutes=1", "--clients=40", "--rate=80", "--sample-s=5", "--dedup-horizon-s=20", f"--out={tmp_path}"]
    done = run_script("scripts/bench.py", "soak", *args, "--json", timeout_s=280)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    verdict = result["verdict"]
    samples = result["samples"]
    assert len(samples) >= 6, samples
    assert [s["t_s"] for s in samples] == sorted(s["t_s"] for s in samples)
    assert samples[-1]["published"] >= 0.9 * 80 * 60
    assert verdict["mentions_missing"] == 0, verdict
    assert verdict["client_duplicates"] == 0, verdict
    assert verdict["keys_without_expiry"] == {}, verdict
    assert verdict["inbox_within_capacity"], verdict
    assert verdict["restarted_actors"] == [], verdict
    rss = verdict["growth"]["pipeline_rss_mib"]
    assert rss is not None, verdict
    assert rss < 0.1, verdict
    assert samples[-1]["kinds"]["seen"]["no_expiry"] == 0  # dedup sets expire with the horizon
    kinds = {kind for s in samples for kind in s["rss_mib_by_kind"]}
    assert {"readers", "aggregators", "gateways"} <= kinds, kinds
    assert set(verdict["rss_slope_mib_per_min"]) == kinds, verdict
    svg = (tmp_path / "soak.svg").read_text()
    assert svg.count("<polyline") == 7 + len(kinds)  # the six panels (two lines for latency), one line per kind
    assert 'points=""' not in svg
    assert done.returncode == 0, done.stderr[-3000:]
