"""The user directory: actor id -> display name and avatar, so a notification can say "John liked your post"
when its event carries only an actor id. One Redis hash; filled by `herald users import` or the SDK."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from herald import keys
from herald.config import get_settings
from herald.errors import HeraldError, StoreError
from herald.loop_thread import BlockingFacade

T = TypeVar("T")
log = logging.getLogger(__name__)

# Profiles per script call: one call holds Redis for about a millisecond. A pipeline carries at most
# PIPELINE_CALLS of them, so importing a million users does not buffer the whole file in one request.
PROFILES_PER_CALL = 1000
PIPELINE_CALLS = 20

# A Lua merge rather than HMGET + HSET: one round trip per chunk, and atomic, so two writers cannot interleave
# between read and write and lose each other's avatar. ARGV holds (id, name, avatar) triples, name and avatar
# already JSON-encoded by Python or '' when the new profile lacks them (the stored value is then kept).
# cjson escapes "/" as "\/"; the gsub undoes it so a kept URL is stored as Python would write it.
_REMEMBER_SCRIPT = """
local function kept(old, field)
  if type(old[field]) ~= 'string' then return 'null' end
  return (string.gsub(cjson.encode(old[field]), '\\\\/', '/'))
end
for i = 1, #ARGV, 3 do
  local id, name, avatar = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if name == '' or avatar == '' then
    local raw = redis.call('HGET', KEYS[1], id)
    local ok, old = false, nil
    if raw then ok, old = pcall(cjson.decode, raw) end
    if not ok or type(old) ~= 'table' then old = {} end
    if name == '' then name = kept(old, 'name') end
    if avatar == '' then avatar = kept(old, 'avatarUrl') end
  end
  redis.call('HSET', KEYS[1], id, '{"name":' .. name .. ',"avatarUrl":' .. avatar .. '}')
end
return #ARGV / 3
"""


# Raised by herald.directory_files.load_profiles; defined here so that module depends on this one, not both ways.
class DirectoryImportError(HeraldError, ValueError):
    """A profile file cannot be read or has a bad row; names the file, the line (when known) and the problem."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        self.source = source
        self.line = line
        self.problem = problem
        super().__init__(f"{source}, line {line}: {problem}" if line is not None else f"{source}: {problem}")


