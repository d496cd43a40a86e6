"""What the benchmarks ran on: CPU, cores, memory, load and the versions of everything measured."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from herald.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _mem_total_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def _package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


async def _redis_version(settings: Settings) -> str:
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        info = await client.info("server")
        return str(info.get("redis_version", "?"))
    finally:
        await client.aclose()


def _node_version() -> str:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not installed"


def _socketio_client_version() -> str:
    path = ROOT / "tests" / "e2e" / "js" / "node_modules" / "socket.io-client" / "package.json"
    try:
        return str(json.loads(path.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "not installed"


def _git() -> str:
    """The commit measured, and whether Herald's code differed from it in the working tree."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "herald", "actors", "pipeline.py"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return f"{commit}+uncommitted" if dirty else commit


def describe(settings: Settings) -> dict[str, Any]:
    """The machine and the software, taken when a benchmark starts."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _mem_total_gib(),
        "kernel": platform.release(),
        "load_before": load_average(),
        "git": _git(),
        "versions": {
            "python": platform.python_version(),
            "kafka": settings.kafka_version,
            "redis": asyncio.run(_redis_version(settings)),
            "ray": _package("ray"),
            "aiokafka": _package("aiokafka"),
            "python-socketio": _package("python-socketio"),
            "node": _node_version(),
            "socket.io-client": _socketio_client_version(),
        },
        "settings": {
            "events_partitions": settings.events_partitions,
            "reader_max_records": settings.reader_max_records,
            "shards": settings.shards,
            "producer_compression": settings.producer_compression,
        },
    }
