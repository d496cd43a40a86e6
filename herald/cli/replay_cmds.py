"""`herald replay` (apply a stretch of the events topic again, herald/replay.py) and `herald lag` (consumer group
lag and outbox backlog, herald/lag.py).

Exit codes: 0 healthy / done, 1 Kafka or Redis unreachable (and, for lag, a required group missing or over
--max-lag), 2 bad input. `--json` prints one JSON document on stdout and nothing else there.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from herald.cli.history import err_console, now_ms, run_or_exit, settings_or_exit, time_or_exit
from herald.cli.ops import fail
from herald.cli.output import JsonOption, show
from herald.errors import HeraldError
from herald.lag import LagReport, read_lag
from herald.replay import PartitionPlan, ReplayReport, ReplayRequest, default_group, plan_replay, run_replay

console = Console()
LAG_COLUMNS = ("group", "topic", "partition", "committed", "end", "lag")
OUTBOX_COLUMNS = ("channel", "shard", "length", "pending", "unread", "scheduled")


def replay(
    *,
    since: Annotated[str, typer.Option(help="From: ISO-8601 time, a span back from now (2h, 7d) or `earliest`.")],
    until: Annotated[str | None, typer.Option(help="Up to (exclusive); default: the end as of now.")] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user's events (one partition).")] = None,
    deliver: Annotated[
        bool, typer.Option("--deliver", help="Also queue EMAIL/SMS/WEBHOOK/PUSH deliveries (off: IN_APP only).")
    ] = False,
    past_readers: Annotated[
        bool,
        typer.Option("--past-readers", help="Also apply events the live readers have not committed yet."),
    ] = False,
    group: Annotated[
        str | None, typer.Option(help="Consumer group (default herald-replay-<time>); a rerun resumes it.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the offsets it would read, apply nothing.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Re-read the events topic from the offsets of --since and apply it again through the aggregators' path.
    Dedup keeps anything from counting twice; state Redis lost is rebuilt."""
    settings = settings_or_exit()
    if group == settings.reader_group:
        # Its commits would move the live readers' offsets (and be refused while they run).
        raise fail(HeraldError(f"--group {group} is the live readers' group; name a group of the replay's own"))
    now = now_ms()
    request = ReplayRequest(
        group=group or default_group(now),
        since_ms=time_or_exit(since, now_ms=now),
        until_ms=time_or_exit(until, now_ms=now),
        user=user,
        deliver=deliver,
        past_readers=past_readers,
    )
    plans = run_or_exit(plan_replay(settings, request), "planning the replay")
    if dry_run:
        _show_plan(request, plans, as_json=as_json)
        return
    with _progress(sum(p.size for p in plans), enabled=not as_json and sys.stdout.isatty()) as advance:
        report = run_or_exit(run_replay(settings, request, plans, progress=advance), "replay stopped")
    if as_json:
        print(json.dumps(report.to_json()))
        return
    _print_report(report)


