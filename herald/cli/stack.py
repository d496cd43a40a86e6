"""`herald stack up|down|status|env`: the local development stack (Kafka KRaft, Redis, optional Ray head)."""

from __future__ import annotations

import shlex
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from herald import stack
from herald.cli.output import JsonOption, show
from herald.config import load_settings
from herald.errors import HeraldError
from herald.redaction import redact_url

app = typer.Typer(help="Run the local stack: Kafka (KRaft), Redis and Ray.", no_args_is_help=True)
console = Console(stderr=True)

_STATE_STYLE = {"running": "green", "stopped": "dim", "stale": "yellow", "unhealthy": "red"}


def _fail(exc: HeraldError) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
    return typer.Exit(code=1)


@app.command()
def up(
    with_ray: Annotated[
        bool, typer.Option("--with-ray", help="Also start a local Ray head (default: in-process ray.init()).")
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Start only this service (redis, kafka, ray); repeatable."),
    ] = None,
) -> None:
    """Start Kafka and Redis (reusing what already runs) and record them in <state_dir>/stack.json."""
    began = time.monotonic()
    try:
        info = stack.up(load_settings(), with_ray=with_ray, only=only)
    except HeraldError as exc:
        raise _fail(exc) from exc
    for result in info.started:
        if result.cleaned_stale_pid is not None:
            console.print(f"[yellow]{result.name}: removed stale pid file (pid {result.cleaned_stale_pid} gone)")
        verb = "reused" if result.reused else "started"
        console.print(f"{result.name}: {verb} (pid {result.pid})")
    console.print(
        f"kafka {info.kafka_bootstrap}  redis {redact_url(info.redis_url)}  ray {info.ray_address or 'in-process'}"
    )
    console.print(f"stack file {info.stack_file}; up in {time.monotonic() - began:.1f} s", highlight=False)


@app.command()
def down(
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Stop only this service (redis, kafka, ray); repeatable."),
    ] = None,
) -> None:
    """Stop the stack: SIGTERM, then SIGKILL after a bounded wait. Nothing running is fine."""
    try:
        results = stack.down(load_settings(), only=only)
    except HeraldError as exc:
        raise _fail(exc) from exc
    for result in results:
        if result.graceful is None:
            continue
        if result.graceful:
            console.print(f"{result.name}: stopped (pid {result.pid})")
        else:
            console.print(f"[yellow]warning:[/yellow] {result.name} (pid {result.pid}) ignored SIGTERM; killed")
    if all(r.graceful is None for r in results):
        console.print("nothing was running")


@app.command()
def status(as_json: JsonOption = False) -> None:
    """Show each service: pid, port, state (running/stopped/stale/unhealthy) and log file; exit 1 unless Kafka
    and Redis run."""
    try:
        rows = stack.status(load_settings())
    except HeraldError as exc:
        raise _fail(exc) from exc

    def table() -> Table:
        rich_table = Table(
            title="herald stack",
            caption="ray is optional (`herald stack up --with-ray`); without it the pipeline runs Ray in-process",
        )
        for column in ("service", "pid", "port", "state"):
            rich_table.add_column(column, no_wrap=True)
        rich_table.add_column("log", overflow="fold")
        for row in rows:
            port = str(row.port) if row.port else "-"
            state = f"[{_STATE_STYLE[row.state]}]{row.state}"
            rich_table.add_row(row.name, str(row.pid or "-"), port, state, str(row.log))
        return rich_table

    records = [
        {"service": r.name, "pid": r.pid, "port": r.port, "state": str(r.state), "log": str(r.log)} for r in rows
    ]
    show(records, as_json=as_json, columns=("service", "pid", "port", "state", "log"), table=table)
    if any(r.name in ("kafka", "redis") and str(r.state) != "running" for r in rows):
        raise typer.Exit(code=1)


@app.command()
def env() -> None:
    """Print `export HERALD_...=...` lines for the running stack: eval "$(herald stack env)"."""
    try:
        values = stack.env_vars(load_settings())
    except HeraldError as exc:
        raise _fail(exc) from exc
    for key, value in values.items():
        typer.echo(f"export {key}={shlex.quote(value)}")
