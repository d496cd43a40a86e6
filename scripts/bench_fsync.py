"""What `appendfsync always` costs: the drain benchmark's Herald side (no clients) against two private Redis servers
started the way the stack starts its own (herald/stack/redis.py), one with `always` and one with `everysec`, on the
same disk, draining the same pre-produced topic of the shared broker, rounds alternating which goes first.

    PYTHONPATH=. .venv/bin/python scripts/bench_fsync.py [--events 100000] [--users 10000] [--repeat 4] [--json PATH]

Prints events/s per round and side, the medians and their ratio (always / everysec), and each Redis's fsync work
(INFO persistence). Heavy: run it alone on the machine (the shared bench lock).
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import ray  # noqa: E402
import redis  # noqa: E402

from herald.config import Settings, load_settings  # noqa: E402
from herald.kafka import close_client, make_admin, start_bounded  # noqa: E402
from herald.stack import RedisServer, procs  # noqa: E402
from herald.workload import social_stream  # noqa: E402
from scripts.bench_support.common import create_topic, delete_user_keys, run_id  # noqa: E402
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


async def delete_topic(settings: Settings, topic: str) -> None:
    admin = make_admin(settings)
    await start_bounded(admin, settings, "bench admin")
    try:
        await admin.delete_topics([topic])
    finally:
        await close_client(admin)


def fsync_counters(url: str) -> dict[str, Any]:
    with redis.Redis.from_url(url, decode_responses=True) as client:
        persistence = client.info("persistence")
        config = client.config_get("appendfsync")
    keys = ("aof_delayed_fsync", "aof_current_size", "aof_rewrites")
    return {"appendfsync": config["appendfsync"], **{k: persistence.get(k) for k in keys}}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench_fsync.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=None, help="events / 10 by default")
    parser.add_argument("--repeat", type=int, default=4, help="rounds; each order comes first in half")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args(argv)
    users = args.users or max(1, args.events // 10)
    settings = load_settings(gateway_port=0)  # the gateway takes a free port: no clients in this drain
    run = run_id("fsync")
    topic = f"{run}-events"
    state_root = Path(tempfile.mkdtemp(prefix="herald-fsync-", dir=settings.state_dir.parent))
    servers: dict[str, tuple[RedisServer, Settings]] = {}
    result: dict[str, Any] = {"benchmark": "fsync", "run": run, "machine": describe(settings), "rounds": []}
    result["params"] = {"events": args.events, "users": users, "repeat": args.repeat}
    try:
        for policy in POLICIES:
            servers[policy] = private_redis(settings, policy, state_root / policy)
        print(
            f"fsync {run}: {args.events:,} events over {users:,} users -> {topic}; redis "
            + ", ".join(f"{p} :{s.redis_port}" for p, (_, s) in servers.items()),
            flush=True,
        )
        wire = social_stream(
            run,
            events=args.events,
            users=users,
            base=datetime.now(UTC) - timedelta(minutes=10),
            spread=timedelta(minutes=10),
        )
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
            result["rounds"].append(this_round)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for server, own in servers.values():
            asyncio.run(delete_user_keys(own, run))
            server.stop()
        shutil.rmtree(state_root, ignore_errors=True)
        with contextlib.suppress(Exception):  # a run that failed before creating it must still show its own error
            asyncio.run(delete_topic(settings, topic))
    summarize(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
