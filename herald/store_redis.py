"""The Redis InboxStore: pipelined reads, one atomic Lua commit per user per batch (which also publishes the
IN_APP live entries to the gateways holding the users, see herald/live.py), inbox queries."""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from typing import Any, TypeVar, cast

import orjson
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, OutOfMemoryError, ReadOnlyError, RedisError, ResponseError

from herald import keys
from herald.errors import StoreError
from herald.grouping import GroupState
from herald.redis_pool import redis_client
from herald.store import UserChange, UserQuery, UserSnapshot

T = TypeVar("T")

_SCRIPTS = importlib.resources.files("herald").joinpath("lua")
_LOAD_SCRIPT = _SCRIPTS.joinpath("load_users.lua").read_text()
_COMMIT_SCRIPT = _SCRIPTS.joinpath("commit_users.lua").read_text()
# Users per script call: big enough that per-call overhead vanishes, small enough that one call holds Redis for
# only a few milliseconds. (On Redis Cluster, calls would have to be grouped per hash slot instead.)
USERS_PER_CALL = 200


# Error replies that say nothing about the request itself: the script cache was flushed, a replica is being
# promoted, memory is full. Every other error reply (a script error, WRONGTYPE) would repeat on a retry.
_TRANSIENT_REPLIES = (NoScriptError, ReadOnlyError, OutOfMemoryError)


