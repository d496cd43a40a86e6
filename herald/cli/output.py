"""How commands that show state print it: a Rich table on a terminal; piped, one tab-separated line per row with
full values (a table cut to 80 columns would break `grep` and `cut`); with `--json`, one JSON document on stdout
and nothing else."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]
console = Console()


def show(
    rows: Sequence[dict[str, Any]],
    *,
    as_json: bool,
    columns: Sequence[str],
    table: Callable[[], Table],
    document: Any = None,
) -> None:
    """`rows` (dicts keyed by `columns`) in the form the reader wants; `document` is the JSON form when it is
    not simply the rows."""
    if as_json:
        print(json.dumps(rows if document is None else document, default=str))
    elif not sys.stdout.isatty():
        for row in rows:
            print("\t".join(_cell(row.get(c)) for c in columns))
    else:
        console.print(table())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "; ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value).replace("\t", " ").replace("\n", " ")


@contextmanager
def progress(total: int | None, label: str) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar on stderr while a long operation runs, when stderr is a terminal; piped or in a script,
    nothing (the bar would be noise in a log). Yields `advance(n)`."""
    bar_console = Console(stderr=True)
    if not bar_console.is_terminal:
        yield lambda _n: None
        return
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=bar_console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
