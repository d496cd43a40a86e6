"""The IN_APP live path: from a commit straight to the gateways that hold the user's connections.

The inbox, with its per-user `cursor`, is IN_APP's durable record; the live path only has to be fast and to
know when it missed something (docs/architecture.md, "IN_APP live path"):

- Presence: each gateway writes its id into the user's presence hash `herald:{u:U}:gw` (gateway id -> expiry
  in epoch ms) when the user's first connection arrives, refreshes it while the user stays, and removes it with
  the last connection. A gateway that dies stops refreshing and its entries lapse.
- The commit script reads the presence of every user it changes and PUBLISHes, atomically with the commit, one
  message per present gateway per script call on that gateway's own channel `herald:live:<gateway id>`: a
  JSON array of entries, one per user. No gateway hears about users it does not hold.
- Each entry carries the user's sequence number before and after the commit (`from`, `to`). A gateway that
  sees `from` differ from the `to` it saw last missed a commit (presence lapsed, a message was lost) and reads
  the gap from the inbox by cursor. A gateway that lost its subscription does the same for every user it holds.

Entries: {"u": user, "from": seq|null, "to": seq|null, "unread": n, "notes": [body, ...], "inbox": change|null,
"p": ms|null}; `p` is the Kafka timestamp of the newest event behind a commit (produce -> delivery metrics).
`from`/`to` are null for announcements that are not commits (a read made through a gateway).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from herald import keys

NOTIFICATION_EVENT = "notification"
# Internal event inside a gateway: a user's inbox changed by reads or deletes (from Kafka or another device).
# Gateways translate it into each connection's protocol and never send it as is.
INBOX_EVENT = "herald:inbox"
# How long a presence entry lives without a refresh; gateways refresh at a third of it.
PRESENCE_TTL_MS = 60_000


class MalformedLiveMessage(ValueError):
    """A message on a live channel that is not what the commit script writes."""


@dataclass(frozen=True, slots=True)
class LiveEntry:
    """What one commit (or one announcement) changed for one user, as a gateway receives it."""

    user_id: str
    from_seq: int | None
    to_seq: int | None
    unread: int | None
    notes: tuple[dict[str, Any], ...]
    inbox: dict[str, Any] | None
    produced_ms: int | None = None

    @property
    def is_commit(self) -> bool:
        return self.from_seq is not None and self.to_seq is not None


def _optional_int(raw: Mapping[str, Any], name: str) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedLiveMessage(f"`{name}` is not an integer")
    return value


def parse_message(data: bytes | str) -> list[LiveEntry]:
    """Entries of one live message; raises MalformedLiveMessage (a gateway logs and resyncs)."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedLiveMessage(f"not JSON: {exc}") from None
    if not isinstance(document, list):
        raise MalformedLiveMessage("not a JSON array of entries")
    entries = []
    for raw in document:
        if not isinstance(raw, dict) or not isinstance(raw.get("u"), str):
            raise MalformedLiveMessage("an entry without a user `u`")
        notes = raw.get("notes") or []
        inbox = raw.get("inbox")
        # Lua's cjson writes an empty table as {}: an empty note list can arrive as an object.
        if isinstance(notes, dict) and not notes:
            notes = []
        if not isinstance(notes, list) or not all(isinstance(n, dict) for n in notes):
            raise MalformedLiveMessage("`notes` is not a list of notification bodies")
        if inbox is not None and not isinstance(inbox, dict):
            raise MalformedLiveMessage("`inbox` is not an object")
        entries.append(
            LiveEntry(
                user_id=raw["u"],
                from_seq=_optional_int(raw, "from"),
                to_seq=_optional_int(raw, "to"),
                unread=_optional_int(raw, "unread"),
                notes=tuple(notes),
                inbox=inbox,
                produced_ms=_optional_int(raw, "p"),
            )
        )
    return entries


def encode_entry(
    user_id: str,
    *,
    notes: Sequence[Mapping[str, Any]] = (),
    inbox: dict[str, Any] | None = None,
    unread: int | None = None,
    from_seq: int | None = None,
    to_seq: int | None = None,
    produced_ms: int | None = None,
) -> dict[str, Any]:
    entry = {"u": user_id, "from": from_seq, "to": to_seq, "unread": unread, "notes": list(notes), "inbox": inbox}
    if produced_ms is not None:
        entry["p"] = produced_ms
    return entry


def live_gateways(presence: Mapping[str, str], now_ms: int) -> list[str]:
    """Gateways whose presence entry has not lapsed."""
    alive = []
    for gateway_id, expiry in presence.items():
        try:
            if int(expiry) > now_ms:
                alive.append(gateway_id)
        except ValueError:
            continue
    return sorted(alive)


async def announce(client: aioredis.Redis, user_id: str, entry: dict[str, Any], *, now_ms: int) -> int:
    """Publish one entry to every gateway holding `user_id` (not a commit: `from`/`to` stay null).

    Returns the number of gateways it was published to."""
    presence = await client.hgetall(keys.presence_key(user_id))
    gateways = live_gateways({_text(k): _text(v) for k, v in presence.items()}, now_ms)
    if not gateways:
        return 0
    message = orjson.dumps([entry])
    async with client.pipeline(transaction=False) as pipe:
        for gateway_id in gateways:
            pipe.publish(keys.live_channel(gateway_id), message)
        await pipe.execute()
    return len(gateways)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
