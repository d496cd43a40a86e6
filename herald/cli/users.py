"""User directory commands: `herald users import FILE` and `herald users get ID...`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from herald.cli.ops import fail
from herald.config import load_settings
from herald.contacts import Contact, ContactBook
from herald.directory import RedisUserDirectory, UserProfile
from herald.directory_files import load_users
from herald.errors import HeraldError, StoreError
from herald.redis_pool import redis_client

console = Console()
err_console = Console(stderr=True)
app = typer.Typer(help="The user directory that names actors in notifications.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _unreachable(exc: StoreError) -> typer.Exit:
    """Exit 1, not fail()'s 2: the input was fine, Redis was not; running again later may work."""
    err_console.print(f"[red]error:[/red] {exc}", highlight=False)
    return typer.Exit(code=1)


def _directory() -> RedisUserDirectory:
    settings = load_settings()
    return RedisUserDirectory.from_url(settings.redis_url, timeout_s=settings.connect_timeout_s)


async def _remember(profiles: list[UserProfile], contacts: list[Contact]) -> tuple[int, int]:
    directory = _directory()
    client = redis_client(load_settings().redis_url, decode_responses=True)
    try:
        written = await directory.remember(profiles)
        try:
            with_contacts = await ContactBook(client).save(contacts)
        except RedisError as exc:
            raise StoreError(f"cannot write contacts to Redis: {exc}") from exc
        return written, with_contacts
    finally:
        await directory.close()
        await client.aclose()


async def _lookup(user_ids: Sequence[str]) -> dict[str, UserProfile]:
    directory = _directory()
    try:
        return await directory.lookup(user_ids)
    finally:
        await directory.close()


@app.command("import")
def import_profiles(
    file: Annotated[
        Path,
        typer.Argument(help="JSON Lines (.jsonl/.ndjson), a JSON array (.json) or CSV with a header; `-` is stdin."),
    ],
    as_json: JsonOption = False,
) -> None:
    """Add or update profiles: a new name replaces the stored one, a missing avatar keeps the stored one.

    Optional columns email, phone (E.164), locale, timezone (IANA) and webhookUrl are the user's contact details
    for the email, SMS and webhook channels."""
    try:
        # Parse the whole file first: a bad row on line 90 000 must not leave the first 89 999 imported.
        users = load_users(file)
        profiles = [u.profile for u in users]
        written, with_contacts = asyncio.run(_remember(profiles, [u.contact for u in users]))
    except StoreError as exc:
        raise _unreachable(exc) from exc
    except HeraldError as exc:
        raise fail(exc) from exc
    skipped = len(profiles) - written
    if as_json:
        print(json.dumps({"read": len(profiles), "written": written, "skipped": skipped, "contacts": with_contacts}))
        return
    note = f" ({skipped} without a name or avatar skipped)" if skipped else ""
    console.print(f"[green]wrote {written} profile(s)[/] to the user directory{note}", highlight=False)
    if with_contacts:
        console.print(f"[green]wrote contact details of {with_contacts} user(s)[/]", highlight=False)


@app.command("get")
def get(
    user_ids: Annotated[list[str], typer.Argument(metavar="ID...", help="User ids to look up.")],
    as_json: JsonOption = False,
) -> None:
    """Show what the directory knows of users; unknown ids are listed as such (null in --json)."""
    try:
        found = asyncio.run(_lookup(user_ids))
    except StoreError as exc:
        raise _unreachable(exc) from exc
    except HeraldError as exc:
        raise fail(exc) from exc
    if as_json:
        print(json.dumps({uid: found[uid].to_json() if uid in found else None for uid in user_ids}))
    elif console.is_terminal:
        console.print(_table(user_ids, found))
    else:
        # Pipes get every value whole (a table would fold long URLs): id, name, avatarUrl; empty when unknown.
        for uid in user_ids:
            profile = found.get(uid)
            print("\t".join([uid, (profile and profile.name) or "", (profile and profile.avatar_url) or ""]))


def _table(user_ids: Sequence[str], found: dict[str, UserProfile]) -> Table:
    table = Table(title="herald users")
    for column in ("id", "name", "avatarUrl"):
        table.add_column(column, overflow="fold")
    for uid in user_ids:
        # Text, not markup strings: a name like "[bold]x" is data, not styling.
        profile = found.get(uid)
        if profile is None:
            table.add_row(Text(uid), Text("not in the directory", style="dim"), "")
        else:
            table.add_row(Text(uid), Text(profile.name or "-"), Text(profile.avatar_url or "-"))
    return table
