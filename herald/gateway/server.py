"""The Socket.IO gateway (DESIGN section 7): authenticated connections placed in their own rooms, replay
of what a client missed since its cursor, read acknowledgements, and live emits fanned out through Redis.

Each connection speaks Herald's own protocol or the existing application's ("compat", see compat.py), chosen
at connect; emits arrive in Herald's internal vocabulary and are translated per protocol on the way out.

Ordering and duplicates: a client enters its rooms first and is replayed from the store after, so nothing
emitted in between is missed; live emits that reach it during the replay are held and flushed after it, and
every notification passes the connection's (id -> highest version sent) record, so a client never receives
the same version twice or an older version after a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import socketio
import uvicorn
from redis.exceptions import RedisError
from socketio.exceptions import ConnectionRefusedError as SocketRefused

from herald import auth
from herald.channels.in_app import INBOX_EVENT, user_rooms
from herald.config import Settings
from herald.errors import AuthError, ConfigError, HeraldError
from herald.gateway import protocol
from herald.gateway.analytics import AnalyticsPublisher
from herald.gateway.client_events import ClientEvents
from herald.gateway.fanout import Fanout
from herald.gateway.http import STATIC_DIR, HttpApp
from herald.gateway.limits import ClientSession, GatewayLimits, TokenBucket
from herald.gateway.manager import GatedRedisManager
from herald.gateway.translate import translate
from herald.store import InboxStore

log = logging.getLogger(__name__)

NAMESPACE = "/"
# Replays stop after this many pages even if the store keeps answering (an inbox is capped far below it).
MAX_REPLAY_PAGES = 100
SHUTDOWN_TIMEOUT_S = 5


@dataclass
class GatewayCounters:
    connected: int = 0
    refused: int = 0
    replayed: int = 0
    rate_limited: int = 0
    bad_requests: int = 0
    unknown_events: int = 0
    store_errors: int = 0
    expired: int = 0
    resubscriptions: int = 0
    count_reads: int = 0  # unread counts read for connections without an emit carrying one


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: the process that embeds the gateway (a Ray worker, a test) owns
    SIGINT/SIGTERM and stops the gateway through Gateway.shutdown()."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Gateway:
    """One gateway: `asgi_app` for any ASGI server, or `serve()` to run it under uvicorn on this loop."""

    def __init__(
        self,
        settings: Settings,
        store: InboxStore,
        *,
        limits: GatewayLimits | None = None,
        analytics: AnalyticsPublisher | None = None,
        static_dir: Path = STATIC_DIR,
        clock_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._store = store
        self.limits = limits or GatewayLimits.from_settings(settings)
        self.analytics = analytics or AnalyticsPublisher(settings)
        self._clock_s = clock_s
        self._sessions: dict[str, ClientSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._expiries: dict[str, asyncio.TimerHandle] = {}  # sid -> disconnect when its token expires
        self.counters = GatewayCounters()
        self._fanout = Fanout(
            self._sessions,
            self._send,
            read_count=self._read_count,
            count_window_s=self.limits.count_coalesce_s,
            on_count_error=self._count_failed,
        )
        self._manager = GatedRedisManager(
            settings.redis_url,
            router=self._fanout.route,
            on_resubscribed=self._after_subscription_gap,
            redis_options={"client_name": f"herald-gateway-{os.getpid()}-{id(self):x}"},
        )
        origins = settings.cors_origins
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            client_manager=self._manager,
            cors_allowed_origins="*" if "*" in origins else list(origins),
            max_http_buffer_size=self.limits.max_payload_bytes,
            transports=["polling", "websocket"],
            logger=False,
            engineio_logger=False,
        )
        self._events = ClientEvents(
            store, self.limits, self.analytics, announce=self._announce, send_count=self._fanout.send_count
        )
        self._http = HttpApp(self.health, static_dir)
        self.asgi_app = socketio.ASGIApp(self.sio, other_asgi_app=self._http)
        self._server: uvicorn.Server | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._register()

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to the Redis manager now rather than on the first connection, and wait for it, so an
        emit made after start() returns reaches clients that connect later in the replay-or-live window."""
        if not self.sio.manager_initialized:
            self.sio.manager_initialized = True
            self._manager.initialize()
        await self._manager.wait_subscribed(self.limits.connect_timeout_s)

    async def serve(self, host: str | None = None, port: int | None = None) -> int:
        """Start the gateway and uvicorn on (host, port) from settings unless given; 0 picks a free port.
        Returns the bound port once the server accepts connections."""
        if self._serve_task is not None:
            raise RuntimeError("gateway is already serving")
        await self.start()
        config = uvicorn.Config(
            self.asgi_app,
            host=host or self._settings.gateway_host,
            port=self._settings.gateway_port if port is None else port,
            log_level="warning",
            lifespan="off",
            ws_max_size=2 * self.limits.max_payload_bytes,
            timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_S,
        )
        server = _QuietServer(config)
        self._server = server
        self._serve_task = asyncio.create_task(server.serve(), name="herald-gateway-uvicorn")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.connect_timeout_s
        while not server.started:
            if self._serve_task.done():
                await self._serve_task  # re-raises a bind failure
                raise HeraldError(f"gateway on port {config.port} stopped while starting")
            if loop.time() > deadline:
                raise HeraldError(f"gateway on port {config.port} did not start")
            await asyncio.sleep(0.01)
        return self.port

    @property
    def port(self) -> int:
        if self._server is None or not self._server.servers:
            raise RuntimeError("gateway is not serving")
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    async def shutdown(self) -> None:
        """Disconnect clients; stop uvicorn, replay tasks, the Redis listener and the analytics producer."""
        for expiry in self._expiries.values():
            expiry.cancel()
        self._expiries.clear()
        for sid in list(self._sessions):
            with contextlib.suppress(RedisError, OSError):
                await self.sio.disconnect(sid, ignore_queue=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._fanout.close()
        if self._server is not None and self._serve_task is not None:
            self._server.should_exit = True
            await asyncio.gather(self._serve_task, return_exceptions=True)
        self._server, self._serve_task = None, None
        await self.sio.shutdown()
        await self._manager.close()
        await self.analytics.close()

    def health(self) -> dict[str, Any]:
        pubsub = self._manager.pubsub
        subscribed = bool(pubsub is not None and pubsub.subscribed)
        return {
            "ok": subscribed,
            "subscribed": subscribed,
            "serving": self._server is not None and bool(self._server.started),
            "connections": len(self._sessions),
            "counters": asdict(self.counters),
            "dropped_stale": sum(s.dropped_stale for s in self._sessions.values()),
            "analytics": asdict(self.analytics.counters),
        }

    # -- counts and inbox changes ----------------------------------------------------------------------

    async def _read_count(self, user_id: str) -> int:
        self.counters.count_reads += 1
        return await self._store.unread_count(user_id)

    def _count_failed(self, exc: Exception) -> None:
        self.counters.store_errors += 1
        log.warning("reading an unread count failed: %s", exc)

    async def _announce(self, user_id: str, change: dict[str, Any]) -> None:
        # Through the manager, so every device of the user on every gateway hears it.
        await self.sio.emit(INBOX_EVENT, change, room=user_rooms(user_id)[0])

    # -- connection ------------------------------------------------------------------------------------

    def _register(self) -> None:
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        # Every client event, of either protocol, through one dispatcher and the connection's own table.
        self.sio.on("*", self._on_event)

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth_data: Any = None) -> None:
        try:
            request = protocol.parse_connect_auth(
                auth_data, environ.get("QUERY_STRING", ""), self._settings.gateway_protocol
            )
            claims = auth.authenticate(self._settings, request.token, environ.get("HTTP_COOKIE"))
        except (protocol.ProtocolError, AuthError) as exc:
            self.counters.refused += 1
            raise SocketRefused(str(exc)) from None
        except ConfigError as exc:
            self.counters.refused += 1
            log.error("cannot verify client tokens: %s", exc)
            raise SocketRefused("server cannot verify tokens") from None
        session = ClientSession(
            user_id=claims.user_id,
            bucket=TokenBucket(self.limits.events_per_s, self.limits.burst, self._clock_s),
            max_remembered=self.limits.remembered_versions,
            protocol=request.protocol,
        )
        self._sessions[sid] = session
        self._expire_at(sid, claims.expires_at)
        for room in user_rooms(claims.user_id):
            await self.sio.enter_room(sid, room)
        self.counters.connected += 1
        task = asyncio.create_task(self._replay(sid, session, request.since), name=f"herald-replay-{sid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        self._sessions.pop(sid, None)
        expiry = self._expiries.pop(sid, None)
        if expiry is not None:
            expiry.cancel()

    def _after_subscription_gap(self) -> None:
        """Emits published while the subscription was down never reached this gateway. Disconnecting every
        client makes each reconnect with its `since` cursor and replay exactly what it missed."""
        self.counters.resubscriptions += 1
        for sid in list(self._sessions):
            task = asyncio.create_task(self.sio.disconnect(sid), name=f"herald-resync-{sid}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def redis_client_name(self) -> str:
        return str(self._manager.redis_options["client_name"])

    def _expire_at(self, sid: str, expires_at: datetime) -> None:
        """A token is checked at connect; a connection must not outlive it. The client reconnects with a
        fresh token (and `since`), so it misses nothing."""
        delay_s = max(0.0, (expires_at - datetime.now(UTC)).total_seconds())

        def expire() -> None:
            self._expiries.pop(sid, None)
            self.counters.expired += 1
            task = asyncio.create_task(self.sio.disconnect(sid), name=f"herald-expire-{sid}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._expiries[sid] = asyncio.get_running_loop().call_later(delay_s, expire)

    async def _replay(self, sid: str, session: ClientSession, since: int | None) -> None:
        try:
            if not await self._connected(sid):
                return
            if since is not None:
                await self._send_backlog(sid, session, since)
            mark = len(session.pending)
            unread = await self._store.unread_count(session.user_id)
            await self._fanout.send_count(sid, session, unread)
            refresh = await self._flush_held(sid, session, mark)
            session.replaying = False  # no await since the flush saw `pending` empty: nothing slips between
            if refresh:
                self._fanout.refresh_count(session, sid)
        except (HeraldError, RedisError, OSError) as exc:
            self.counters.store_errors += 1
            log.warning("replay for %s failed (%s); disconnecting it so it reconnects and retries", sid, exc)
            await self.sio.disconnect(sid, ignore_queue=True)

    async def _flush_held(self, sid: str, session: ClientSession, mark: int) -> bool:
        """Send what was held during the replay, translated now; True when a count must still be read.

        The first `mark` items were held before the replay read the unread count, so the counts they carry
        (or would need) are older than it: they are dropped."""
        refresh = False
        for index in itertools.count():
            if not session.pending:
                return refresh
            event, payload = session.pending.pop(0)
            if event == protocol.NOTIFICATION_EVENT and not session.admit(payload):
                continue
            translation = translate(session.protocol, event, payload)
            current = index >= mark
            for out_event, out in translation.live() if current else translation.sends:
                await self._send(sid, out_event, out)
            refresh |= current and translation.refresh_count
        return refresh

    async def _connected(self, sid: str) -> bool:
        """Wait until python-socketio has sent CONNECT: events sent before it would reach no handler."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.connect_timeout_s
        while not self.sio.manager.is_connected(sid, NAMESPACE):
            if sid not in self._sessions or loop.time() > deadline:
                return False
            await asyncio.sleep(0.005)
        return sid in self._sessions

    async def _send_backlog(self, sid: str, session: ClientSession, since: int) -> None:
        cursor = since
        for _page in range(MAX_REPLAY_PAGES):
            page_size = self.limits.replay_page_size
            items = await self._store.notifications_after(session.user_id, cursor, page_size)
            if not items or sid not in self._sessions:
                return
            for body in items:
                if session.admit(body):
                    for event, payload in translate(session.protocol, protocol.NOTIFICATION_EVENT, body).sends:
                        await self._send(sid, event, payload)
                    self.counters.replayed += 1
            cursor = max(cursor, *(int(body["cursor"]) for body in items))

    async def _send(self, sid: str, event: str, payload: Any) -> None:
        # Straight to the local socket: the client is on this gateway, other gateways need not hear of it.
        await self.sio.emit(event, payload, to=sid, ignore_queue=True)

    # -- client events ---------------------------------------------------------------------------------

    async def _on_event(self, event: str, sid: str, *args: Any) -> dict[str, Any]:
        session = self._sessions.get(sid)
        if session is None:
            return protocol.error("not connected")
        if not session.bucket.take():
            self.counters.rate_limited += 1
            return protocol.error("rate limited")
        handler = self._events.handler(session.protocol, event)
        if handler is None:
            self.counters.unknown_events += 1
            return protocol.error(f"unknown event {str(event)[:64]!r}")
        try:
            return await handler(sid, session, args)
        except protocol.ProtocolError as exc:
            self.counters.bad_requests += 1
            return protocol.error(str(exc))
        except (HeraldError, RedisError, OSError) as exc:
            self.counters.store_errors += 1
            log.warning("client event %s for %s failed: %s", event, session.user_id, exc)
            return protocol.error("temporarily unavailable, retry later")
