"""Durable deferral and digests for the external channels, kept in Redis beside the outbox they feed.

A delivery that must wait (quiet hours) or join a digest leaves its outbox stream and enters a schedule in one
Lua call, so a crash leaves it either pending in the stream (delivered again) or held (released later), never
both and never neither. Releasing moves due members back into the stream, each once: ZREM decides who moves it
when several delivery actors release at the same time. The keys share the outbox shard's hash tag, so both
scripts run on Redis Cluster (docs/channels.md, "Deferral and digests").
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.typing import EncodableT

from herald import keys

_SCRIPTS = importlib.resources.files("herald").joinpath("lua")
_HOLD = _SCRIPTS.joinpath("schedule_hold.lua").read_text()
_RELEASE = _SCRIPTS.joinpath("schedule_release.lua").read_text()
DIGEST_CAP = 200  # items one digest keeps (the newest); the count still says how many arrived
RELEASE_BATCH = 200


def schedule_key(channel: str, shard: int) -> str:
    return f"herald:sched:{channel}:{{o:{shard}}}"


def digest_prefix(channel: str, shard: int) -> str:
    return f"herald:digest:{channel}:{{o:{shard}}}:"


def shard_of_stream(stream: str) -> int:
    """The shard number in an outbox stream's hash tag, `herald:outbox:EMAIL:{o:3}` -> 3."""
    return int(stream.rsplit("{o:", 1)[1].rstrip("}"))


class Schedule:
    def __init__(self, client: aioredis.Redis, channel: str) -> None:
        self._redis = client
        self._channel = channel
        self._hold = client.register_script(_HOLD)
        self._release = client.register_script(_RELEASE)

    async def defer(self, stream: str, entry_id: str, fields: dict[str, str], due_ms: int) -> bool:
        """Hold an outbox entry until `due_ms`; False if it was no longer pending for this consumer."""
        shard = shard_of_stream(stream)
        member = orjson.dumps({"id": fields["id"], "u": fields["u"], "d": fields["d"]}).decode()
        args: list[EncodableT] = [keys.OUTBOX_GROUP, entry_id, "defer", due_ms, member, "", DIGEST_CAP]
        key_list = [stream, schedule_key(self._channel, shard), digest_prefix(self._channel, shard)]
        return bool(await self._hold(keys=key_list, args=args))

    async def add_to_digest(self, stream: str, entry_id: str, fields: dict[str, str], due_ms: int) -> bool:
        """Move an outbox entry into the user's next digest on this channel, leaving at `due_ms` at the latest."""
        shard = shard_of_stream(stream)
        user = fields["u"]
        key_list = [stream, schedule_key(self._channel, shard), digest_prefix(self._channel, shard) + user]
        args: list[EncodableT] = [
            keys.OUTBOX_GROUP,
            entry_id,
            "digest",
            due_ms,
            fields["d"],
            f"digest|{user}",
            DIGEST_CAP,
        ]
        return bool(await self._hold(keys=key_list, args=args))

    async def release_due(self, shards: Iterable[int], now_ms: int) -> int:
        """Move every due deferral and digest of these shards back into the outbox; returns how many moved."""
        moved = 0
        for shard in shards:
            key_list = [schedule_key(self._channel, shard), keys.outbox_key(self._channel, shard)]
            args: list[EncodableT] = [now_ms, RELEASE_BATCH, digest_prefix(self._channel, shard), self._channel]
            moved += int(await self._release(keys=key_list, args=args))
        return moved

    async def pending(self, shards: Iterable[int]) -> int:
        """Deferred deliveries and digests waiting (for health and tests)."""
        total = 0
        for shard in shards:
            total += int(await self._redis.zcard(schedule_key(self._channel, shard)))
        return total


def latest_versions(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A digest shows each notification once, at its newest version, newest first."""
    newest: dict[str, dict[str, Any]] = {}
    for item in items:
        key = str(item.get("id"))
        if key not in newest or int(item.get("version", 0)) >= int(newest[key].get("version", 0)):
            newest[key] = item
    return sorted(newest.values(), key=lambda n: str(n.get("updatedAt", "")), reverse=True)
