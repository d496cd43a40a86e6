"""`herald doctor` via the real CLI: healthy against the stack, a clear and quick failure without Kafka."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from herald.config import Settings
from herald.doctor import check_channels, run_checks

pytestmark = pytest.mark.integration

HERALD = str(Path(sys.executable).parent / "herald")


def run_doctor(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    return subprocess.run(
        [HERALD, "doctor", *args], capture_output=True, text=True, env=full_env, timeout=60, check=False
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_checks_pass_against_the_stack(settings: Settings) -> None:
    results = await run_checks(settings)
    channels = {"channel EMAIL", "channel SMS", "channel WEBHOOK", "channel PUSH"}
    assert {r.name for r in results} == {"kafka", "topics", "redis", "ray", *channels}
    failed = [r for r in results if not r.ok]
    # Topics may legitimately be missing on a fresh stack; everything else must be healthy.
    assert [r.name for r in failed if r.name != "topics"] == [], failed


def test_cli_healthy_with_the_stack_up(settings: Settings) -> None:
    subprocess.run([HERALD, "topics", "ensure"], capture_output=True, timeout=60, check=False)
    result = run_doctor()
    assert result.returncode == 0, result.stdout + result.stderr
    # Piped, one tab-separated line per check with its full text.
    lines = {line.split("\t")[0]: line.split("\t") for line in result.stdout.splitlines()}
    assert lines["redis"][1] == "True"
    assert "AOF on" in lines["redis"][2]
    described = subprocess.run([HERALD, "topics", "describe"], capture_output=True, text=True, timeout=60, check=False)
    assert any(line.startswith("notification-events\tok\t12\t") for line in described.stdout.splitlines())


def test_cli_reports_an_absent_broker_quickly() -> None:
    port = closed_port()
    started = time.monotonic()
    result = run_doctor("--json", HERALD_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}")
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    kafka = next(c for c in report["checks"] if c["check"] == "kafka")
    assert kafka["ok"] is False
    assert f"Kafka at 127.0.0.1:{port} unreachable" in kafka["detail"]
    assert "herald stack up" in kafka["fix"]
    assert "Traceback" not in result.stderr
    assert elapsed < 10, f"doctor took {elapsed:.1f}s"


def test_channels_say_which_settings_turn_them_on(settings: Settings) -> None:
    unconfigured = {r.name: r for r in check_channels(settings)}
    assert unconfigured["channel SMS"].ok
    assert "sms_url" in unconfigured["channel SMS"].fix
    assert "not configured" in unconfigured["channel EMAIL"].detail
    configured = {r.name: r for r in check_channels(settings.model_copy(update={"webhook_secret": SecretStr("s")}))}
    assert configured["channel WEBHOOK"].detail.startswith("configured")
    broken = settings.model_copy(
        update={"vapid_private_key_file": Path("/nonexistent/key.pem"), "vapid_subject": "mailto:a@b.c"}
    )
    push = {r.name: r for r in check_channels(broken)}["channel PUSH"]
    assert not push.ok
    assert "misconfigured" in push.detail
