"""What `appendfsync always` costs: the drain benchmark's Herald side (no clients) against two private Redis servers
started the way the stack starts its own (herald/stack/redis.py), one with `always` and one with `everysec`, on the
same disk, draining the same pre-produced topic of the shared broker, rounds alternating which goes first.

    PYTHONPATH=. .venv/bin/python scripts/bench_fsync.py [--events 100000] [--users 10000] [--repeat 4] [--json PATH]

Prints events/s per round and side, the medians and their ratio (always / everysec), and each Redis's fsync work
(INFO persistence). With `--apply-only` it measures instead where the fsync lands: the aggregators' commit path
alone (InboxApplier over RedisStore, no Kafka, no Ray), `--writers` concurrent writers on disjoint users applying
batches of `--batch` events, so Redis and its fsync are the pipeline's whole critical path. Heavy: run it alone on
the machine (the shared bench lock).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import ray  # noqa: E402
import redis  # noqa: E402

from herald.applier import InboxApplier  # noqa: E402
from herald.config import Settings, load_settings  # noqa: E402
from herald.events import NotificationEvent  # noqa: E402
from herald.stack import RedisServer, procs  # noqa: E402
from herald.store_redis import RedisStore  # noqa: E402
from herald.workload import social_stream  # noqa: E402
from scripts.bench_support.common import create_topic, delete_topic, delete_user_keys, run_id  # noqa: E402
from scripts.bench_support.drain import HeraldDrain, end_offsets, publish, rate_of  # noqa: E402
from scripts.bench_support.machine import describe, load_average  # noqa: E402
from scripts.bench_support.procs import stack_pids  # noqa: E402

POLICIES = ("always", "everysec")


def private_redis(settings: Settings, policy: str, state_dir: Path) -> tuple[RedisServer, Settings]:
    port = procs.free_port()
    own = settings.model_copy(
        update={"state_dir": state_dir, "redis_port": port, "redis_url": f"redis://127.0.0.1:{port}/0"}
    )
    server = RedisServer(own)
    server.appendfsync = policy
    server.start()
    return server, own


def recent_stream(run: str, events: int, users: int) -> list[dict[str, Any]]:
    """The run's social stream, event times over the last ten minutes (as the drain benchmark's)."""
    return social_stream(
        run, events=events, users=users, base=datetime.now(UTC) - timedelta(minutes=10), spread=timedelta(minutes=10)
    )


def fsync_counters(url: str) -> dict[str, Any]:
    with redis.Redis.from_url(url, decode_responses=True) as client:
        persistence = client.info("persistence")
        config = client.config_get("appendfsync")
    keys = ("aof_delayed_fsync", "aof_current_size", "aof_rewrites")
    return {"appendfsync": config["appendfsync"], **{k: persistence.get(k) for k in keys}}


async def apply_directly(url: str, events: list[NotificationEvent], *, writers: int, batch: int) -> dict[str, Any]:
    """The commit path alone: `writers` appliers (one per aggregator) on disjoint users, batches in order."""
    parts: list[list[NotificationEvent]] = [[] for _ in range(writers)]
    for event in events:
        parts[hash(event.user_id) % writers].append(event)
    store = RedisStore.from_url(url)
    loop = asyncio.get_running_loop()

    async def write(part: list[NotificationEvent]) -> int:
        applier = InboxApplier(store, clock_ms=lambda: int(time.time() * 1000))
        applied = 0
        for start in range(0, len(part), batch):
            applied += (await applier.apply(part[start : start + batch])).applied
        return applied

    try:
        started = loop.time()
        applied = sum(await asyncio.gather(*(write(part) for part in parts)))
        seconds = loop.time() - started
    finally:
        await store.close()
    return {"events": len(events), "applied": applied, "drain_s": seconds, "events_per_s": len(events) / seconds}


def write_latency_ms(url: str, writes: int = 2000) -> dict[str, float]:
    """One client, one INCR at a time: each waits for its reply, so with `always` for its fsync too."""
    latencies: list[float] = []
    with redis.Redis.from_url(url) as client:
        for _ in range(writes):
            started = time.perf_counter()
            client.incr("herald:bench:fsync-probe")
            latencies.append((time.perf_counter() - started) * 1000)
        client.delete("herald:bench:fsync-probe")
    latencies.sort()
    return {"p50": latencies[len(latencies) // 2], "p99": latencies[int(len(latencies) * 0.99)]}


def run_apply_only(
    args: argparse.Namespace, users: int, servers: dict[str, tuple[RedisServer, Settings]]
) -> list[dict[str, Any]]:
    rounds: list[dict[str, Any]] = []
    for r in range(args.repeat):
        run = run_id("fsync-apply")
        wire = recent_stream(run, args.events, users)
        events = [NotificationEvent.model_validate(e) for e in wire]
        order = POLICIES if r % 2 == 0 else POLICIES[::-1]
        this_round: dict[str, Any] = {}
        for policy in order:
            own = servers[policy][1]
            print(f"  round {r + 1}/{args.repeat}: commit path, appendfsync {policy} ...", flush=True)
            side = asyncio.run(apply_directly(own.redis_url, events, writers=args.writers, batch=args.batch))
            side["fsync"] = fsync_counters(own.redis_url)
            side["write_latency_ms"] = write_latency_ms(own.redis_url)
            asyncio.run(delete_user_keys(own, run))
            this_round[policy] = side
            lat = side["write_latency_ms"]
            print(
                f"    {side['events_per_s']:,.0f} events/s ({side['drain_s']:.1f} s); one INCR at a time: "
                f"p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms",
                flush=True,
            )
        rounds.append(this_round)
    return rounds


def summarize(result: dict[str, Any]) -> None:
    """Medians per policy and their ratio, into `result` and printed."""
    medians = {
        policy: statistics.median(r for r in (rate_of(x[policy]) for x in result["rounds"]) if r is not None)
        for policy in POLICIES
    }
    ratios = [a / b for a, b in ((rate_of(x["always"]), rate_of(x["everysec"])) for x in result["rounds"]) if a and b]
    result["median_events_per_s"] = medians
    result["ratio_always_over_everysec"] = medians["always"] / medians["everysec"]
    result["ratio_per_round"] = ratios
    result["machine"]["load_after"] = load_average()
    print(
        f"median events/s: always {medians['always']:,.0f}, everysec {medians['everysec']:,.0f}; "
        f"ratio always/everysec {result['ratio_always_over_everysec']:.2f} "
        f"(per round {', '.join(f'{x:.2f}' for x in ratios)})"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench_fsync.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=None, help="events / 10 by default")
    parser.add_argument("--repeat", type=int, default=4, help="rounds; each order comes first in half")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--apply-only", action="store_true", help="the commit path alone (no Kafka, no Ray)")
    parser.add_argument("--writers", type=int, default=2, help="--apply-only: concurrent appliers")
    parser.add_argument("--batch", type=int, default=500, help="--apply-only: events per apply call")
    return parser.parse_args(argv)


@contextlib.contextmanager
def both_redis(settings: Settings) -> Iterator[dict[str, tuple[RedisServer, Settings]]]:
    """One private Redis per policy, side by side in one directory next to the stack's state dir (same disk)."""
    state_root = Path(tempfile.mkdtemp(prefix="herald-fsync-", dir=settings.state_dir.parent))
    servers: dict[str, tuple[RedisServer, Settings]] = {}
    try:
        for policy in POLICIES:
            servers[policy] = private_redis(settings, policy, state_root / policy)
        yield servers
    finally:
        for server, _own in servers.values():
            server.stop()
        shutil.rmtree(state_root, ignore_errors=True)


