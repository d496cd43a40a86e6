"""Herald benchmarks (issues 3 and 4). Each peer is measured in the same run, on the same box, side by side.

    .venv/bin/python scripts/bench.py drain [--events 200000 --users 20000]
    .venv/bin/python scripts/bench.py latency [--clients 1000 --rate 1000 --seconds 60]
    .venv/bin/python scripts/bench.py idle-connections [--max 5000 --step 500]

Every run uses a private topic and consumer group (see bench_support/ray_reader.py), a fresh in-process Ray
runtime that is drained and shut down at the end, and user ids unique to the run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from herald.config import Settings, load_settings  # noqa: E402
from scripts.bench_support import drain, latency  # noqa: E402


def settings_from(args: argparse.Namespace, **extra: object) -> Settings:
    overrides: dict[str, object] = {k: v for k, v in extra.items() if v is not None}
    for name in ("readers", "aggregators", "delivery_actors", "reader_max_records", "ray_num_cpus"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return load_settings(**overrides)


def add_shape(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--readers", type=int, help="reader actors (default: from the cluster)")
    parser.add_argument("--aggregators", type=int, help="aggregator actors (default: from the cluster)")
    parser.add_argument("--delivery-actors", dest="delivery_actors", type=int)
    parser.add_argument("--reader-max-records", dest="reader_max_records", type=int)
    parser.add_argument("--ray-num-cpus", dest="ray_num_cpus", type=int)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Herald benchmarks")
    sub = parser.add_subparsers(dest="command", required=True)

    p_drain = sub.add_parser("drain", help="issue 3: drain a preloaded backlog vs a plain consumer")
    p_drain.add_argument("--events", type=int, default=200_000)
    p_drain.add_argument("--users", type=int, default=20_000)
    add_shape(p_drain)

    p_lat = sub.add_parser("latency", help="issue 4: produce-to-client latency under a fixed offered load")
    p_lat.add_argument("--clients", type=int, default=1000)
    p_lat.add_argument("--rate", type=float, default=1000.0, help="offered events/s")
    p_lat.add_argument("--seconds", type=float, default=60.0)
    p_lat.add_argument("--processes", type=int, default=4, help="client processes")
    add_shape(p_lat)

    p_idle = sub.add_parser("idle-connections", help="issue 4: idle connections one gateway holds, with memory")
    p_idle.add_argument("--max", type=int, default=5000)
    p_idle.add_argument("--step", type=int, default=500)
    p_idle.add_argument("--processes", type=int, default=4, help="client processes")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "drain":
        settings = settings_from(args, gateway_port=latency.free_port())
        result = drain.run_drain(settings, events=args.events, users=args.users)
        print()
        print(drain.report(result, settings))
    elif args.command == "latency":
        settings = settings_from(args, gateway_port=latency.free_port())
        lat = latency.run_latency(
            settings, clients=args.clients, rate=args.rate, seconds=args.seconds, processes=args.processes
        )
        print()
        print(latency.latency_report(lat))
    else:
        settings = load_settings(gateway_port=latency.free_port())
        idle = latency.run_idle(settings, maximum=args.max, step=args.step, processes=args.processes)
        print()
        print(latency.idle_report(idle))


if __name__ == "__main__":
    main()