@dataclass(frozen=True, slots=True)
class UserProfile:
    """What the directory knows of a user; None means unknown, never "erase"."""

    id: str
    name: str | None = None
    avatar_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "avatarUrl": self.avatar_url}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UserProfile:
        """Strict: `id` a non-empty string, `name` and `avatarUrl` strings or absent; ValueError otherwise."""
        user_id = data.get("id")
        if not isinstance(user_id, str) or not user_id:
            raise ValueError(f"id must be a non-empty string, not {user_id!r}")
        name, avatar = data.get("name"), data.get("avatarUrl")
        for field, value in (("name", name), ("avatarUrl", avatar)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{field} must be a string or null, not {type(value).__name__}")
        return cls(user_id, name, avatar)

    @property
    def is_empty(self) -> bool:
        return not self.name and not self.avatar_url


def merge(old: UserProfile | None, new: UserProfile) -> UserProfile:
    """What `remember` stores: the new profile's values, the old ones where the new profile has none."""
    if old is None:
        return new
    return UserProfile(new.id, new.name or old.name, new.avatar_url or old.avatar_url)


class UserDirectory(Protocol):
    async def lookup(self, user_ids: Sequence[str]) -> dict[str, UserProfile]: ...

    async def remember(self, profiles: Iterable[UserProfile]) -> int: ...


class MemoryUserDirectory:
    """The unit tier's directory: a dict with the Redis directory's merge semantics."""

    def __init__(self) -> None:
        self.profiles: dict[str, UserProfile] = {}

    async def lookup(self, user_ids: Sequence[str]) -> dict[str, UserProfile]:
        return {uid: self.profiles[uid] for uid in user_ids if uid in self.profiles}

    async def remember(self, profiles: Iterable[UserProfile]) -> int:
        written = 0
        for profile in profiles:
            if not profile.is_empty:
                self.profiles[profile.id] = merge(self.profiles.get(profile.id), profile)
                written += 1
        return written


def _stored_value(user_id: str, raw: str) -> UserProfile:
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return UserProfile.from_json({**data, "id": user_id})


def _script_args(profile: UserProfile) -> list[str]:
    # '' is the script's "absent" marker; an empty name is as good as none, so it is sent as absent too.
    return [
        profile.id,
        orjson.dumps(profile.name).decode() if profile.name else "",
        orjson.dumps(profile.avatar_url).decode() if profile.avatar_url else "",
    ]


class RedisUserDirectory:
    """The directory in one Redis hash (keys.directory_key()): field = user id, value = {"name", "avatarUrl"}.

    Needs a client with decode_responses=True. `unparsable` counts stored values lookup() skipped.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client
        self._remember = client.register_script(_REMEMBER_SCRIPT)
        self.unparsable = 0
        kwargs = client.connection_pool.connection_kwargs
        self._where = str(kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}")

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 10.0) -> RedisUserDirectory:
        client = aioredis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        return cls(client)

    async def close(self) -> None:
        await self._redis.aclose()

    def _failure(self, what: str, exc: RedisError) -> StoreError:
        cause = str(exc).rstrip(".")
        if isinstance(exc, RedisConnectionError | RedisTimeoutError):
            hint = "is the stack up? try `herald doctor`"
            return StoreError(f"Redis at {self._where} unreachable while {what}: {cause}; {hint}")
        return StoreError(f"Redis at {self._where} failed {what}: {cause}")

    async def lookup(self, user_ids: Sequence[str]) -> dict[str, UserProfile]:
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        try:
            raws = cast(list[str | None], await self._redis.hmget(keys.directory_key(), ids))
        except RedisError as exc:
            raise self._failure("reading the user directory", exc) from exc
        found: dict[str, UserProfile] = {}
        bad = 0
        for user_id, raw in zip(ids, raws, strict=True):
            if raw is None:
                continue
            try:
                found[user_id] = _stored_value(user_id, raw)
            except ValueError:  # orjson.JSONDecodeError is a ValueError
                bad += 1
        if bad:
            # Skipped, not raised: one corrupt entry must not cost every other actor of a batch their name.
            self.unparsable += bad
            log.warning("user directory: %d unparsable value(s) skipped", bad)
        return found

    async def remember(self, profiles: Iterable[UserProfile]) -> int:
        wanted = [p for p in profiles if not p.is_empty]
        key = keys.directory_key()
        calls = [wanted[i : i + PROFILES_PER_CALL] for i in range(0, len(wanted), PROFILES_PER_CALL)]
        written = 0
        try:
            for first in range(0, len(calls), PIPELINE_CALLS):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for chunk in calls[first : first + PIPELINE_CALLS]:
                        args = [arg for profile in chunk for arg in _script_args(profile)]
                        await self._remember(keys=[key], args=args, client=pipe)
                    written += sum(int(n) for n in await pipe.execute())
        except RedisError as exc:
            progress = f"{written} of {len(wanted)} profiles written"
            raise self._failure(f"writing the user directory ({progress})", exc) from exc
        return written


class SyncUserDirectory(BlockingFacade[RedisUserDirectory]):
    """Blocking facade for code without an event loop (the SDK way to fill the directory): a
    RedisUserDirectory on a private loop thread, as SyncNotificationProducer does it."""

    def __init__(self, url: str | None = None, *, timeout_s: float = 10.0) -> None:
        self._url = url if url is not None else get_settings().redis_url
        self._timeout_s = timeout_s
        # The async client's connections belong to the loop that opens them: it lives on the loop thread.
        super().__init__("SyncUserDirectory", "herald-directory", self._create)

    async def _create(self) -> RedisUserDirectory:
        return RedisUserDirectory.from_url(self._url, timeout_s=self._timeout_s)

    def register(self, profiles: Iterable[UserProfile]) -> int:
        """Add or update profiles (merged as RedisUserDirectory.remember does); returns how many were written."""
        wanted = list(profiles)
        return self._call(lambda directory: directory.remember(wanted))

    def lookup(self, user_ids: Sequence[str]) -> dict[str, UserProfile]:
        wanted = list(user_ids)
        return self._call(lambda directory: directory.lookup(wanted))
