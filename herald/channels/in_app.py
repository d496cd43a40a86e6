"""IN_APP: emit to the user's Socket.IO rooms through python-socketio's Redis manager (write-only)."""

from __future__ import annotations

from typing import Any

import socketio
from redis.exceptions import RedisError

from herald.channels.base import ChannelProvider, DeliveryJob, RetryPolicy
from herald.errors import DeliveryError


def user_rooms(user_id: str) -> list[str]:
    # `notifications:{id}` is the room the existing application's clients listen on.
    return [f"user:{user_id}", f"notifications:{user_id}"]


class _StrictRedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """python-socketio logs a failed publish and carries on; a delivery must know, so this one raises."""

    async def _publish(self, data: Any) -> Any:
        if not self.connected:  # type: ignore[has-type]
            self._redis_connect()
        try:
            return await self.redis.publish(self.channel, self.json.dumps(data))
        except Exception:
            self.connected = False  # reconnect on the next publish, as the parent class does
            raise


def socketio_manager(redis_url: str, *, write_only: bool) -> Any:
    return _StrictRedisManager(redis_url, write_only=write_only)


class InAppProvider(ChannelProvider):
    channel = "IN_APP"

    def __init__(self, redis_url: str, policy: RetryPolicy | None = None) -> None:
        super().__init__(policy)
        self._redis_url = redis_url
        self._manager: Any = None

    async def start(self) -> None:
        self._manager = socketio_manager(self._redis_url, write_only=True)

    async def send(self, job: DeliveryJob) -> None:
        if self._manager is None:
            raise DeliveryError("IN_APP provider used before start()", retriable=True)
        try:
            await self._manager.emit("notification", job.payload, room=user_rooms(job.user_id), namespace="/")
        except (RedisError, OSError) as exc:
            raise DeliveryError(f"Socket.IO emit through Redis failed: {exc}", retriable=True) from exc