def store_error(what: str, exc: RedisError) -> StoreError:
    """A StoreError for a failed Redis call, retriable unless Redis refused the request itself."""
    refused = isinstance(exc, ResponseError) and not isinstance(exc, _TRANSIENT_REPLIES)
    return StoreError(f"{what} failed: {exc}", retriable=not refused)


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class RedisStore:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        inbox_capacity: int = 500,
        dedup_horizon_ms: int = 8 * 24 * 3600 * 1000,
        outbox_shards: int = 8,
    ) -> None:
        self._redis = client
        self._capacity = inbox_capacity
        self._horizon_ms = dedup_horizon_ms
        self.outbox_shards = outbox_shards
        self._load = client.register_script(_LOAD_SCRIPT)
        self._commit = client.register_script(_COMMIT_SCRIPT)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        return cls(redis_client(url, decode_responses=True), **options)

    async def close(self) -> None:
        await self._redis.aclose()

    async def load(self, queries: Sequence[UserQuery]) -> list[UserSnapshot]:
        chunks = _chunks(queries, USERS_PER_CALL)
        calls: list[tuple[list[str], list[str]]] = []
        for chunk in chunks:
            call_keys: list[str] = []
            spec = []
            for query in chunk:
                user = query.user_id
                call_keys += [keys.seq_key(user), keys.seen_key(user), keys.aliases_key(user)]
                call_keys += [keys.group_state_key(user, g) for g in query.group_keys]
                spec.append([len(query.group_keys), list(query.event_ids), list(query.referenced_ids)])
            calls.append((call_keys, [orjson.dumps(spec).decode()]))
        try:
            replies = await self._run(self._load, calls)
        except RedisError as exc:
            raise store_error("loading user state from Redis", exc) from exc
        snapshots = []
        for chunk, reply in zip(chunks, replies, strict=True):
            for query, (seq, scores, states, held_by) in zip(chunk, reply, strict=True):
                seen = frozenset(e for e, score in zip(query.event_ids, scores or [], strict=False) if score)
                groups = {
                    g: GroupState.from_json(orjson.loads(raw))
                    for g, raw in zip(query.group_keys, states or [], strict=False)
                    if raw
                }
                aliases = {i: n for i, n in zip(query.referenced_ids, held_by or [], strict=False) if n}
                snapshots.append(UserSnapshot(query.user_id, int(seq), seen, groups, aliases))
        return snapshots

    def _user_ops(self, change: UserChange, call_keys: list[str], blobs: list[str]) -> dict[str, Any]:
        """The ops of one user; appends the keys they use to call_keys (indexes relative to `base`) and the
        JSON documents they write to blobs (ARGV indexes; ARGV[1] is the ops document itself)."""

        def blob(document: str) -> str:
            blobs.append(document)
            return str(len(blobs) + 1)

        user = change.user_id
        base = len(call_keys)
        call_keys += [
            keys.seq_key(user),
            keys.seen_key(user),
            keys.inbox_key(user),
            keys.bodies_key(user),
            keys.unread_key(user),
            keys.preferences_key(user),
            keys.aliases_key(user),
            keys.presence_key(user),
        ]
        groups = []
        for group, (state, ttl_ms) in change.groups.items():
            call_keys.append(keys.group_state_key(user, group))
            groups.append(
                [str(len(call_keys) - base), blob(orjson.dumps(state.to_json()).decode()), str(max(ttl_ms, 1))]
            )
        bodies = {b["id"]: blob(orjson.dumps(b).decode()) for b in change.notifications}
        read_now = set(change.read_in_batch)
        streams: dict[str, str] = {}
        outbox = []
        shard = keys.outbox_shard_of(user, self.outbox_shards)
        for entry in change.outbox:
            stream = keys.outbox_key(entry.channel, shard)
            if stream not in streams:
                call_keys.append(stream)
                streams[stream] = str(len(call_keys) - base)
            # An inbox change (reads, deletes) is no notification body: it has no id and is sent as it is.
            payload = bodies.get(str(entry.payload.get("id"))) or blob(orjson.dumps(entry.payload).decode())
            outbox.append([streams[stream], entry.delivery_id, user, payload])
        return {
            "base": str(base),
            "expected": str(change.expected_seq),
            "seq": str(change.new_seq),
            "seen": change.seen_event_ids,
            "groups": groups,
            "notes": [
                [b["id"], str(b["cursor"]), bodies[b["id"]], "0" if b["id"] in read_now else "1"]
                for b in change.notifications
            ],
            "readall": change.read_all_before,
            "read": change.read_ids,
            "deleted": change.deleted_ids,
            "aliases": [part for pair in change.aliases.items() for part in pair],
            "prefs": blob(orjson.dumps(change.preferences).decode()) if change.preferences is not None else None,
            "outbox": outbox,
            "user": user,
            "live": [bodies[i] for i in change.live_ids],
            "inbox": blob(orjson.dumps(change.live_inbox).decode()) if change.live_inbox is not None else None,
            "produced": str(change.produced_ms) if change.produced_ms is not None else None,
        }

    async def commit(self, changes: Sequence[UserChange], *, now_ms: int) -> list[bool]:
        calls: list[tuple[list[str], list[str]]] = []
        for chunk in _chunks(changes, USERS_PER_CALL):
            call_keys: list[str] = []
            blobs: list[str] = []
            users = [self._user_ops(change, call_keys, blobs) for change in chunk]
            batch = {
                "now": str(now_ms),
                "horizon": str(self._horizon_ms),
                "cap": str(self._capacity),
                "live_prefix": keys.live_channel(""),
                "users": users,
            }
            calls.append((call_keys, [orjson.dumps(batch).decode(), *blobs]))
        try:
            replies = await self._run(self._commit, calls)
        except RedisError as exc:
            raise store_error("committing to Redis", exc) from exc
        return [int(flag) == 1 for reply in replies for flag in reply]

    async def _run(self, script: AsyncScript, calls: Sequence[tuple[list[str], list[str]]]) -> list[Any]:
        """One script call per chunk. A single call goes straight out as EVALSHA: in a pipeline, redis-py would
        first ask SCRIPT EXISTS, a round trip more on every batch."""
        if len(calls) == 1:
            [(call_keys, args)] = calls
            return [await script(keys=call_keys, args=args)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for call_keys, args in calls:
                await script(keys=call_keys, args=args, client=pipe)
            return await pipe.execute()

    async def _views(self, user_id: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.bodies_key(user_id), list(ids))
            pipe.smismember(keys.unread_key(user_id), list(ids))
            bodies, unread = await pipe.execute()
        return [
            orjson.loads(body) | {"read": not is_unread}
            for body, is_unread in zip(bodies, unread, strict=True)
            if body is not None
        ]

    async def notifications_after(self, user_id: str, cursor: int, limit: int) -> list[dict[str, Any]]:
        ids = cast(
            list[str],
            await self._redis.zrangebyscore(keys.inbox_key(user_id), f"({cursor}", "+inf", start=0, num=limit),
        )
        return await self._views(user_id, ids)

    async def notifications_before(self, user_id: str, cursor: int | None, limit: int) -> list[dict[str, Any]]:
        upper = "+inf" if cursor is None else f"({cursor}"
        ids = cast(
            list[str], await self._redis.zrevrangebyscore(keys.inbox_key(user_id), upper, "-inf", start=0, num=limit)
        )
        return await self._views(user_id, ids)

    async def unread_count(self, user_id: str) -> int:
        return int(await self._redis.scard(keys.unread_key(user_id)))

    async def mark_read(self, user_id: str, ids: Sequence[str] | None) -> int:
        unread = keys.unread_key(user_id)
        if ids:
            held_by = cast(list[str | None], await self._redis.hmget(keys.aliases_key(user_id), list(ids)))
            ids = list({*ids, *(n for n in held_by if n)})
        async with self._redis.pipeline(transaction=True) as pipe:
            if ids is None:
                pipe.delete(unread)
            elif ids:
                pipe.srem(unread, *ids)
            pipe.scard(unread)
            replies = await pipe.execute()
        return int(replies[-1])