@contextmanager
def _progress(total: int, *, enabled: bool) -> Iterator[Callable[[int], None] | None]:
    """A Rich progress bar over the offsets to read, on a terminal only (piped output stays plain lines)."""
    if not enabled or total == 0:
        yield None
        return
    columns = (
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("replay", total=total)
        yield lambda done: progress.advance(task, done)


def _plan_rows(plans: Sequence[PartitionPlan]) -> list[dict[str, Any]]:
    return [
        {
            "partition": p.partition,
            "start": p.start,
            "stop": p.stop,
            "records": p.size,
            "readersAt": p.readers_at,
            "heldBack": max(p.requested_stop - p.stop, 0),
            "resumed": p.resumed,
        }
        for p in plans
    ]


def _show_plan(request: ReplayRequest, plans: Sequence[PartitionPlan], *, as_json: bool) -> None:
    rows = _plan_rows(plans)
    columns = ("partition", "start", "stop", "records", "readersAt", "heldBack", "resumed")

    def table() -> Table:
        rich_table = Table(title=f"replay plan ({request.group}): {sum(p.size for p in plans)} records")
        for column in columns:
            rich_table.add_column(column, justify="right")
        for row in rows:
            rich_table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
        return rich_table

    show(rows, as_json=as_json, columns=columns, table=table, document={"group": request.group, "partitions": rows})


def _print_report(report: ReplayReport) -> None:
    """A summary: plain `name value` lines (the same on a terminal and piped)."""
    lines = [
        ("group", report.group),
        ("user", report.user or "(all)"),
        ("records", report.records),
        ("events", report.events),
        ("applied", report.applied),
        ("duplicates", report.duplicates),
        ("self_skipped", report.self_skipped),
        ("refused", report.refused),
        ("undecodable", report.undecodable),
        ("notifications_changed", report.notifications_changed),
        ("held_back", report.held_back),
        ("deliver", "yes" if report.deliver else "no (IN_APP only)"),
        ("elapsed_s", report.elapsed_s),
    ]
    for name, value in lines:
        print(f"{name}\t{value}")
    if report.held_back:
        err_console.print(
            f"{report.held_back} records past the live readers' commit were left to them (--past-readers applies "
            "them here)",
            highlight=False,
        )


def lag(
    groups: Annotated[
        list[str] | None,
        typer.Option("--group", "-g", help="Only these groups, each required (default: all, herald-readers required)."),
    ] = None,
    max_lag: Annotated[
        int | None, typer.Option(min=0, help="Exit 1 when a required group is more than this behind on a partition.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Consumer lag per group and partition on Herald's topics, and the delivery outbox backlog in Redis."""
    settings = settings_or_exit()
    report = run_or_exit(read_lag(settings, groups=groups or ()), "reading lag")
    problems = report.problems(max_lag)
    if as_json:
        print(json.dumps(report.to_json(max_lag)))
    else:
        _print_lag(report)
        for problem in problems:
            err_console.print(f"[red]unhealthy:[/red] {problem}", highlight=False)
    if problems:
        raise typer.Exit(code=1)


def _lag_rows(report: LagReport) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for g in report.groups:
        if g.missing:
            rows.append({"group": g.group, "topic": "", "partition": "", "committed": "", "end": "", "lag": "missing"})
        rows.extend(
            {
                "group": p.group,
                "topic": p.topic,
                "partition": p.partition,
                "committed": "" if p.committed is None else p.committed,
                "end": p.end,
                "lag": p.lag,
            }
            for p in g.partitions
        )
    return rows


def _print_lag(report: LagReport) -> None:
    """Two sections: a table each on a terminal; piped, one line per partition and per outbox shard, each led by
    its section's name so both stay easy to `grep` and `cut`."""
    rows = [{"section": "kafka", **row} for row in _lag_rows(report)]
    outbox = [{"section": "outbox", **asdict(o)} for o in report.outbox]

    def kafka_table() -> Table:
        table = Table(title="consumer lag (Kafka)")
        for column in LAG_COLUMNS:
            table.add_column(column, justify="left" if column in ("group", "topic") else "right")
        for g in report.groups:
            style = "bold" if g.required else ""
            if g.missing:
                table.add_row(g.group, "", "", "", "", "[red]missing[/]", style=style)
            for p in g.partitions:
                committed = "-" if p.committed is None else str(p.committed)
                table.add_row(p.group, p.topic, str(p.partition), committed, str(p.end), str(p.lag), style=style)
        return table

    def outbox_table() -> Table:
        table = Table(title="delivery outboxes (Redis, group herald-delivery)")
        for column in OUTBOX_COLUMNS:
            table.add_column(column, justify="left" if column == "channel" else "right")
        for o in outbox:
            table.add_row(*("-" if o[c] is None else str(o[c]) for c in OUTBOX_COLUMNS))
        if not outbox:
            table.add_row("(none)", "", "", "", "", "")
        return table

    show(rows, as_json=False, columns=("section", *LAG_COLUMNS), table=kafka_table)
    show(outbox, as_json=False, columns=("section", *OUTBOX_COLUMNS), table=outbox_table)


def register(app: typer.Typer) -> None:
    app.command()(replay)
    app.command()(lag)
