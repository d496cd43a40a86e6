"""The local stack: the shared one started by `scripts/dev test`, and failure modes on a private state dir."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from herald import stack
from herald.config import Settings, load_settings
from herald.errors import StackError
from herald.stack import procs, state

pytestmark = pytest.mark.integration

HERALD = str(Path(sys.executable).parent / "herald")


@pytest.fixture(scope="module")
def shared() -> Settings:
    """Settings of the shared stack; it must already run (never started or stopped here)."""
    settings = load_settings()
    states = {row.name: row.state for row in stack.status(settings)}
    if states.get("kafka") != "running" or states.get("redis") != "running":
        pytest.fail(f"the local stack is not running ({states}); run `herald stack up` (scripts/dev test does)")
    return settings


@pytest.fixture
def private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A separate state dir on other ports, so the shared stack is never touched; stopped afterwards."""
    monkeypatch.setenv("HERALD_STATE_DIR", str(tmp_path / "state"))
    for name in ("HERALD_KAFKA_BOOTSTRAP", "HERALD_REDIS_URL", "HERALD_RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HERALD_REDIS_PORT", str(procs.free_port()))
    monkeypatch.setenv("HERALD_KAFKA_PORT", str(procs.free_port()))
    monkeypatch.setenv("HERALD_KAFKA_CONTROLLER_PORT", str(procs.free_port()))
    settings = load_settings()
    assert settings.state_dir == tmp_path / "state"
    yield settings
    stack.down(settings)


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return int(proc.stdout)


def test_status_reports_kafka_and_redis_running(shared: Settings) -> None:
    rows = {row.name: row for row in stack.status(shared)}
    for name, port in (("kafka", shared.kafka_port), ("redis", shared.redis_port)):
        assert rows[name].state == "running"
        assert rows[name].pid is not None
        assert rows[name].port == port
    assert rows["ray"].state in ("running", "stopped")


def test_status_command_prints_full_lines_when_piped_and_json_on_request(shared: Settings) -> None:
    out = subprocess.run([HERALD, "stack", "status"], capture_output=True, text=True, check=True).stdout
    lines = {line.split("\t")[0]: line.split("\t") for line in out.splitlines()}
    assert lines["kafka"][3] == "running"
    assert lines["kafka"][4].endswith("kafka.log"), "the log path was cut"
    as_json = subprocess.run([HERALD, "stack", "status", "--json"], capture_output=True, text=True, check=True).stdout
    assert {r["service"]: r["state"] for r in json.loads(as_json)}["redis"] == "running"


def test_second_up_reuses_the_running_services(shared: Settings) -> None:
    before = {row.name: row.pid for row in stack.status(shared)}
    info = stack.up(shared)
    assert all(result.reused for result in info.started)
    assert {r.name: r.pid for r in info.started} == {"redis": before["redis"], "kafka": before["kafka"]}
    assert info.kafka_bootstrap == f"127.0.0.1:{shared.kafka_port}"


def test_kafka_log_says_the_server_started(shared: Settings) -> None:
    logs = sorted((shared.state_dir / "logs").glob("kafka.log*"))
    text = "".join(path.read_text(errors="replace") for path in logs)
    assert text, "kafka.log is empty: the SLF4J binding or the log4j2 config is missing"
    assert "Kafka Server started" in text or "started (kafka.server" in text


def test_redis_runs_with_aof_fsynced_before_each_reply(private: Settings) -> None:
    # A private stack's Redis: the shared one keeps whatever policy it was started with until it is restarted.
    # (The private settings' redis_url is still the default; the started service's own URL is the one to use.)
    url = stack.up(private, only=["redis"]).redis_url
    assert url == f"redis://127.0.0.1:{private.redis_port}/0"
    client = redis.Redis.from_url(url)
    try:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        # An acknowledged commit must survive a crash of Redis (docs/reliability.md, "Redis crash").
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        assert client.config_get("save") == {"save": ""}
    finally:
        client.close()


def test_redis_keeps_acknowledged_writes_through_kill_9(private: Settings) -> None:
    url = stack.up(private, only=["redis"]).redis_url
    assert url == f"redis://127.0.0.1:{private.redis_port}/0"
    client = redis.Redis.from_url(url)
    try:
        for i in range(500):
            client.incr("herald:test:acknowledged")
            client.xadd("herald:test:stream", {"i": str(i)})
    finally:
        client.close()
    pid = state.read_pid(private, "redis")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    procs.wait_for(lambda: not procs.pid_alive(pid), timeout_s=10)
    # The kernel may hold the port a moment longer (a forked AOF child still exiting): wait, as chaos does.
    procs.wait_for(lambda: procs.port_free(private.redis_port), timeout_s=30)

    info = stack.up(private, only=["redis"])

    assert info.started[0].cleaned_stale_pid == pid
    client = redis.Redis.from_url(url)
    try:
        assert client.get("herald:test:acknowledged") == b"500"
        assert client.xlen("herald:test:stream") == 500
    finally:
        client.close()


def test_stack_file_is_private_and_complete(shared: Settings) -> None:
    assert shared.stack_file.stat().st_mode & 0o777 == 0o600
    data = state.load_stack_file(shared)
    assert data["settings"]["kafka_bootstrap"] == f"127.0.0.1:{shared.kafka_port}"
    assert data["settings"]["jwt_secret"]
    assert {"kafka", "redis"} <= set(data["services"])


def test_env_output_evaluates_in_bash(shared: Settings) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    script = f'eval "$({HERALD} stack env)"; printf "%s\\n%s" "$HERALD_KAFKA_BOOTSTRAP" "$HERALD_REDIS_URL"'
    out = subprocess.run([bash, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [f"127.0.0.1:{shared.kafka_port}", f"redis://127.0.0.1:{shared.redis_port}/0"]


def test_stale_pid_file_is_reported_and_cleaned(private: Settings) -> None:
    dead = _dead_pid()
    state.write_pid(private, "redis", dead)
    assert {r.name: r.state for r in stack.status(private)}["redis"] == "stale"

    info = stack.up(private, only=["redis"])

    (result,) = info.started
    assert result.cleaned_stale_pid == dead
    assert not result.reused
    assert result.pid != dead
    assert {r.name: r.state for r in stack.status(private)}["redis"] == "running"


def test_recycled_pid_of_another_program_counts_as_stale(private: Settings) -> None:
    state.write_pid(private, "redis", os.getpid())
    assert {r.name: r.state for r in stack.status(private)}["redis"] == "stale"


def test_port_in_use_by_a_stranger_is_reported(private: Settings) -> None:
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", private.redis_port))
        stranger.listen()
        with pytest.raises(StackError, match=rf"port {private.redis_port}.*HERALD_REDIS_PORT"):
            stack.up(private)
    # Ports are checked before anything starts: no half stack is left behind.
    assert all(row.state == "stopped" for row in stack.status(private))


def test_down_when_nothing_runs_is_fine(private: Settings) -> None:
    results = stack.down(private)
    assert all(result.graceful is None for result in results)
