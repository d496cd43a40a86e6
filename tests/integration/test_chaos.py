"""The short chaos run: 10,000 events over 1,000 users while one reader, aggregator, delivery actor and gateway,
Redis and the Kafka broker are killed with SIGKILL (the last two started again on their data), and clients drop
their connections. Nothing may be lost, counted twice, shown twice or left undelivered (the long run is
`./scripts/dev chaos`)."""

from __future__ import annotations

import json

import pytest

from tests.support.chaos_model import FAULT_KINDS
from tests.support.scripts import run_script

pytestmark = [pytest.mark.integration, pytest.mark.ray]

SEED = 20261129


@pytest.mark.timeout(480)
def test_short_chaos_run_loses_and_duplicates_nothing() -> None:
    # Its own process: the run starts a private Ray runtime (and a private Kafka and Redis, which it kills),
    # which cannot share a driver with the session's Ray runtime.
    argv = ["--json", "--seed", str(SEED)]
    argv += ["--events", "10000", "--users", "1000", "--faults-per-kind", "1", "--stream-s", "45"]
    argv += ["--devices", "40", "--converge-timeout-s", "150"]
    done = run_script("scripts/chaos.py", *argv, timeout_s=450)
    assert done.stdout.strip(), done.stderr[-4000:]
    report = json.loads(done.stdout)
    figures = report["figures"]
    assert figures["must_be_zero"] == dict.fromkeys(figures["must_be_zero"], 0), (figures, done.stderr[-3000:])
    assert figures["converged_s"] is not None, done.stderr[-3000:]
    injected = {f["kind"] for f in report["faults"] if f["error"] is None}
    assert injected == set(FAULT_KINDS), report["faults"]
    assert report["config"]["redis_appendfsync"] == "always"
    assert figures["events_published"] == 10_000
    assert figures["deliveries"]["expected"] > 0
    assert figures["clients"]["connections"] > figures["clients"]["devices"], "no client had to reconnect"
    assert done.returncode == 0, done.stderr[-3000:]
