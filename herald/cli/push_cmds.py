"""`herald push register|list|remove`: a user's push subscriptions (browsers register them themselves with the
Socket.IO event `register_push`; this is for scripts, support and tests). Output is JSON."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import orjson
import redis.asyncio as aioredis
import typer

from herald.cli.ops import fail
from herald.config import load_settings
from herald.errors import HeraldError, StoreError
from herald.push_subscriptions import PushSubscriptionStore, subscription_key

app = typer.Typer(help="Push subscriptions per user (Web Push and FCM).", no_args_is_help=True)
T = TypeVar("T")


def _run(action: Callable[[PushSubscriptionStore], Awaitable[T]]) -> T:
    async def go() -> T:
        client = aioredis.Redis.from_url(load_settings().redis_url)
        try:
            return await action(PushSubscriptionStore(client))
        finally:
            await client.aclose()

    try:
        return asyncio.run(go())
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    except HeraldError as exc:
        raise fail(exc) from exc


@app.command("register")
def register(
    user_id: Annotated[str, typer.Argument(help="The user.")],
    subscription: Annotated[str, typer.Argument(help='PushSubscription JSON, or {"fcmToken": "..."}')],
) -> None:
    """Add (or refresh) a subscription; it is checked first, a bad field is named."""
    try:
        raw: Any = orjson.loads(subscription)
    except orjson.JSONDecodeError as exc:
        raise fail(HeraldError(f"the subscription is not valid JSON: {exc}")) from exc
    stored = _run(lambda store: store.add(user_id, raw))
    print(json.dumps({"userId": user_id, "registered": subscription_key(stored)}))


@app.command("list")
def list_subscriptions(user_id: Annotated[str, typer.Argument(help="The user.")]) -> None:
    """The user's subscriptions, each with the key `remove` takes."""
    found = _run(lambda store: store.list_for([user_id]))[user_id]
    print(json.dumps([{"key": subscription_key(s), **s} for s in found]))


@app.command("remove")
def remove(
    user_id: Annotated[str, typer.Argument(help="The user.")],
    key: Annotated[str, typer.Argument(help="The subscription's key, as `push list` prints it.")],
) -> None:
    removed = _run(lambda store: store.remove(user_id, key))
    print(json.dumps({"userId": user_id, "removed": removed}))
    if not removed:
        raise typer.Exit(code=2)
