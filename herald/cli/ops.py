"""Operator commands: `herald topics ensure|describe`, `herald doctor`, `herald schema [--notification]`."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from herald.cli.output import JsonOption, show
from herald.config import load_settings
from herald.contracts import notification_json_schema
from herald.doctor import CheckResult, run_checks
from herald.errors import HeraldError
from herald.events import event_json_schema
from herald.topics import TopicReport, TopicStatus, describe_topics, ensure_topics

console = Console()
err_console = Console(stderr=True)
topics_app = typer.Typer(
    help="Create and check Herald's Kafka topics (docs/architecture.md, Kafka topics).", no_args_is_help=True
)

_STATUS_STYLE = {TopicStatus.CREATED: "cyan", TopicStatus.OK: "green", TopicStatus.DIFFERS: "red"}


def quiet_client_logs() -> None:
    """aiokafka logs every failed connection attempt; the CLI reports the outcome itself, once."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def fail(exc: HeraldError) -> typer.Exit:
    """Red one-line message and exit code 2: an error is the user's to fix, a traceback would not help."""
    err_console.print(f"[red]error:[/red] {exc}", highlight=False)
    return typer.Exit(code=2)


TOPIC_COLUMNS = ("topic", "status", "partitions", "configs", "differences")
DOCTOR_COLUMNS = ("check", "ok", "detail", "fix")


def _topics_table(title: str, reports: list[TopicReport]) -> Table:
    table = Table(title=title)
    for column in ("topic", "status", "partitions", "configs", "differences"):
        table.add_column(column)
    for r in reports:
        configs = ", ".join(f"{k}={v}" for k, v in r.configs.items())
        style = _STATUS_STYLE[r.status]
        table.add_row(r.name, f"[{style}]{r.status.value}[/]", str(r.partitions), configs, "\n".join(r.differences))
    return table


@topics_app.command("ensure")
def topics_ensure(
    replication_factor: Annotated[
        int | None,
        typer.Option(
            "--replication-factor", "-r", min=1, help="For new topics (default: the topic_replication_factor setting)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create missing topics with their documented configs; report existing ones that differ (exit 1)."""
    try:
        settings = load_settings()
        factor = replication_factor or settings.topic_replication_factor
        reports = asyncio.run(ensure_topics(settings, replication_factor=factor))
    except HeraldError as exc:
        raise fail(exc) from exc
    _show_topics("herald topics ensure", reports, as_json=as_json)
    if not all(r.ok for r in reports):
        raise typer.Exit(code=1)


def _show_topics(title: str, reports: list[TopicReport], *, as_json: bool) -> None:
    rows = [
        {
            "topic": r.name,
            "status": r.status.value,
            "partitions": r.partitions,
            "configs": dict(r.configs),
            "differences": list(r.differences),
        }
        for r in reports
    ]
    show(rows, as_json=as_json, columns=TOPIC_COLUMNS, table=lambda: _topics_table(title, reports))


@topics_app.command("describe")
def topics_describe(as_json: JsonOption = False) -> None:
    """Compare the cluster's topics with the documented ones without changing anything (exit 1 on drift)."""
    try:
        reports = asyncio.run(describe_topics(load_settings()))
    except HeraldError as exc:
        raise fail(exc) from exc
    _show_topics("herald topics", reports, as_json=as_json)
    if not all(r.ok for r in reports):
        raise typer.Exit(code=1)


def doctor(as_json: JsonOption = False) -> None:
    """Check Kafka, topics, Redis and Ray; print how to fix what fails (exit 1 if anything does)."""
    try:
        results = asyncio.run(run_checks(load_settings()))
    except HeraldError as exc:
        raise fail(exc) from exc
    rows = [{"check": r.name, "ok": r.ok, "detail": r.detail, "fix": r.fix} for r in results]
    document = {"ok": all(r.ok for r in results), "checks": rows}
    show(rows, as_json=as_json, columns=DOCTOR_COLUMNS, table=lambda: _doctor_table(results), document=document)
    if not all(r.ok for r in results):
        raise typer.Exit(code=1)


def _doctor_table(results: list[CheckResult]) -> Table:
    table = Table(title="herald doctor")
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for r in results:
        status = "[green]ok[/]" if r.ok else "[red]FAIL[/]"
        table.add_row(r.name, status, r.detail, r.fix)
    return table


def schema_text(*, notification: bool = False) -> str:
    """The JSON Schema `herald schema` prints; docs/schema/*.schema.json hold the same text (a unit test checks)."""
    document = notification_json_schema() if notification else event_json_schema()
    return json.dumps(document, indent=2) + "\n"


def schema(
    notification: Annotated[
        bool,
        typer.Option(
            "--notification", help="The notification body clients receive (and the inbox stores), not the input event."
        ),
    ] = False,
) -> None:
    """Print the JSON Schema of notification events, for producers in other languages (or, with --notification,
    of the notifications clients receive)."""
    # print(), not Rich: the output is meant to be piped into a file or another tool byte-for-byte.
    print(schema_text(notification=notification), end="")


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the top-level app."""
    quiet_client_logs()
    app.add_typer(topics_app, name="topics")
    app.command("doctor")(doctor)
    app.command("schema")(schema)
