"""Shared bench plumbing: a private topic per run, a realistic workload, process memory from /proc, tables."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka.admin import NewTopic

from herald.config import Settings
from herald.kafka import close_client, make_admin, start_bounded

NAMES = ["John", "Sarah", "Mike", "Ana", "Li", "Omar", "Zoe", "Ravi", "Emma", "Noah", "Ida", "Kai"]
# The product mix of tests/support/workload.py: likes dominate, mentions (no aggregation rule) are rare.
KINDS = [("POST_LIKED", 60), ("POST_COMMENTED", 25), ("USER_FOLLOWED", 10), ("MENTIONED", 5)]


def run_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def social_events(run: str, *, events: int, users: int, seed: int = 7) -> list[dict[str, Any]]:
    """`events` wire events over `users` recipients: a fifth of the traffic goes to 20 popular users, likes and
    comments hit a few posts per user (so groups grow), event times spread over the last ten minutes."""
    rng = random.Random(seed)
    kinds = [k for k, weight in KINDS for _ in range(weight)]
    base = datetime.now(UTC) - timedelta(minutes=10)
    spread_s = 600.0
    out: list[dict[str, Any]] = []
    for i in range(events):
        popular = rng.random() < 0.2
        user = f"{run}-u{rng.randrange(min(20, users)) if popular else rng.randrange(users)}"
        kind = rng.choice(kinds)
        actor = rng.randrange(2000)
        target = user if kind == "USER_FOLLOWED" else f"p{rng.randrange(5)}"
        at = base + timedelta(seconds=spread_s * i / max(events, 1))
        notification: dict[str, Any] = {
            "type": kind,
            "actor": {"id": f"a{actor}", "name": f"{NAMES[actor % len(NAMES)]}{actor}"},
            "target": {"type": "user" if kind == "USER_FOLLOWED" else "post", "id": target},
            "data": {},
        }
        if kind == "MENTIONED":
            notification["message"] = f"{NAMES[actor % len(NAMES)]} mentioned you in a comment"
        out.append(
            {
                "type": "NOTIFICATION_CREATED",
                "eventId": f"{run}-e{i}",
                "userId": user,
                "notification": notification,
                "channels": ["IN_APP"],
                "priority": "NORMAL",
                "timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "source": "bench",
                "metadata": {"rooms": [f"user:{user}", f"notifications:{user}"], "requiresRealtime": True},
            }
        )
    return out


async def create_topic(settings: Settings, topic: str, partitions: int) -> None:
    admin = make_admin(settings)
    await start_bounded(admin, settings, "bench admin")
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await close_client(admin)


async def delete_topic(settings: Settings, *topics: str) -> None:
    admin = make_admin(settings)
    await start_bounded(admin, settings, "bench admin")
    try:
        await admin.delete_topics(list(topics))
    finally:
        await close_client(admin)


# -- process memory from /proc (psutil is not installed) -------------------------------------------------------


def proc_status_kib(pid: int, field: str) -> int:
    """VmRSS / VmHWM (peak RSS) of a process in KiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def descendants(root: int) -> list[int]:
    """Every live process below `root` (Ray's gcs_server, raylet and the actor workers of a local runtime)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the ppid is the 2nd field after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def proc_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def sum_rss_mib(pids: Iterable[int], field: str = "VmRSS") -> float:
    return sum(proc_status_kib(pid, field) for pid in pids) / 1024


# -- output -----------------------------------------------------------------------------------------------------


def table(title: str, rows: Sequence[tuple[str, str]], note: str | None = None) -> str:
    width = max(len(k) for k, _ in rows)
    lines = [title, "-" * len(title)]
    lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
    if note:
        lines.append(f"  ({note})")
    return "\n".join(lines)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


async def delete_directory_entries(settings: Settings, run: str) -> int:
    """Remove the run's actors from the global user directory (the burst's fans are named by the run id)."""
    import redis.asyncio as aioredis  # noqa: PLC0415 - only the cleanup needs it here

    from herald.keys import directory_key  # noqa: PLC0415

    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    removed = 0
    try:
        batch: list[str] = []
        async for field, _value in client.hscan_iter(directory_key(), match=f"{run}-*", count=5000):
            batch.append(field)
            if len(batch) >= 5000:
                removed += int(await client.hdel(directory_key(), *batch))
                batch.clear()
        if batch:
            removed += int(await client.hdel(directory_key(), *batch))
        return removed
    finally:
        await client.aclose()


async def delete_user_keys(settings: Settings, run: str) -> int:
    """Remove every key of the run's users (their ids all start with the run id)."""
    import redis.asyncio as aioredis  # noqa: PLC0415 - only the cleanup needs it here

    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    removed = 0
    try:
        batch: list[str] = []
        async for key in client.scan_iter(match=f"herald:{{u:{run}-*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                removed += int(await client.unlink(*batch))
                batch.clear()
        if batch:
            removed += int(await client.unlink(*batch))
        return removed
    finally:
        await client.aclose()


async def delete_run(settings: Settings, topic: str, run: str) -> None:
    """What a benchmark run left behind: its topic, its users' keys and their directory entries."""
    await delete_topic(settings, topic)
    await delete_user_keys(settings, run)
    await delete_directory_entries(settings, run)


def cleanup_run(settings: Settings, run: str, topics: Sequence[str]) -> None:
    """Best effort, for the runs that measure under heavy load: on a loaded box Redis or Kafka may time out here,
    which must not hide the run's result."""
    for what, step in (("user keys", delete_user_keys(settings, run)), ("topics", delete_topic(settings, *topics))):
        try:
            asyncio.run(step)
        except Exception as exc:  # noqa: BLE001 - reported, the figures matter more
            logging.getLogger(__name__).warning("cleanup of the run's %s failed: %s", what, exc)


def stop_pipeline(pipe: Any, fleet: Any | None) -> None:
    """Clients first (their disconnects must not count as the pipeline's), then the pipeline, then Ray."""
    import ray  # noqa: PLC0415 - only the runs that started Ray get here

    if fleet is not None:
        fleet.stop()
    pipe.drain()
    ray.shutdown()
