"""Idle connections one gateway holds, with its memory (python-socketio clients in several processes)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import ray

from actors.factory import Gateway, start_loop
from herald.auth import mint_token
from herald.config import Settings
from pipeline import connect_ray
from scripts.bench_support.clients import ClientFleet
from scripts.bench_support.common import proc_status_kib, run_id, sum_rss_mib, table


@dataclass
class IdleResult:
    steps: list[tuple[int, int, int, float]] = field(default_factory=list)  # asked, connected, failed, RSS MiB
    baseline_mib: float = 0.0
    client_rss_mib: float = 0.0
    stopped_because: str = ""


def run_idle(settings: Settings, *, maximum: int, step: int, processes: int) -> IdleResult:
    """Connect idle clients to one GatewayActor (the pipeline's own actor class) in steps; RSS after each step."""
    run = run_id("idle")
    result = IdleResult()
    tokens = [mint_token(settings, f"{run}-u{i}", ttl_s=7200) for i in range(maximum)]
    connect_ray(settings)
    gateway = Gateway.options(name=f"bench-{run}-gateway").remote(settings)
    loop_ref = start_loop(gateway)
    try:
        deadline = time.monotonic() + 60
        health: dict[str, Any] = {}
        while not health.get("ok"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway not serving: {health}")
            time.sleep(0.2)
            health = ray.get(gateway.health.remote())
        pid = int(health["pid"])
        result.baseline_mib = proc_status_kib(pid, "VmRSS") / 1024
        url = f"http://127.0.0.1:{health['port']}"
        print(f"run {run}: gateway pid {pid} on {url}, {result.baseline_mib:.0f} MiB idle")
        fleet = ClientFleet(url, tokens, processes)
        connected = 0
        try:
            while connected < maximum:
                asked = min(step, maximum - connected)
                started = time.perf_counter()
                ok, failed = fleet.connect(asked)
                took = time.perf_counter() - started
                connected += ok
                time.sleep(1.0)
                health = ray.get(gateway.health.remote())
                rss = proc_status_kib(pid, "VmRSS") / 1024
                result.steps.append((asked, int(health.get("connections", 0)), failed, rss))
                held = health.get("connections")
                print(f"  +{asked}: {held} connections, {failed} failed, {rss:.0f} MiB, {took:.1f}s")
                if failed:
                    result.stopped_because = f"{failed} connects failed in the last step"
                    break
            else:
                result.stopped_because = f"reached --max {maximum}"
            result.client_rss_mib = sum_rss_mib(fleet.pids())
        finally:
            fleet.stop()
        ray.get(gateway.drain.remote(), timeout=60)
        ray.wait([loop_ref], timeout=30)
    finally:
        ray.kill(gateway, no_restart=True)
        ray.shutdown()
    return result


def idle_report(r: IdleResult) -> str:
    rows = [("gateway RSS with no clients", f"{r.baseline_mib:.0f} MiB")]
    for asked, connections, failed, rss in r.steps:
        rows.append((f"connections {connections:>6}", f"{rss:6.0f} MiB  (+{asked} asked, {failed} failed)"))
    if r.steps:
        top = max(r.steps, key=lambda s: s[1])
        per_conn_kib = (top[3] - r.baseline_mib) * 1024 / top[1] if top[1] else float("nan")
        rows.append(("most connections held", f"{top[1]} at {top[3]:.0f} MiB (~{per_conn_kib:.0f} KiB per connection)"))
        rows.append(("goal", "5,000 idle connections per gateway: " + ("met" if top[1] >= 5000 else "NOT met")))
    rows.append(("stopped because", r.stopped_because))
    rows.append(("client processes RSS", f"{r.client_rss_mib:.0f} MiB"))
    return table("idle connections on one gateway", rows)
