"""Pipeline commands: `herald run` (the pipeline alone), `herald inbox` (a user's inbox from Redis), `herald demo`."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table

from herald.cli.ops import fail
from herald.cli.output import JsonOption, show
from herald.config import load_settings
from herald.errors import HeraldError, StoreError
from herald.redaction import redact_url
from herald.store_redis import RedisStore

console = Console()


def run(
    seconds: Annotated[
        float | None, typer.Option(help="Drain and stop after this long (default: until Ctrl-C).")
    ] = None,
) -> None:
    """Run the pipeline against the configured (or running local) stack until SIGTERM or Ctrl-C."""
    import pipeline  # noqa: PLC0415 - Ray is imported only by the commands that run it

    try:
        pipeline.main(seconds=seconds)
    except HeraldError as exc:
        raise fail(exc) from exc


def inbox(
    user: Annotated[str, typer.Option("--user", "-u", help="The user whose inbox to print.")],
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many of the newest notifications.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Print a user's inbox from Redis, newest first (`--json`: {userId, unread, notifications: [bodies]})."""
    settings = load_settings()

    async def read() -> tuple[list[dict[str, object]], int]:
        store = RedisStore.from_url(settings.redis_url)
        try:
            return await store.notifications_before(user, None, limit), await store.unread_count(user)
        except RedisError as exc:
            # The URL may carry the password: the message names Redis by its redacted URL only.
            raise StoreError(f"reading the inbox from Redis at {redact_url(settings.redis_url)} failed: {exc}") from exc
        finally:
            await store.close()

    try:
        notes, unread = asyncio.run(read())
    except HeraldError as exc:
        raise fail(exc) from exc

    def table() -> Table:
        rich_table = Table(title=f"inbox of {user}: {len(notes)} shown, {unread} unread")
        for column in ("cursor", "version", "count", "text", "read", "updated"):
            rich_table.add_column(column)
        for note in notes:
            rich_table.add_row(
                str(note["cursor"]),
                str(note["version"]),
                str(note["count"]),
                str(note["text"]),
                "yes" if note["read"] else "[bold]no[/bold]",
                str(note["updatedAt"]),
            )
        return rich_table

    columns = ("cursor", "id", "version", "count", "read", "updatedAt", "text")
    document = {"userId": user, "unread": unread, "notifications": notes}
    show(notes, as_json=as_json, columns=columns, table=table, document=document)


def demo(
    seconds: Annotated[float | None, typer.Option(help="End by itself after this long (scripted runs).")] = None,
    users: Annotated[int, typer.Option(min=10, help="How many recipients the traffic spreads over.")] = 300,
    rate: Annotated[float, typer.Option(min=1, help="Events per second the demo producer publishes.")] = 100,
    watch: Annotated[int, typer.Option(min=1, max=8, help="How many users get a live Socket.IO client.")] = 4,
) -> None:
    """Run the whole system locally: pipeline, gateway, a producer and live Socket.IO clients in a terminal view."""
    from herald.cli.demo import run_demo  # noqa: PLC0415 - Ray is imported only by the commands that run it

    try:
        run_demo(load_settings(), seconds=seconds, users=users, rate=rate, watch=watch)
    except HeraldError as exc:
        raise fail(exc) from exc


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(inbox)
    app.command()(demo)
