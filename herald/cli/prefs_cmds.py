"""`herald prefs get|set`: a user's delivery preferences (herald/preferences.py).

`set` validates and publishes a PREFERENCES_UPDATED event, so the change takes the pipeline's path (ordered with
the user's other events, stored by the aggregator); `get` reads what is stored. Both print JSON.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Annotated, Any

import orjson
import redis.asyncio as aioredis
import typer

from herald import keys
from herald.cli.ops import fail
from herald.config import load_settings
from herald.errors import HeraldError
from herald.preferences import Preferences, parse_preferences
from herald.producer import NotificationProducer

app = typer.Typer(help="Per-user delivery preferences.", no_args_is_help=True)


async def _stored(user_id: str) -> dict[str, Any] | None:
    client = aioredis.Redis.from_url(load_settings().redis_url)
    try:
        raw = await client.get(keys.preferences_key(user_id))
    finally:
        await client.aclose()
    return orjson.loads(raw) if raw else None


@app.command("get")
def get(user_id: Annotated[str, typer.Argument(help="The user.")]) -> None:
    """The stored preferences as JSON, with the defaults filled in (`stored` false when none were set)."""
    try:
        stored = asyncio.run(_stored(user_id))
    except Exception as exc:
        typer.echo(f"error: cannot read preferences: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    prefs = parse_preferences(stored) if stored is not None else Preferences()
    print(json.dumps({"userId": user_id, "stored": stored is not None, "preferences": prefs.to_json()}))


@app.command("set")
def set_(
    user_id: Annotated[str, typer.Argument(help="The user.")],
    preferences: Annotated[str, typer.Argument(help='JSON, e.g. {"digest": "daily"}')],
) -> None:
    """Replace a user's preferences (validated first; a bad field is named and nothing is sent)."""
    try:
        prefs = parse_preferences(orjson.loads(preferences))
    except orjson.JSONDecodeError as exc:
        raise fail(HeraldError(f"preferences are not valid JSON: {exc}")) from exc
    except HeraldError as exc:
        raise fail(exc) from exc
    event = {
        "eventId": f"prefs-{uuid.uuid4()}",
        "type": "PREFERENCES_UPDATED",
        "userId": user_id,
        "preferences": prefs.to_json(),
    }

    async def publish() -> None:
        async with NotificationProducer(load_settings()) as producer:
            await producer.publish(event)

    try:
        asyncio.run(publish())
    except HeraldError as exc:
        raise fail(exc) from exc
    print(json.dumps({"userId": user_id, "published": True, "preferences": prefs.to_json()}))
