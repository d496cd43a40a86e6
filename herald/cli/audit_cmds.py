"""`herald audit --user U [--notification ID]`: a user's notification trail (herald/audit.py).

On a terminal a table per notification; piped, one tab-separated line per trail item (notification, kind, time,
ref, what, detail); `--json` one document. Exit code 0 when the trail agrees with Redis, 1 when it does not (or a
named notification has no trail, or Kafka/Redis cannot be reached), 2 for bad input.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from herald.audit import USER_LEVEL, AuditReport, trail_rows
from herald.audit_read import audit_user
from herald.cli.history import err_console, now_ms, run_or_exit, settings_or_exit, time_or_exit
from herald.cli.output import JsonOption, show

console = Console()
COLUMNS = ("notification", "kind", "time", "ref", "what", "detail")


def audit(
    user: Annotated[str, typer.Option("--user", "-u", help="Whose notifications.")],
    notification: Annotated[
        str | None, typer.Option("--notification", "-n", help="Only this notification (Herald's or the app's id).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="From this time (ISO-8601, 2h, 7d); default the log start, and then the "
            "trail is checked against Redis."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The trail of a user's notifications: source events (offsets, times), each version they produced, each
    delivery attempt and its outcome, and whether Redis holds what the events add up to."""
    settings = settings_or_exit()
    since_ms = time_or_exit(since, now_ms=now_ms())
    report = run_or_exit(audit_user(settings, user, since_ms=since_ms), "audit")
    if notification is not None:
        report = report.select(notification)
        if not report.trails:
            err_console.print(f"[red]error:[/red] no trail of notification {notification} for user {user}")
            raise typer.Exit(code=1)
    rows = trail_rows(report)
    show(rows, as_json=as_json, columns=COLUMNS, table=lambda: _tables(report, rows), document=report.to_json())
    if not report.consistent:
        raise typer.Exit(code=1)


def _tables(report: AuditReport, rows: list[dict[str, str]]) -> Table:
    """A table per notification, printed as they are built; the last one is returned for show() to print."""
    titles = {t.id: f"{t.id}  {t.type}  {_target(t.target)}" for t in report.trails}
    titles[USER_LEVEL] = f"user {report.user}: bulk reads, preferences, digests and other events"
    tables: list[Table] = []
    for notification_id, title in titles.items():
        mine = [r for r in rows if r["notification"] == notification_id]
        if not mine:
            continue
        table = Table(title=title, title_justify="left")
        for column in COLUMNS[1:]:
            table.add_column(column, overflow="fold")
        for row in mine:
            table.add_row(*(str(row[c]) for c in COLUMNS[1:]))
        tables.append(table)
    console.print(
        f"audit of {report.user}: partition {report.partition} of {report.events_topic}, "
        f"{report.records_scanned} records since {report.since or 'the log start'}"
    )
    for table in tables[:-1]:
        console.print(table)
    return tables[-1] if tables else Table(title="no events for this user")


def _target(target: dict[str, object] | None) -> str:
    if not target:
        return ""
    return f"{target.get('type', '')}/{target.get('id', '')}"


def register(app: typer.Typer) -> None:
    app.command()(audit)