def run_drains(
    args: argparse.Namespace, settings: Settings, users: int, run: str, servers: dict[str, tuple[RedisServer, Settings]]
) -> list[dict[str, Any]]:
    topic = f"{run}-events"
    print(
        f"fsync {run}: {args.events:,} events over {users:,} users -> {topic}; redis "
        + ", ".join(f"{p} :{s.redis_port}" for p, (_, s) in servers.items()),
        flush=True,
    )
    rounds: list[dict[str, Any]] = []
    try:
        wire = recent_stream(run, args.events, users)
        asyncio.run(create_topic(settings, topic, settings.events_partitions))
        asyncio.run(publish(settings, topic, wire))
        del wire
        ends = asyncio.run(end_offsets(settings, topic, settings.events_partitions))
        if sum(ends.values()) != args.events:
            raise RuntimeError(f"topic holds {sum(ends.values())} records, expected {args.events}")
        kafka_pid = stack_pids(settings).get("kafka")
        drains = {
            policy: HeraldDrain(
                own,
                run,
                topic,
                args.events,
                {"redis": server.pid() or 0, **({"kafka": kafka_pid} if kafka_pid else {})},
            )
            for policy, (server, own) in servers.items()
        }
        for r in range(args.repeat):
            order = POLICIES if r % 2 == 0 else POLICIES[::-1]
            this_round: dict[str, Any] = {}
            for policy in order:
                print(f"  round {r + 1}/{args.repeat}: appendfsync {policy} ...", flush=True)
                side = drains[policy](f"r{r}{policy[:2]}", [])
                side["fsync"] = fsync_counters(servers[policy][1].redis_url)
                this_round[policy] = side
                print(f"    {rate_of(side) or 0:,.0f} events/s (drain {side.get('drain_s', 0):.1f} s)", flush=True)
            rounds.append(this_round)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for _server, own in servers.values():
            asyncio.run(delete_user_keys(own, run))
        with contextlib.suppress(Exception):  # a run that failed before creating it must still show its own error
            asyncio.run(delete_topic(settings, topic))
    return rounds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    users = args.users or max(1, args.events // 10)
    settings = load_settings(gateway_port=0)  # the gateway takes a free port: no clients in this drain
    run = run_id("fsync")
    result: dict[str, Any] = {"benchmark": "fsync", "run": run, "machine": describe(settings)}
    result["params"] = {"events": args.events, "users": users, "repeat": args.repeat, "apply_only": args.apply_only}
    with both_redis(settings) as servers:
        if args.apply_only:
            result["params"] |= {"writers": args.writers, "batch": args.batch}
            result["rounds"] = run_apply_only(args, users, servers)
        else:
            result["rounds"] = run_drains(args, settings, users, run, servers)
    summarize(result)
    _write(args.json, result)
    return 0


def _write(path: Path | None, result: dict[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
