"""The gateway's /dashboard in headless Debian chromium (playwright-core, as tests/e2e/test_browser.py drives
it), fed by the session pipeline with real traffic: every chart gets data, and its screenshot shows it.

It lives beside the pipeline tests, not in tests/e2e, to use the session's one Ray runtime and pipeline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from herald.config import Settings
from herald.producer import NotificationProducer
from pipeline import Pipeline
from tests.support.headless import JS_DIR, node_for_playwright
from tests.support.metrics_traffic import Traffic
from tests.support.png import colored_share

pytestmark = [pytest.mark.integration, pytest.mark.ray, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[3]
DOCS_SHOT = ROOT / "docs" / "dashboard.png"
BROWSER_TIMEOUT_S = 150.0
CHARTS = ("chart-throughput", "chart-latency", "chart-deliveries", "chart-dlq", "chart-lag")


def _node() -> str:
    return node_for_playwright("dashboard")


async def _keep_traffic_flowing(traffic: Traffic) -> None:
    """Events all along (rates and interval latencies need them), and a refused record now and then."""
    rounds = 0
    while True:
        await traffic.publish(10)
        if rounds % 8 == 0:
            await traffic.publish_invalid(1)
        rounds += 1
        await asyncio.sleep(0.25)  # pacing the producer, not waiting for a result


@pytest.mark.timeout(300)
async def test_dashboard_charts_fill_with_live_pipeline_data(
    pipeline: Pipeline, pipeline_settings: Settings, producer: NotificationProducer, tmp_path: Path
) -> None:
    node = _node()
    screenshot = tmp_path / "dashboard.png"
    async with Traffic(pipeline_settings, producer) as traffic:
        flowing = asyncio.create_task(_keep_traffic_flowing(traffic))
        proc = await asyncio.create_subprocess_exec(
            node,
            str(JS_DIR / "dashboard.mjs"),
            f"http://127.0.0.1:{pipeline_settings.gateway_port}/dashboard",
            str(screenshot),
            str(tmp_path / "chart"),
            cwd=JS_DIR,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=BROWSER_TIMEOUT_S)
            assert await asyncio.wait_for(proc.wait(), timeout=30) == 0, line
        finally:
            flowing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flowing
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    result: dict[str, Any] = json.loads(line)
    assert result["step"] == "charts", result
    assert result["consoleErrors"] == []
    charts = result["charts"]

    throughput = {p["series"]: p["segments"] for p in charts["chart-throughput"]["paths"]}
    assert throughput.get("in", 0) >= 2, throughput  # a line, not a dot
    assert throughput.get("applied", 0) >= 2, throughput
    assert charts["chart-latency"]["points"] >= 2
    assert "IN_APP" in charts["chart-deliveries"]["labels"]
    assert "reader" in charts["chart-dlq"]["labels"]
    assert 1 <= charts["chart-lag"]["bars"] <= pipeline_settings.events_partitions
    assert result["tiles"]["t-in"] not in {"0", "\u2013"}  # a count, not zero or the placeholder dash

    # What the browser drew is on screen: each chart's screenshot has coloured pixels (lines, bars), not just
    # its white background, grey axes and text.
    for chart in CHARTS:
        share = colored_share((tmp_path / f"chart-{chart}.png").read_bytes())
        assert share > 0.002, f"{chart}: only {share:.4f} of its pixels are coloured"
    assert screenshot.stat().st_size > 10_000
    shutil.copyfile(screenshot, DOCS_SHOT)  # the README's picture
