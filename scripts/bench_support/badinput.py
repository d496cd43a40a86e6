"""The malformed-input run at full size (docs/reliability.md, Bad input): `scripts/bench.py badinput`.

The same valid events are pre-produced to two private topics, alone (clean) and with the malformed records of
herald.malformed spread among them (mixed). Each topic is drained by a fresh pipeline (gated readers, its own
consumer group, the run's user keys wiped before) on the same Ray runtime; the drain ends when every record is
committed. Figures: malformed sent, found in the DLQ with the expected reason (per kind), valid events/s clean
and mixed and their ratio, actor restarts (pids before and after) and loop restarts (the supervisor's log).
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import ray

from herald.config import Settings
from herald.contracts import ActorHealth
from herald.dlq_admin import dlq_end_offsets, read_dead_letters
from herald.kafka import close_client, make_admin, start_bounded
from herald.malformed import malformed_records
from herald.malformed_run import match_dead_letters, produce_mixed
from herald.topics import ensure_topics
from herald.workload import social_stream
from pipeline import Pipeline, connect_ray
from scripts.bench_support import ray_reader
from scripts.bench_support.common import cleanup_run, delete_user_keys, run_id
from scripts.bench_support.drain import actor_roles, committed_total, end_offsets
from scripts.bench_support.procs import CpuMeter, stack_pids

# Loop failures that say the infrastructure was out of reach (a broker too loaded to answer in time on a shared
# box), not that a record broke something.
_INFRASTRUCTURE = ("BrokerUnavailableError", "unreachable", "ConnectionError", "TimeoutError", "KafkaConnectionError")


class _LoopRestarts(logging.Handler):
    """Collects the supervisor's "... loop failed / returned without a drain; restarting it" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "restarting it" in message:
            self.messages.append(message)

    @property
    def by_input(self) -> list[str]:
        return [m for m in self.messages if not any(word in m for word in _INFRASTRUCTURE)]


def _pids(status: dict[str, list[ActorHealth]]) -> dict[str, int | None]:
    return {f"{group}[{i}]": h.get("pid") for group, hs in status.items() for i, h in enumerate(hs)}


def _readers(status: dict[str, list[ActorHealth]], name: str) -> int:
    return sum(int(h.get(name) or 0) for h in status["readers"])  # type: ignore[call-overload]


def _aggregators(status: dict[str, list[ActorHealth]], name: str) -> int:
    return sum(int(h.get(name) or 0) for h in status["aggregators"])  # type: ignore[call-overload]


def drain_topic(settings: Settings, topic: str, tag: str, run: str) -> dict[str, Any]:
    """One drain of `topic` by a fresh pipeline; seconds until every record is committed, and what restarted."""
    asyncio.run(delete_user_keys(settings, run))
    group = f"{run}-readers-{tag}"
    private = ray_reader.bench_settings(settings, topic=topic, group=group)
    total = sum(asyncio.run(end_offsets(settings, topic, settings.events_partitions)).values())
    pipe = Pipeline(private, name=f"bench-{group[-24:]}", reader_actor=ray_reader.gated_reader())
    pipe.start(settle_group=False)
    restarts = _LoopRestarts()
    logging.getLogger("herald.pipeline").addHandler(restarts)
    supervisor = pipe.supervise_in_background()
    try:
        before = pipe.status()
        groups = {k: [v] for k, v in stack_pids(settings).items()} | {"harness (driver)": [os.getpid()]}
        meter = CpuMeter(groups=groups, tree_roots={"ray (other)": os.getpid()}, roles=actor_roles(before))
        cpu_before = meter.snapshot()
        ray.get([r.go.remote() for r in pipe.readers])
        started = time.perf_counter()
        asyncio.run(_wait_committed(settings, group, total, deadline_s=max(600.0, total / 100)))
        drain_s = time.perf_counter() - started
        cpu = meter.between(cpu_before, meter.snapshot())
        after = pipe.status()
    finally:
        supervisor.stop()
        logging.getLogger("herald.pipeline").removeHandler(restarts)
        pipe.drain()
    changed = [name for name, pid in _pids(before).items() if _pids(after).get(name) != pid]
    return {
        "records": total,
        "drain_s": drain_s,
        # Where the time went (CPU seconds per process kind): on a shared box the wall time says as much about
        # the neighbours as about Herald, the CPU spent per valid event does not.
        "cpu_s": {label: round(seconds, 2) for label, seconds in sorted(cpu.items())},
        "actor_restarts": len(changed),
        "restarted": changed,
        "loop_restarts": len(restarts.by_input),
        "loop_restarts_infrastructure": len(restarts.messages) - len(restarts.by_input),
        "loop_restart_errors": [m[-300:] for m in restarts.messages],
        "actors_ok": all(h.get("ok") for hs in after.values() for h in hs),
        "applied": _aggregators(after, "applied"),
        "dead_lettered": _readers(after, "dead_lettered"),
        "application_errors": _readers(after, "application_errors"),
        "dead_lettered_after_errors": _readers(after, "dead_lettered_after_errors"),
    }


async def _wait_committed(settings: Settings, group: str, total: int, *, deadline_s: float) -> None:
    admin = make_admin(settings)
    await start_bounded(admin, settings, "bench admin")
    try:
        deadline = time.monotonic() + deadline_s
        while (done := await committed_total(group, admin)) < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"drain did not finish: {done}/{total} committed")
            await asyncio.sleep(0.1)
    finally:
        await close_client(admin)


