"""`scripts/bench.py reader-path` at a small size: it runs against the real broker, and the drains it compares
refuse the same records (decided or free), so its figures compare like with like (docs/reliability.md)."""

from __future__ import annotations

import json

import pytest

from herald.malformed import KINDS, REFUSED_BY_AGGREGATOR, malformed_records
from tests.support.scripts import run_script

pytestmark = [pytest.mark.integration]

VALID = MALFORMED = 400


@pytest.mark.timeout(240)
def test_reader_path_compares_drains_that_refuse_the_same_records() -> None:
    args = [f"--valid={VALID}", f"--malformed={MALFORMED}", "--users=50", "--repeat=1", "--json"]
    done = run_script("scripts/bench.py", "reader-path", *args, timeout_s=220)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    # The generator is deterministic for its seed, whatever the run's prefix: the same kinds in the same order.
    refused = sum(1 for m in malformed_records("any", MALFORMED, users=50) if m.kind not in REFUSED_BY_AGGREGATOR)
    assert 0 < refused < MALFORMED
    assert result["refused_by_reader"] == refused
    assert result["dead_lettered"] == {"clean": [0], "mixed": [refused], "free": [refused]}
    assert all(seconds > 0 for drains in result["cpu_s"].values() for seconds in drains), result["cpu_s"]
    assert result["us_per_valid"] > 0
    assert set(result["decode_by_kind"]) == set(KINDS)
