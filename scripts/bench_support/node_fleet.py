"""Drives scripts/bench/clients.mjs: one Node process holding many official socket.io-client connections."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from herald.auth import mint_token
from herald.config import Settings
from scripts.bench_support.procs import cpu_s

CLIENTS_JS = Path(__file__).resolve().parents[1] / "bench" / "clients.mjs"


class NodeFleet:
    """`users` connections (one per entry, a user may appear more than once: several devices)."""

    def __init__(self, settings: Settings, url: str, users: list[str], *, detail: bool = False) -> None:
        tokens = [{"user": u, "token": mint_token(settings, u, ttl_s=7200)} for u in users]
        config = {"url": url, "tokens": tokens, "concurrency": 50, "detail": detail, "max_seconds": 3600}
        self._config = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="herald-bench-clients-")  # noqa: SIM115
        json.dump(config, self._config)
        self._config.flush()
        self._proc = subprocess.Popen(
            ["node", str(CLIENTS_JS), self._config.name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.size = len(users)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def cpu_s(self) -> float:
        return cpu_s(self._proc.pid)

    def _ask(self, cmd: str, expect: str, timeout_s: float = 300.0) -> dict[str, Any]:
        stdin: IO[str] | None = self._proc.stdin
        stdout: IO[str] | None = self._proc.stdout
        if stdin is None or stdout is None:
            raise RuntimeError("client fleet has no pipes")
        stdin.write(json.dumps({"cmd": cmd}) + "\n")
        stdin.flush()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = stdout.readline()
            if not line:
                raise RuntimeError(f"client fleet exited ({self._proc.poll()}) while waiting for {expect}")
            reply: dict[str, Any] = json.loads(line)
            if reply.get("event") == expect:
                return reply
        raise RuntimeError(f"client fleet did not answer {cmd} in {timeout_s:g}s")

    def connect(self) -> dict[str, Any]:
        return self._ask("connect", "connected")

    def stats(self) -> dict[str, Any]:
        return self._ask("stats", "stats")

    def collect(self) -> dict[str, Any]:
        """Everything received since the last collect (latencies, per-client notifications); counts afresh."""
        return self._ask("collect", "result")

    def wait_quiet(self, *, expected: int | None = None, quiet_s: float = 2.0, max_s: float = 60.0) -> int:
        """Wait until `expected` notifications arrived, or none arrived for `quiet_s`; returns the count."""
        deadline = time.monotonic() + max_s
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            received = int(self.stats()["received"])
            if expected is not None and received >= expected:
                return received
            if received != last:
                last, last_change = received, time.monotonic()
            elif time.monotonic() - last_change >= quiet_s:
                return received
            time.sleep(0.25)
        return last

    def stop(self) -> dict[str, Any]:
        try:
            return self._ask("stop", "result", timeout_s=60)
        finally:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._config.close()
