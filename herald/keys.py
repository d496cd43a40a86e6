"""Redis key names. Every key of a user carries the hash tag {u:<userId>} so one Lua script can touch them all
on Redis Cluster; outbox streams are sharded with their own tag."""

from __future__ import annotations

import xxhash

OUTBOX_GROUP = "herald-delivery"


def user_key(user_id: str, suffix: str) -> str:
    return f"herald:{{u:{user_id}}}:{suffix}"


def seq_key(user_id: str) -> str:
    return user_key(user_id, "seq")


def seen_key(user_id: str) -> str:
    return user_key(user_id, "seen")


def inbox_key(user_id: str) -> str:
    return user_key(user_id, "inbox")


def bodies_key(user_id: str) -> str:
    return user_key(user_id, "n")


def unread_key(user_id: str) -> str:
    return user_key(user_id, "unread")


def preferences_key(user_id: str) -> str:
    return user_key(user_id, "prefs")


def aliases_key(user_id: str) -> str:
    """Hash: the application's id of a notification folded into a group -> the group's notification id."""
    return user_key(user_id, "aid")


def group_state_key(user_id: str, group: str) -> str:
    return user_key(user_id, f"g:{group}")


def stable_hash(value: str) -> int:
    """A hash that is the same in every process (Python's hash() is salted per process)."""
    return int(xxhash.xxh64_intdigest(value.encode()))


def outbox_key(channel: str, shard: int) -> str:
    return f"herald:outbox:{channel}:{{o:{shard}}}"


def outbox_shard_of(user_id: str, outbox_shards: int) -> int:
    return stable_hash(user_id) % outbox_shards


def directory_key() -> str:
    """The user directory (id -> name, avatar): one global hash, no hash tag, as no script reads it with user keys."""
    return "herald:directory"


def presence_key(user_id: str) -> str:
    """Hash: id of a gateway holding a connection of the user -> expiry (epoch ms) of that claim."""
    return user_key(user_id, "gw")


def live_channel(gateway_id: str) -> str:
    """The pub/sub channel one gateway listens on for the live notifications of the users it holds."""
    return f"herald:live:{gateway_id}"


def metrics_key() -> str:
    """Hash: metrics source (an actor, with its process) -> its latest metrics snapshot JSON (herald/metrics.py),
    published every few seconds and merged by the gateway's /dashboard."""
    return "herald:metrics"
