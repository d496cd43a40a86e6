"""Herald benchmarks: each measured beside its peers on the same box, in the same run. `./scripts/dev bench` runs
them and writes docs/benchmarks.md, raw JSON and charts under docs/bench/.

    .venv/bin/python scripts/bench.py drain   [--events 100000 --users 10000 --clients 1000 --peers quix,faust]
                                              [--raylets 1,2]
    .venv/bin/python scripts/bench.py latency [--clients 1000 --rates 1000,5000 --seconds 30]
    .venv/bin/python scripts/bench.py burst   [--likes 100000 --seconds 10 --devices 10]
    .venv/bin/python scripts/bench.py all     [--repeat N] [--quick]
    .venv/bin/python scripts/bench.py report  (rewrite the page from the JSON already there)
    .venv/bin/python scripts/bench.py idle-connections [--max 5000 --step 500]
    .venv/bin/python scripts/bench.py soak    [--minutes 30 --clients 200 --rate 200 --sample-s 15]
    .venv/bin/python scripts/bench.py badinput [--malformed 100000 --valid 100000 --users 10000 --repeat 1]
    .venv/bin/python scripts/bench.py codecs  [--events 20000]  (no services: compression CPU on Herald's payloads)

Every run uses a private topic and consumer group, passed as settings (see bench_support/ray_reader.py), a fresh
in-process Ray runtime that is drained and shut down at the end, and user ids unique to the run. --quick runs
small sizes and writes to artifacts/bench-quick/ instead of docs/.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from herald.config import Settings, load_settings  # noqa: E402
from scripts.bench_support import badinput, burst, codecs, drain, idle, latency, reader_path, report, soak  # noqa: E402
from scripts.bench_support.common import free_port  # noqa: E402

FULL = {"events": 100_000, "clients": 1000, "seconds": 30.0, "likes": 100_000, "burst_seconds": 10.0}
QUICK = {"events": 20_000, "clients": 200, "seconds": 10.0, "likes": 20_000, "burst_seconds": 5.0}


def settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {"gateway_port": free_port()}
    for name in ("readers", "aggregators", "delivery_actors", "reader_max_records", "ray_num_cpus"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return load_settings(**overrides)


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small sizes, to artifacts/bench-quick/")
    parser.add_argument("--repeat", type=int, default=None, help="rounds (default 3, --quick 1)")
    parser.add_argument("--out", type=Path, help="where the JSON and charts go (default docs/bench)")
    parser.add_argument("--readers", type=int, help="reader actors (default: from the cluster)")
    parser.add_argument("--aggregators", type=int, help="aggregator actors (default: from the cluster)")
    parser.add_argument("--delivery-actors", dest="delivery_actors", type=int)
    parser.add_argument("--reader-max-records", dest="reader_max_records", type=int)
    parser.add_argument("--ray-num-cpus", dest="ray_num_cpus", type=int)
    parser.add_argument("--events", type=int, help="drain: events (100,000; --quick 20,000)")
    parser.add_argument("--users", type=int, help="drain: users (events / 10)")
    parser.add_argument("--clients", type=int, help="drain and latency: connected clients (1,000; --quick 200)")
    parser.add_argument("--peers", default="quix,faust", help="drain: peer apps to run ('' for none)")
    parser.add_argument(
        "--raylets", default="1", help="drain: also drain on clusters of these many raylets splitting the CPUs (1,2)"
    )
    parser.add_argument("--rates", default="1000,5000", help="latency: offered events/s, comma separated")
    parser.add_argument("--seconds", type=float, help="latency: seconds per offered load (30; --quick 10)")
    parser.add_argument("--likes", type=int, help="burst: likes (100,000; --quick 20,000)")
    parser.add_argument("--burst-seconds", dest="burst_seconds", type=float, help="burst: over (10 s; --quick 5)")
    parser.add_argument("--devices", type=int, default=10, help="burst: the owner's connected devices")


def pick(args: argparse.Namespace, name: str) -> Any:
    value = getattr(args, name, None)
    return value if value is not None else (QUICK if args.quick else FULL)[name]


def run_one(which: str, args: argparse.Namespace, out_dir: Path, command: str) -> None:
    settings = settings_from(args)
    repeat = args.repeat or (1 if args.quick else 3)
    data: dict[str, Any]
    if which == "drain":
        events = pick(args, "events")
        data = drain.run_drain(
            settings,
            events=events,
            users=args.users or max(1, events // 10),
            clients=pick(args, "clients"),
            repeat=repeat,
            peer_names=[p for p in args.peers.split(",") if p],
            raylets=[int(n) for n in args.raylets.split(",") if n],
        )
    elif which == "latency":
        rates = [float(r) for r in args.rates.split(",") if r]
        runs = [
            latency.run_latency(
                settings_from(args), clients=pick(args, "clients"), rates=rates, seconds=pick(args, "seconds")
            )
            for _ in range(repeat)
        ]
        data = {"benchmark": "latency", "params": runs[0]["params"], "runs": runs}
        for run in runs:
            print(latency.summary(run))
    else:
        runs = [
            burst.run_burst(
                settings_from(args),
                likes=pick(args, "likes"),
                seconds=pick(args, "burst_seconds"),
                devices=args.devices,
            )
            for _ in range(repeat)
        ]
        data = {"benchmark": "burst", "params": runs[0]["params"], "runs": runs}
        for run in runs:
            print(burst.summary(run))
    data["command"] = command
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{which}.json"
    path.write_text(json.dumps(data, indent=1, default=str))
    print(f"wrote {path}")


def run_soak(args: argparse.Namespace) -> None:
    plan = soak.SoakPlan(
        minutes=args.minutes,
        clients=args.clients,
        rate=args.rate,
        sample_s=args.sample_s,
        dedup_horizon_s=args.dedup_horizon_s,
    )
    result = soak.run_soak(load_settings(gateway_port=free_port()), plan)
    out_dir = args.out or ROOT / "docs" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "soak.json").write_text(json.dumps(result, indent=1, default=str))
    (out_dir / "soak.svg").write_text(soak.render_chart(result))
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(soak.summary(result))
        print(f"wrote {out_dir / 'soak.json'} and {out_dir / 'soak.svg'}")
    verdict = result["verdict"]
    healthy = (
        verdict["bounded"]
        and verdict["inbox_within_capacity"]
        and not verdict["keys_without_expiry"]
        and verdict["mentions_missing"] == 0
        and verdict["client_duplicates"] == 0
    )
    sys.exit(0 if healthy else 1)


def run_badinput(args: argparse.Namespace, argv: list[str] | None) -> None:
    """Prints the figures; exits 1 when a promise of docs/reliability.md (Bad input) does not hold."""
    result = badinput.run_badinput(
        load_settings(gateway_port=free_port()),
        malformed=args.malformed,
        valid=args.valid,
        users=args.users,
        repeat=args.repeat,
    )
    result["command"] = " ".join(["scripts/bench.py", *(argv if argv is not None else sys.argv[1:])])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(badinput.summary(result))
    print(f"wrote {args.out}")
    dlq = result["dlq"]
    kept = dlq["with_reason"] == dlq["sent"] and not dlq["valid_dead_lettered"]
    if not (kept and result["ratio"] >= 0.8 and result["actor_restarts"] == 0 and result["loop_restarts"] == 0):
        sys.exit(1)


def run_reader_path(args: argparse.Namespace) -> None:
    result = reader_path.run_reader_path(
        load_settings(), valid=args.valid, malformed=args.malformed, users=args.users, repeat=args.repeat
    )
    print(json.dumps(result, indent=1) if args.json else reader_path.summary(result))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Herald benchmarks")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("drain", "drain a pre-produced backlog: Herald (with and without clients) beside its peers"),
        ("latency", "produce -> Socket.IO client latency under fixed offered loads"),
        ("burst", "a viral burst: many likes of one post in a few seconds"),
        ("all", "drain, latency and burst"),
        ("report", "rewrite the page from the JSON already written"),
    ):
        add_common(sub.add_parser(name, help=text))
    p_idle = sub.add_parser("idle-connections", help="idle connections one gateway holds, with memory")
    p_idle.add_argument("--max", type=int, default=5000)
    p_idle.add_argument("--step", type=int, default=500)
    p_idle.add_argument("--processes", type=int, default=4, help="client processes")
    p_soak = sub.add_parser("soak", help="steady load for a long time: does anything grow without bound?")
    p_soak.add_argument("--minutes", type=float, default=30.0)
    p_soak.add_argument("--clients", type=int, default=200, help="connected users (each gets mentions)")
    p_soak.add_argument("--rate", type=float, default=200.0, help="events/s (a quarter are likes to offline users)")
    p_soak.add_argument("--sample-s", dest="sample_s", type=float, default=15.0, help="seconds between samples")
    p_soak.add_argument(
        "--dedup-horizon-s", dest="dedup_horizon_s", type=int, help="shorter dedup horizon, to reach its plateau"
    )
    p_soak.add_argument("--out", type=Path, help="where soak.json and soak.svg go (default docs/bench)")
    p_soak.add_argument("--json", action="store_true", help="print the result as one JSON document")

    p_codecs = sub.add_parser("codecs", help="Kafka compression codecs on event JSON and malformed records")
    p_codecs.add_argument("--events", type=int, default=20_000)

    p_bad = sub.add_parser("badinput", help="malformed records mixed into valid traffic: DLQ, throughput, restarts")
    p_bad.add_argument("--malformed", type=int, default=100_000)
    p_bad.add_argument("--valid", type=int, default=100_000)
    p_bad.add_argument("--users", type=int, default=10_000)
    p_bad.add_argument("--repeat", type=int, default=1, help="clean and mixed drains, alternating; medians")
    p_bad.add_argument("--out", type=Path, default=ROOT / "artifacts" / "badinput.json")

    p_path = sub.add_parser("reader-path", help="a reader's own CPU per valid and per malformed record, outside Ray")
    p_path.add_argument("--malformed", type=int, default=30_000)
    p_path.add_argument("--valid", type=int, default=30_000)
    p_path.add_argument("--users", type=int, default=10_000)
    p_path.add_argument("--repeat", type=int, default=3, help="rounds of clean, mixed and free-refusal drains")
    p_path.add_argument("--json", action="store_true", help="print the result as one JSON document")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "badinput":
        run_badinput(args, argv)
        return
    if args.command == "reader-path":
        run_reader_path(args)
        return
    if args.command == "codecs":
        print(codecs.report(codecs.run_codecs(args.events)))
        return
    if args.command == "idle-connections":
        settings = load_settings(gateway_port=free_port())
        result = idle.run_idle(settings, maximum=args.max, step=args.step, processes=args.processes)
        print()
        print(idle.idle_report(result))
        return
    if args.command == "soak":
        run_soak(args)
        return
    out_dir = args.out or (ROOT / "artifacts" / "bench-quick" if args.quick else ROOT / "docs" / "bench")
    doc = out_dir / "benchmarks.md" if (args.quick or args.out) else ROOT / "docs" / "benchmarks.md"
    which = ["drain", "latency", "burst"] if args.command == "all" else [args.command]
    command = " ".join(["./scripts/dev bench", *(argv if argv is not None else sys.argv[1:])])
    if args.command != "report":
        for name in which:
            run_one(name, args, out_dir, command)
    print(f"wrote {report.write_doc(out_dir, doc)}")


if __name__ == "__main__":
    main()