def run_badinput(
    settings: Settings, *, malformed: int = 100_000, valid: int = 100_000, users: int = 10_000, repeat: int = 1
) -> dict[str, Any]:
    run = run_id("bad")
    clean_topic, mixed_topic = f"{run}-clean", f"{run}-mixed"
    for topic in (clean_topic, mixed_topic):  # with the events topic's configs (1 MiB + 64 KiB records)
        asyncio.run(ensure_topics(ray_reader.bench_settings(settings, topic=topic, group=run)))
    events = social_stream(
        run, events=valid, users=users, base=datetime.now(UTC) - timedelta(minutes=10), spread=timedelta(minutes=10)
    )
    bad = malformed_records(run, malformed, users=users)
    started = time.perf_counter()
    asyncio.run(produce_mixed(settings, clean_topic, events, []))
    sent = asyncio.run(produce_mixed(settings, mixed_topic, events, bad))
    produce_s = time.perf_counter() - started
    clean_runs: list[dict[str, Any]] = []
    mixed_runs: list[dict[str, Any]] = []
    try:
        connect_ray(settings)
        since = asyncio.run(dlq_end_offsets(settings))
        for round_ in range(repeat):
            clean_runs.append(drain_topic(settings, clean_topic, f"clean{round_}", run))
            mixed_runs.append(drain_topic(settings, mixed_topic, f"mixed{round_}", run))
        letters = asyncio.run(read_dead_letters(settings, since=since))
        findings = match_dead_letters(sent, letters, [mixed_topic])
    finally:
        ray.shutdown()
        cleanup_run(settings, run, [clean_topic, mixed_topic])
    clean_rate = statistics.median(valid / r["drain_s"] for r in clean_runs)
    mixed_rate = statistics.median(valid / r["drain_s"] for r in mixed_runs)
    return {
        "benchmark": "badinput",
        "params": {"malformed": malformed, "valid": valid, "users": users, "repeat": repeat},
        "produce_s": produce_s,
        "dlq": findings.summary(),
        "clean": clean_runs,
        "mixed": mixed_runs,
        "valid_per_s_clean": clean_rate,
        "valid_per_s_mixed": mixed_rate,
        "ratio": mixed_rate / clean_rate,
        "actor_restarts": sum(r["actor_restarts"] for r in [*clean_runs, *mixed_runs]),
        "loop_restarts": sum(r["loop_restarts"] for r in [*clean_runs, *mixed_runs]),
        "loop_restarts_infrastructure": sum(r["loop_restarts_infrastructure"] for r in [*clean_runs, *mixed_runs]),
    }


def summary(result: dict[str, Any]) -> str:
    dlq = result["dlq"]
    lines = [
        f"malformed sent: {dlq['sent']:,}; in notification-dlq: {dlq['found']:,}; with the expected reason: "
        f"{dlq['with_reason']:,}; missing: {dlq['missing']:,}; "
        f"valid events dead-lettered: {dlq['valid_dead_lettered']}",
        "by kind (sent / in DLQ / with reason, stage):",
    ]
    for kind, k in dlq["by_kind"].items():
        stages = ", ".join(f"{s} {n:,}" for s, n in k["stages"].items())
        lines.append(f"  {kind:<15} {k['sent']:>7,} / {k['found']:>7,} / {k['with_reason']:>7,}  ({stages})")
    if dlq["wrong_reason"]:
        lines.append(f"  unexpected reasons: {dlq['wrong_reason']}")
    clean, mixed = result["clean"], result["mixed"]
    clean_s = ", ".join(f"{r['drain_s']:.1f}" for r in clean)
    mixed_s = ", ".join(f"{r['drain_s']:.1f}" for r in mixed)
    lines += [
        f"valid throughput: clean {result['valid_per_s_clean']:,.0f} events/s "
        f"({clean_s} s for {result['params']['valid']:,}), "
        f"mixed {result['valid_per_s_mixed']:,.0f} events/s "
        f"({mixed_s} s for {mixed[0]['records']:,} records); "
        f"ratio {result['ratio']:.2f}",
        f"CPU s per 1,000 valid events: clean {_cpu_line(clean, result['params']['valid'])}",
        f"                              mixed {_cpu_line(mixed, result['params']['valid'])}",
        f"actor restarts: {result['actor_restarts']}; loop restarts caused by input: {result['loop_restarts']} "
        f"(and {result['loop_restarts_infrastructure']} by the broker or Redis out of reach); "
        f"failing aggregator calls (mixed): {sum(r['application_errors'] for r in mixed)}",
    ]
    return "\n".join(lines)


def _cpu_line(drains: list[dict[str, Any]], valid: int) -> str:
    """Median CPU seconds per 1,000 valid events, in total and per process kind (largest first)."""
    labels = {label for d in drains for label in d["cpu_s"]}
    per_k = {label: statistics.median(d["cpu_s"].get(label, 0.0) for d in drains) * 1000 / valid for label in labels}
    parts = ", ".join(f"{label} {v:.3f}" for label, v in sorted(per_k.items(), key=lambda kv: -kv[1]) if v >= 0.001)
    return f"{sum(per_k.values()):.3f} ({parts})"
