"""python-socketio's Redis manager with a router in front of local delivery: every emit that reaches this
gateway (from the pipeline's write-only emitters, from another gateway or from this one) is offered to the
recipients' ClientSessions, which hold, drop or translate it, before anything is written to a socket."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import socketio

log = logging.getLogger(__name__)

# (event, payload, recipient sids): one packet to write to those sockets.
Delivery = tuple[str, Any, list[str]]
# Given an emit's event, payload and local recipients, what to send to whom: recipients left out are held or
# dropped; recipients speaking another protocol get another event. Deliveries are sent in order.
Router = Callable[[str, Any, list[str]], list[Delivery]]
RESUBSCRIBE_TIMEOUT_S = 60.0


class GatedRedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    def __init__(
        self,
        url: str,
        *,
        router: Router,
        on_resubscribed: Callable[[], None] | None = None,
        channel: str = "socketio",
        redis_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(url, channel=channel, redis_options=redis_options)
        self._router = router
        self._on_resubscribed = on_resubscribed

    def _redis_connect(self) -> None:
        """python-socketio reconnects after losing Redis; pub/sub is at-most-once, so whatever was published
        meanwhile never reached this gateway and its clients must be told (see Gateway)."""
        reconnect = self.pubsub is not None
        super()._redis_connect()
        if reconnect and self._on_resubscribed is not None:
            self._resync = asyncio.ensure_future(self._resync_when_subscribed())

    async def _resync_when_subscribed(self) -> None:
        # Only once subscribed again: a client sent to replay before that could miss an emit in between.
        try:
            await self.wait_subscribed(RESUBSCRIBE_TIMEOUT_S)
        except TimeoutError:
            log.warning("Redis pub/sub still not subscribed; telling clients to resync anyway")
        log.warning("the Redis pub/sub subscription was lost and is back: clients replay what they missed")
        if self._on_resubscribed is not None:
            self._on_resubscribed()

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        # Emits with callbacks or binary attachments are not part of Herald's protocol; pass them untouched.
        if message.get("callback") or message.get("binary"):
            await super()._handle_emit(message)
            return
        namespace = message.get("namespace") or "/"
        data = message.get("data")
        # python-socketio's convention: one argument is the payload, several travel as a tuple.
        arguments = data if isinstance(data, list) else [data]
        payload = arguments[0] if len(arguments) == 1 else tuple(arguments)
        skip = message.get("skip_sid")
        skipped = set(skip) if isinstance(skip, list) else {skip}
        recipients = [
            sid for sid, _eio_sid in self.get_participants(namespace, message.get("room")) if sid not in skipped
        ]
        if not recipients:
            return
        for event, out, sids in self._router(str(message.get("event")), payload, recipients):
            args = list(out) if isinstance(out, tuple) else [out]
            await super()._handle_emit({**message, "event": event, "data": args, "room": sids, "skip_sid": None})

    async def wait_subscribed(self, timeout_s: float) -> None:
        """Wait until the pub/sub listener is subscribed, so emits made after this are not missed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not (self.pubsub is not None and self.pubsub.subscribed):
            if loop.time() > deadline:
                raise TimeoutError(f"Redis pub/sub at {self.redis_url} not subscribed after {timeout_s:g}s")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Stop the listener task and close the Redis connections (python-socketio has no API for it)."""
        task = getattr(self, "thread", None)
        if isinstance(task, asyncio.Task):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.pubsub is not None:
            await self.pubsub.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        self.connected = False
