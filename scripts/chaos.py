"""Chaos: stream a seeded social workload through the whole pipeline while, at seeded random moments, killing with
kill -9 the worker processes of its actors (readers, aggregators, delivery actors, gateways), Redis and the Kafka
broker (both started again on their own data), and dropping Socket.IO connections. Then compare with the reference
model of the input.

    ./scripts/dev chaos [--events 100000] [--users 10000] [--seed N] [--faults-per-kind 3] [--stream-s 150] [--json]

It starts its own Kafka and Redis on free ports with their own state dir (never the shared local stack) and its
own Ray runtime. Exit 0 when every must-be-zero figure is zero and everything converged, 1 otherwise, 2 when the
run itself could not be set up.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rich.table import Table  # noqa: E402

from herald.cli.output import console, show  # noqa: E402
from herald.errors import HeraldError  # noqa: E402
from tests.support.chaos_run import ChaosConfig, ChaosReport, run_chaos  # noqa: E402


def positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return value

    return parse


def non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/dev chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=positive(int), default=100_000)
    parser.add_argument("--users", type=positive(int), default=10_000)
    parser.add_argument("--seed", type=int, default=None, help="repeat a run (printed by every run)")
    parser.add_argument(
        "--faults-per-kind", type=non_negative, default=3, help="0: a control run with no faults at all"
    )
    parser.add_argument("--stream-s", type=positive(float), default=150.0, help="seconds to publish the stream")
    parser.add_argument("--devices", type=positive(int), default=200, help="users watched by a Socket.IO client")
    parser.add_argument("--converge-timeout-s", type=positive(float), default=300.0)
    parser.add_argument("--keep-state", action="store_true", help="keep the private Kafka/Redis state dir")
    parser.add_argument(
        "--redis-appendfsync",
        choices=("always", "everysec"),
        default="always",
        help="the private Redis's AOF fsync policy (always, as the stack runs it; everysec to see what it risks)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def figure_rows(report: ChaosReport) -> list[dict[str, Any]]:
    f = report.figures
    must = f.must_be_zero()
    rows: list[dict[str, Any]] = [
        {"figure": "events published", "value": f.events_published, "must_be_zero": False},
        *({"figure": name, "value": value, "must_be_zero": True} for name, value in must.items()),
        {"figure": "deliveries expected (final versions)", "value": f.deliveries.expected, "must_be_zero": False},
        {"figure": "deliveries received", "value": f.deliveries.received, "must_be_zero": False},
        {"figure": "deliveries duplicated (at-least-once)", "value": f.deliveries.duplicated, "must_be_zero": False},
        {"figure": "client connections", "value": f.clients.connections, "must_be_zero": False},
        {"figure": "notifications shown to clients", "value": f.clients.notifications_shown, "must_be_zero": False},
        {"figure": "publish retries", "value": report.publish_retries, "must_be_zero": False},
        {"figure": "publish time (s)", "value": report.publish_s, "must_be_zero": False},
        {"figure": "time to converge (s)", "value": f.converged_s, "must_be_zero": False},
    ]
    return rows


def print_report(report: ChaosReport, *, as_json: bool) -> None:
    document = report.as_json()
    if as_json:
        print(json.dumps(document, default=str))
        return
    faults = [
        {"kind": x.kind, "at_s": x.at_s, "target": x.target, "took_s": x.took_s, "error": x.error or ""}
        for x in report.faults
    ]
    fault_cols = ["kind", "at_s", "target", "took_s", "error"]

    def fault_table() -> Table:
        table = Table(title=f"faults injected (seed {report.config.seed})")
        for column in fault_cols:
            table.add_column(column)
        for row in faults:
            table.add_row(*(str(row[c]) for c in fault_cols))
        return table

    rows = figure_rows(report)

    def figure_table() -> Table:
        table = Table(title="figures")
        for column in ("figure", "value", "must be zero"):
            table.add_column(column)
        for row in rows:
            bad = row["must_be_zero"] and row["value"]
            table.add_row(
                row["figure"],
                f"[red]{row['value']}[/red]" if bad else str(row["value"]),
                "yes" if row["must_be_zero"] else "",
            )
        return table

    show(faults, as_json=False, columns=fault_cols, table=fault_table)
    show(rows, as_json=False, columns=["figure", "value", "must_be_zero"], table=figure_table)
    examples = [*report.figures.inbox.examples, *report.figures.deliveries.examples, *report.figures.clients.examples]
    for line in examples:
        print(f"example: {line}")
    verdict = "OK" if document["ok"] else "FAILED"
    if sys.stdout.isatty():
        console.print(f"[bold]{verdict}[/bold] seed {report.config.seed}, {report.total_s} s in all")
    else:
        print(f"{verdict}\tseed {report.config.seed}\t{report.total_s} s")


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Ray prints the deaths of the workers we kill ("(raylet) A worker died ...") on the driver's stdout, and its
    processes inherit file descriptor 1: point it at stderr while the run lasts, so stdout holds only the report
    (with --json, exactly one JSON document)."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    if not args.verbose:
        # Restarted loops are the point of the exercise; the supervisor's warning for each is noise here.
        logging.getLogger("herald.pipeline").setLevel(logging.ERROR)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    config = ChaosConfig(
        events=args.events,
        users=args.users,
        seed=seed,
        faults_per_kind=args.faults_per_kind,
        stream_s=args.stream_s,
        devices=min(args.devices, args.users),
        converge_timeout_s=args.converge_timeout_s,
        keep_state=args.keep_state,
        redis_appendfsync=args.redis_appendfsync,
    )
    print(f"chaos seed {seed} (repeat with --seed {seed})", file=sys.stderr)
    try:
        with stdout_to_stderr():
            report = run_chaos(config, progress=lambda line: print(line, file=sys.stderr, flush=True))
    except (HeraldError, RuntimeError) as exc:
        print(f"chaos run could not complete: {exc}", file=sys.stderr)
        return 2
    print_report(report, as_json=args.json)
    return 0 if report.as_json()["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
