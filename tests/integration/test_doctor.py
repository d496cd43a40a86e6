"""`herald doctor` via the real CLI: healthy against the stack, a clear and quick failure without Kafka."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from herald.config import Settings
from herald.doctor import check_channels, check_redis, run_checks
from herald.stack import RedisServer, procs

pytestmark = pytest.mark.integration

HERALD = str(Path(sys.executable).parent / "herald")


def run_doctor(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    return subprocess.run(
        [HERALD, "doctor", *args], capture_output=True, text=True, env=full_env, timeout=60, check=False
    )


@pytest.fixture
def private_redis(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """The stack's own Redis (appendfsync always) on a free port and a temporary state dir; the shared one is
    never reconfigured here."""
    port = procs.free_port()
    private = settings.model_copy(
        update={"state_dir": tmp_path, "redis_port": port, "redis_url": f"redis://127.0.0.1:{port}/0"}
    )
    server = RedisServer(private)
    server.start()
    try:
        yield private
    finally:
        server.stop()


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


async def test_redis_check_judges_the_fsync_policy(private_redis: Settings) -> None:
    url = private_redis.redis_url
    always = await check_redis(private_redis)
    assert always.ok
    assert "AOF on, appendfsync always" in always.detail

    admin = redis.Redis.from_url(url)
    try:
        admin.config_set("appendfsync", "everysec")
        everysec = await check_redis(private_redis)
        assert everysec.ok, "a warning, not a failure"
        assert "appendfsync everysec" in everysec.detail
        assert "acknowledged" in everysec.detail
        assert "CONFIG SET appendfsync always" in everysec.fix

        # An operator account without CONFIG, as managed services hand out: not "unreachable".
        admin.acl_setuser("operator", enabled=True, passwords=["+doctor-pw"], keys=["*"], commands=["+@all", "-config"])
        limited = private_redis.model_copy(update={"redis_url": url.replace("//", "//operator:doctor-pw@")})
        unknown = await check_redis(limited)
        assert unknown.ok
        assert "fsync policy is unknown (CONFIG GET refused" in unknown.detail
        assert "doctor-pw" not in unknown.detail

        admin.config_set("appendonly", "no")
        off = await check_redis(private_redis)
        assert not off.ok
        assert off.detail.endswith("AOF is off")
        assert "appendfsync always" in off.fix
    finally:
        admin.close()


def test_cli_json_carries_the_fsync_warning_in_the_usual_fields(private_redis: Settings) -> None:
    with redis.Redis.from_url(private_redis.redis_url) as admin:
        admin.config_set("appendfsync", "everysec")
    result = run_doctor("--json", HERALD_REDIS_URL=private_redis.redis_url)
    report = json.loads(result.stdout)
    row = next(c for c in report["checks"] if c["check"] == "redis")
    assert set(row) == {"check", "ok", "detail", "fix"}
    assert row["ok"] is True
    assert "can lose up to about 2 s of commits it already acknowledged" in row["detail"]
    assert row["fix"].startswith("`CONFIG SET appendfsync always`")
