"""Burst benchmark, "a viral burst": many likes of one post, each by a different person, in a few seconds.

Expected: one notification for the post's owner, updated in place (one version per distinct actor folded in),
and the owner's connected devices receiving far fewer versions than there were likes (coalescing), ending with
the final count.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

import orjson
import redis.asyncio as aioredis

from herald.config import Settings
from herald.keys import bodies_key
from pipeline import Pipeline
from scripts.bench_support import ray_reader
from scripts.bench_support.common import create_topic, delete_run, run_id, stop_pipeline
from scripts.bench_support.machine import describe, load_average
from scripts.bench_support.node_fleet import NodeFleet
from scripts.bench_support.procs import CpuMeter, stack_pids
from scripts.bench_support.producing import like, offer


async def stored_bodies(settings: Settings, user: str) -> list[dict[str, Any]]:
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        return [orjson.loads(body) for body in (await client.hgetall(bodies_key(user))).values()]
    finally:
        await client.aclose()


def _wait_final(settings: Settings, owner: str, likes: int, max_s: float) -> tuple[int | None, list[dict[str, Any]]]:
    """Poll the store until the owner's notification counts every like; returns when (wall ns) and the bodies."""
    deadline = time.monotonic() + max_s
    bodies: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        bodies = asyncio.run(stored_bodies(settings, owner))
        if sum(int(b.get("count", 0)) for b in bodies) >= likes:
            return time.time_ns(), bodies
        time.sleep(0.1)
    return None, bodies


def run_burst(settings: Settings, *, likes: int, seconds: float, devices: int) -> dict[str, Any]:
    run = run_id("burst")
    topic, group = f"{run}-events", f"{run}-readers"
    owner, post = f"{run}-owner", "viral-post"
    result: dict[str, Any] = {"benchmark": "burst", "run": run, "machine": describe(settings)}
    result["params"] = {"likes": likes, "seconds": seconds, "devices": devices}
    stack = stack_pids(settings)
    asyncio.run(create_topic(settings, topic, settings.events_partitions))
    try:
        pipe = Pipeline(ray_reader.bench_settings(settings, topic=topic, group=group), name=f"bench-{run}").start()
        fleet: NodeFleet | None = None
        try:
            url = f"http://127.0.0.1:{settings.gateway_port}"
            fleet = NodeFleet(settings, url, [owner] * devices, detail=True)
            result["connect"] = fleet.connect()
            print(f"burst {run}: {devices} devices of {owner} connected; {likes:,} likes in {seconds:g}s", flush=True)
            status = pipe.status()
            roles = {int(h["pid"]): kind.rstrip("s") for kind, hs in status.items() for h in hs if h.get("pid")}
            groups = {k: [v] for k, v in stack.items()}
            groups |= {"harness (driver: producer)": [os.getpid()], "harness (node clients)": [fleet.pid]}
            meter = CpuMeter(groups=groups, tree_roots={"ray (other)": os.getpid()}, roles=roles)
            before = meter.snapshot()
            offered = asyncio.run(
                offer(settings, topic, lambda seq: like(run, owner, post, seq), rate=likes / seconds, seconds=seconds)
            )
            result["offered"] = vars(offered)
            print(f"  sent {offered.published:,} in {offered.publish_s:.1f}s; waiting for the final count", flush=True)
            stored_ns, bodies = _wait_final(settings, owner, likes, max_s=max(300.0, likes / 100))
            fleet.wait_quiet(quiet_s=3.0, max_s=60.0)
            result["cpu_s"] = meter.between(before, meter.snapshot())
            got = fleet.collect()
            status = pipe.status()
            result["counters"] = {
                "applied": sum(int(a.get("applied", 0)) for a in status["aggregators"]),
                "aggregator_calls": sum(int(a.get("batches", 0)) for a in status["aggregators"]),
                "notifications_changed": sum(int(a.get("notifications_changed", 0)) for a in status["aggregators"]),
                "live_sent": sum(int(g["counters"].get("live_notifications", 0)) for g in status["gateways"]),
                "gateway_dropped_stale": sum(int(g.get("dropped_stale", 0)) for g in status["gateways"]),
            }
        finally:
            stop_pipeline(pipe, fleet)
    finally:
        asyncio.run(delete_run(settings, topic, run))
    _summarize_devices(result, got, bodies, stored_ns, offered.last_send_ns)
    result["machine"]["load_after"] = load_average()
    return result


def _summarize_devices(
    result: dict[str, Any], got: dict[str, Any], bodies: list[dict[str, Any]], stored_ns: int | None, last_send_ns: int
) -> None:
    """What each device ended with, against the store."""
    last_sent_ms = last_send_ns / 1e6
    result["stored"] = [{k: b.get(k) for k in ("id", "version", "count", "text")} for b in bodies]
    result["stored_final_after_last_send_s"] = (stored_ns - last_send_ns) / 1e9 if stored_ns else None
    per_device = []
    for client in got["clients"]:
        for nid, (version, versions, recv_ms, count) in client.get("notifications", {}).items():
            per_device.append(
                {
                    "id": nid,
                    "final_version": version,
                    "versions_received": versions,
                    "final_count": count,
                    "after_last_send_s": (recv_ms - last_sent_ms) / 1000,
                }
            )
    result["devices"] = per_device
    result["duplicates"] = got["duplicates"]
    result["dropped_clients"] = got["dropped"]
    if per_device:
        result["versions_received_median"] = statistics.median(d["versions_received"] for d in per_device)
        result["final_count_seen"] = min(d["final_count"] for d in per_device)
        result["time_to_final_s_max"] = max(d["after_last_send_s"] for d in per_device)


def summary(result: dict[str, Any]) -> str:
    stored = result.get("stored") or [{}]
    return (
        f"{len(result['stored'])} notification(s) stored, count {stored[0].get('count')} version"
        f" {stored[0].get('version')}; versions received per device (median) {result.get('versions_received_median')};"
        f" final count seen by every device {result.get('final_count_seen')}; final version at the devices"
        f" {result.get('time_to_final_s_max')} s after the last like was sent"
    )
