"""`herald dlq list|show|redrive`: what was dead-lettered, why, and sending it back once it can succeed.

On a terminal `list` prints a table; piped, one tab-separated line per entry with full values; `--json` prints one
JSON document. Exit code 0, or 1 when Kafka or Redis cannot be reached, 2 for bad input.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from herald.cli.ops import fail
from herald.cli.output import JsonOption
from herald.cli.output import show as show_state
from herald.config import load_settings
from herald.dlq_admin import DeadLetter, read_dead_letter, read_dead_letters, redrive
from herald.errors import HeraldError

T = TypeVar("T")

app = typer.Typer(help="The dead-letter topic: list, show and redrive entries.", no_args_is_help=True)
console = Console()


def _letters(limit: int | None = None) -> list[DeadLetter]:
    return _read(read_dead_letters(load_settings(), limit=limit))


def _coordinates(ref: str) -> tuple[int, int]:
    partition, _, offset = ref.partition(":")
    if not (partition.isascii() and partition.isdigit() and offset.isascii() and offset.isdigit()):
        raise fail(HeraldError(f"not a partition:offset: {ref!r}"))
    return int(partition), int(offset)


def _read(reading: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(reading)
    except HeraldError as exc:
        raise fail(exc) from exc
    except Exception as exc:
        console.print(f"[red]error:[/red] cannot read the dead-letter topic: {exc}", highlight=False)
        raise typer.Exit(code=1) from exc


@app.command("list")
def list_letters(
    limit: Annotated[int, typer.Option(help="The newest N entries.")] = 50,
    stage: Annotated[str | None, typer.Option(help="Only this stage, e.g. reader or delivery:EMAIL.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Dead-lettered entries, oldest first: where, when, which stage and why."""
    letters = [d for d in _letters(limit) if stage is None or d.stage == stage]

    def table() -> Table:
        rich_table = Table(title=f"notification-dlq ({len(letters)} entries)")
        for column in ("ref", "stage", "key", "reason"):
            rich_table.add_column(column, overflow="fold")
        for d in letters:
            rich_table.add_row(d.ref, d.stage, d.key or "", d.reason)
        return rich_table

    rows = [d.to_json() for d in letters]
    show_state(rows, as_json=as_json, columns=("ref", "timestampMs", "stage", "key", "reason"), table=table)


@app.command("show")
def show_letter(ref: Annotated[str, typer.Argument(help="partition:offset, as `dlq list` prints it.")]) -> None:
    """One entry in full, with its value, as JSON."""
    letter = _read(read_dead_letter(load_settings(), *_coordinates(ref)))
    if letter is None:
        console.print(f"[red]error:[/red] no dead letter {ref}", highlight=False)
        raise typer.Exit(code=2)
    print(json.dumps(letter.to_json(with_value=True), indent=2))


@app.command("redrive")
def redrive_letters(
    refs: Annotated[list[str] | None, typer.Argument(help="partition:offset of each entry, or use --stage.")] = None,
    stage: Annotated[str | None, typer.Option(help="Every entry of this stage, e.g. delivery:EMAIL.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Send entries back: failed deliveries to their channel's outbox, refused events to the events topic.
    An entry redriven before is left alone, so running this twice sends nothing twice."""
    if not refs and stage is None:
        raise fail(HeraldError("name entries (partition:offset) or a --stage"))
    if stage is None:  # only the named entries: read each, not the whole topic
        named = [_read(read_dead_letter(load_settings(), *_coordinates(ref))) for ref in refs or ()]
        letters = [d for d in named if d is not None]
    else:
        letters = [d for d in _letters() if (refs and d.ref in refs) or d.stage == stage]
    missing = sorted(set(refs or ()) - {d.ref for d in letters})
    if missing:
        raise fail(HeraldError(f"no dead letter {', '.join(missing)}"))
    try:
        result = asyncio.run(redrive(load_settings(), letters))
    except Exception as exc:
        console.print(f"[red]error:[/red] redrive stopped: {exc}", highlight=False)
        raise typer.Exit(code=1) from exc
    if as_json:
        print(json.dumps({"redriven": result.redriven, "already": result.already, "refused": result.refused}))
        return
    print(f"redriven {len(result.redriven)}, already redriven {len(result.already)}, refused {len(result.refused)}")
    for ref, why in result.refused.items():
        print(f"  {ref}: {why}")
