"""The Redis InboxStore: pipelined reads, one atomic Lua commit per user per batch, inbox queries."""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from herald import keys
from herald.aggregation import GroupState
from herald.errors import StoreError
from herald.store import UserChange, UserQuery, UserSnapshot

_COMMIT_SCRIPT = importlib.resources.files("herald").joinpath("lua/commit_user.lua").read_text()
_FIXED_KEYS = 6


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
        self._commit = client.register_script(_COMMIT_SCRIPT)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        return cls(aioredis.Redis.from_url(url, decode_responses=True), **options)

    async def close(self) -> None:
        await self._redis.aclose()

    async def load(self, queries: Sequence[UserQuery]) -> list[UserSnapshot]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for query in queries:
                    pipe.get(keys.seq_key(query.user_id))
                    if query.event_ids:
                        pipe.zmscore(keys.seen_key(query.user_id), list(query.event_ids))
                    if query.group_keys:
                        pipe.mget([keys.group_state_key(query.user_id, g) for g in query.group_keys])
                replies = iter(await pipe.execute())
        except RedisError as exc:
            raise StoreError(f"loading user state from Redis failed: {exc}") from exc
        snapshots = []
        for query in queries:
            seq = int(next(replies) or 0)
            scores = next(replies) if query.event_ids else []
            states = next(replies) if query.group_keys else []
            seen = frozenset(e for e, score in zip(query.event_ids, scores, strict=True) if score is not None)
            groups = {
                g: GroupState.from_json(orjson.loads(raw))
                for g, raw in zip(query.group_keys, states, strict=True)
                if raw is not None
            }
            snapshots.append(UserSnapshot(query.user_id, seq, seen, groups))
        return snapshots

    def _script_call(self, change: UserChange, now_ms: int) -> tuple[list[str], list[str]]:
        user = change.user_id
        call_keys = [
            keys.seq_key(user),
            keys.seen_key(user),
            keys.inbox_key(user),
            keys.bodies_key(user),
            keys.unread_key(user),
            keys.preferences_key(user),
        ]
        groups = []
        for group, (state, ttl_ms) in change.groups.items():
            call_keys.append(keys.group_state_key(user, group))
            groups.append([str(len(call_keys)), orjson.dumps(state.to_json()).decode(), str(max(ttl_ms, 1))])
        outbox_index: dict[str, str] = {}
        outbox = []
        shard = keys.outbox_shard_of(user, self.outbox_shards)
        for entry in change.outbox:
            stream = keys.outbox_key(entry.channel, shard)
            if stream not in outbox_index:
                call_keys.append(stream)
                outbox_index[stream] = str(len(call_keys))
            outbox.append([outbox_index[stream], entry.delivery_id, user, orjson.dumps(entry.payload).decode()])
        ops = {
            "seq": str(change.new_seq),
            "now": str(now_ms),
            "horizon": str(self._horizon_ms),
            "cap": str(self._capacity),
            "seen": change.seen_event_ids,
            "groups": groups,
            "notes": [[b["id"], str(b["cursor"]), orjson.dumps(b).decode()] for b in change.notifications],
            "read": change.read_ids,
            "deleted": change.deleted_ids,
            "prefs": orjson.dumps(change.preferences).decode() if change.preferences is not None else None,
            "outbox": outbox,
        }
        return call_keys, [str(change.expected_seq), orjson.dumps(ops).decode()]

    async def commit(self, changes: Sequence[UserChange], *, now_ms: int) -> list[bool]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for change in changes:
                    call_keys, args = self._script_call(change, now_ms)
                    await self._commit(keys=call_keys, args=args, client=pipe)
                replies = await pipe.execute()
        except RedisError as exc:
            raise StoreError(f"committing to Redis failed: {exc}") from exc
        return [int(r) == 1 for r in replies]

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
        async with self._redis.pipeline(transaction=True) as pipe:
            if ids is None:
                pipe.delete(unread)
            elif ids:
                pipe.srem(unread, *ids)
            pipe.scard(unread)
            replies = await pipe.execute()
        return int(replies[-1])
