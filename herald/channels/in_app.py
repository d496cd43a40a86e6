"""IN_APP: emit to the user's Socket.IO rooms through python-socketio's Redis manager (write-only)."""

from __future__ import annotations

import asyncio
from typing import Any

import socketio
from redis.exceptions import RedisError

from herald.channels.base import ChannelProvider, DeliveryJob, RetryPolicy
from herald.errors import DeliveryError
from herald.store import INBOX_CHANGE

NOTIFICATION_EVENT = "notification"
# Internal event from the pipeline to the gateways: a user's inbox changed by reads or deletes that came
# through Kafka. Gateways translate it into each connection's protocol and never forward it as is.
INBOX_EVENT = "herald:inbox"


def user_rooms(user_id: str) -> list[str]:
    """The only rooms a client of `user_id` is ever in, and where its notifications are emitted; one definition
    for the emitters and the gateways (`notifications:{id}` is the room the existing application listens on)."""
    return [f"user:{user_id}", f"notifications:{user_id}"]


class _StrictRedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """A write-only manager whose publishes fail loudly and travel together.

    python-socketio logs a failed publish and carries on; a delivery must know, so this one raises. And the
    emits of one outbox batch are issued concurrently: instead of a Redis round trip each, the publishes
    queued in one turn of the event loop go out in one pipeline.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queued: list[tuple[str, asyncio.Future[Any]]] = []

    async def _publish(self, data: Any) -> Any:
        if not self.connected:
            self._redis_connect()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((self.json.dumps(data), future))
        if len(self._queued) == 1:
            asyncio.get_running_loop().call_soon(self._start_flush)
        return await future

    def _start_flush(self) -> None:
        flush = asyncio.ensure_future(self._flush())
        self._flushing = flush  # keep a reference until it is done

    async def _flush(self) -> None:
        batch, self._queued = self._queued, []
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for message, _future in batch:
                    pipe.publish(self.channel, message)
                replies = await pipe.execute()
        except Exception as exc:  # noqa: BLE001 - handed to every waiting publish, which raises it
            self.connected = False  # reconnect on the next publish, as the parent class does
            for _message, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_message, future), reply in zip(batch, replies, strict=True):
            if not future.done():
                future.set_result(reply)


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
        event, payload = NOTIFICATION_EVENT, job.payload
        if job.payload.get("kind") == INBOX_CHANGE:
            # The unread count is left for each gateway to read when it passes the change on: one written
            # here could be older than a read a client makes meanwhile.
            event = INBOX_EVENT
            payload = {key: value for key, value in job.payload.items() if key != "kind"}
            payload |= {"userId": job.user_id, "unread": None}
        try:
            await self._manager.emit(event, payload, room=user_rooms(job.user_id), namespace="/")
        except (RedisError, OSError) as exc:
            raise DeliveryError(f"Socket.IO emit through Redis failed: {exc}", retriable=True) from exc
