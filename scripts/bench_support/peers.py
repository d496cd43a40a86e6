"""Runs the stream-processing peers of scripts/bench/peers/ in their own venv and reads what they report."""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from herald.config import Settings
from scripts.bench_support.procs import background_cpu_per_s, cpu_s

ROOT = Path(__file__).resolve().parents[2]
PEERS_DIR = ROOT / "scripts" / "bench" / "peers"
PEERS_PYTHON = ROOT / ".venv" / "bench-peers" / "bin" / "python"
LABELS = {"quix": "Quix Streams app", "faust": "Faust app"}
SCRIPTS = {"quix": "quix_app.py", "faust": "faust_app.py"}


def _pump(stream: IO[str], messages: queue.Queue[dict[str, Any] | None]) -> None:
    """JSON lines a peer prints; Faust routes stdout through its logger, so the object may sit mid-line."""
    for line in stream:
        start = line.find('{"event"')
        if start >= 0:
            with contextlib.suppress(json.JSONDecodeError):
                messages.put(json.loads(line[start:].strip()))
    messages.put(None)


def _messages(proc: subprocess.Popen[str], deadline: float) -> Iterator[dict[str, Any]]:
    """The peer's messages until it exits or the deadline passes (a peer that hangs must not hang the run)."""
    if proc.stdout is None:
        return
    messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, messages), daemon=True).start()
    while time.monotonic() < deadline:
        try:
            message = messages.get(timeout=1.0)
        except queue.Empty:
            continue
        if message is None:
            return
        yield message


def run_peer(
    name: str, settings: Settings, *, topic: str, group: str, expected: int, stack: dict[str, int]
) -> dict[str, Any]:
    """Drain `topic` with one peer app; CPU and time are counted from its first record to its final commit."""
    if not PEERS_PYTHON.exists():
        return {"error": f"no peers venv at {PEERS_PYTHON}: `./scripts/dev bench` creates it"}
    log = tempfile.NamedTemporaryFile("w+", prefix=f"herald-bench-{name}-", suffix=".log")  # noqa: SIM115
    kafka_pid = stack.get("kafka")
    background = background_cpu_per_s({"kafka": kafka_pid} if kafka_pid else {})
    command = [str(PEERS_PYTHON), str(PEERS_DIR / SCRIPTS[name]), "--bootstrap", settings.kafka_bootstrap]
    command += ["--topic", topic, "--group", group, "--expected", str(expected)]
    command += ["--partitions", str(settings.events_partitions)] if name == "faust" else []
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT)
    out: dict[str, Any] = {"events": expected, "background_cpu_per_s": background}
    marks: dict[str, Any] = {}
    kafka_at_first = 0.0
    deadline = time.monotonic() + max(300.0, expected / 100)
    try:
        for message in _messages(proc, deadline):
            marks[message["event"]] = message
            if message["event"] == "first":
                marks["peer_cpu_at_first"] = cpu_s(proc.pid)
                kafka_at_first = cpu_s(kafka_pid) if kafka_pid else 0.0
            if message["event"] == "done":
                break
        kafka_at_done = cpu_s(kafka_pid) if kafka_pid else 0.0
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ready, done = marks.get("ready", {}), marks.get("done")
    out["version"] = ready.get("version")
    for key in ("state_dir", "data_dir"):
        if ready.get(key):
            shutil.rmtree(ready[key], ignore_errors=True)
    if done is None or not done.get("first_ns") or done.get("records", 0) < expected:
        log.seek(0)
        tail = log.read()[-3000:]
        reported = marks.get("error", {}).get("error", "")
        out["error"] = (
            f"{reported} exit {proc.returncode}, {done and done.get('records')} of {expected} records; stderr: {tail}"
        )
        return out
    out["startup_s"] = (done["first_ns"] - ready["t_ns"]) / 1e9
    out["drain_s"] = (done["t_ns"] - done["first_ns"]) / 1e9
    out["events_per_s"] = expected / out["drain_s"]
    out["cpu_s"] = {
        "peer": done["cpu_s"] - marks.get("peer_cpu_at_first", 0.0),
        "kafka": kafka_at_done - kafka_at_first,
    }
    out["peak_rss_mib"] = {"peer": done["peak_rss_mib"]}
    out["counters"] = {k: done.get(k) for k in ("records", "updates", "passthrough")}
    log.close()
    return out
