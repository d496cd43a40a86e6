"""The Socket.IO gateway: authenticated connections, replay of what a client missed since its cursor, read
acknowledgements, and the live notifications of the users it holds (herald/live.py: presence, one channel per
gateway, gaps filled from the inbox).

Each connection speaks Herald's own protocol or the existing application's ("compat", see compat.py), chosen
at connect; emits arrive in Herald's internal vocabulary and are translated per protocol on the way out.

Ordering and duplicates: the gateway claims the user's presence first and the client is replayed from the
store after, so nothing committed in between is missed; live entries that reach it during the replay are held
and flushed after it, and
every notification passes the connection's (id -> highest version sent) record, so a client never receives
the same version twice or an older version after a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import socketio
import uvicorn
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from socketio import packet as socketio_packet
from socketio.exceptions import ConnectionRefusedError as SocketRefused

from herald import auth, live, metrics, metrics_board
from herald.cancelling import cancel_and_wait
from herald.config import Settings
from herald.errors import AuthError, ConfigError, HeraldError
from herald.gateway import fastjson, protocol
from herald.gateway.analytics import AnalyticsPublisher
from herald.gateway.client_events import ClientEvents
from herald.gateway.dashboard import view as dashboard_view
from herald.gateway.fanout import Delivery, Fanout
from herald.gateway.http import STATIC_DIR, HttpApp, static_files
from herald.gateway.limits import GatewayLimits, TokenBucket
from herald.gateway.presence import LiveSubscription, Presence, wall_clock_ms
from herald.gateway.session import ClientSession
from herald.gateway.translate import translate
from herald.live import INBOX_EVENT, LiveEntry
from herald.push_subscriptions import PushSubscriptionStore
from herald.redis_pool import redis_client
from herald.store import InboxStore

log = logging.getLogger(__name__)

NAMESPACE = "/"
EVENT_PACKET = socketio_packet.EVENT
# Replays stop after this many pages even if the store keeps answering (an inbox is capped far below it).
MAX_REPLAY_PAGES = 100
SHUTDOWN_TIMEOUT_S = 5
# Reading a gap from the inbox is retried after these delays before the client is sent to reconnect.
GAP_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0)


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
    live_messages: int = 0
    live_entries: int = 0
    live_notifications: int = 0  # notification versions sent live, counted per user (not per socket)
    gaps_filled: int = 0  # users whose missed commits were read back from the inbox
    malformed_live: int = 0


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
        self._user_sids: dict[str, set[str]] = {}  # user -> this gateway's connections of the user
        # user -> the sequence number of the last commit this gateway heard of (or read back) for the user.
        self._heard_seq: dict[str, int] = {}
        self._filling: dict[str, asyncio.Task[None]] = {}
        self._gap_since: dict[str, int] = {}  # user -> read the inbox after this sequence number
        self._latencies_ms: deque[float] = deque(maxlen=2048)  # sampled event time -> sent live
        self._samples_offered = 0
        self.counters = GatewayCounters()
        self.gateway_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # IN_APP deliveries and their produce -> send latency; the gateway actor exports it (actors/metrics_export.py).
        self.metrics = metrics.MetricsRecorder(f"gateway@{self.gateway_id}")
        # Its own connections: health checks notice a half-open pub/sub connection.
        self._redis = redis_client(
            settings.redis_url, health_check_interval=10, client_name=f"herald-gateway-{self.gateway_id}"
        )
        self._presence = Presence(
            self._redis, self.gateway_id, on_lapsed=self._fill_gap_soon, ttl_ms=self.limits.presence_ttl_ms
        )
        # The subscription's own connection, never retried behind its back: redis-py would reconnect and
        # re-subscribe silently, and the messages published meanwhile would be lost without a gap fill.
        self._feed_redis = aioredis.Redis.from_url(
            settings.redis_url,
            health_check_interval=10,
            client_name=f"herald-gateway-{self.gateway_id}",
            retry=Retry(NoBackoff(), 0),
        )
        self._live = LiveSubscription(
            self._feed_redis,
            self.gateway_id,
            on_entries=self._on_live,
            on_resubscribed=self._after_subscription_gap,
            on_malformed=self._malformed_live,
        )
        self._fanout = Fanout(
            self._sessions,
            self._send,
            read_count=self._read_count,
            count_window_s=self.limits.count_coalesce_s,
            on_count_error=self._count_failed,
        )
        origins = settings.cors_origins
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            json=fastjson,
            cors_allowed_origins="*" if "*" in origins else list(origins),
            max_http_buffer_size=self.limits.max_payload_bytes,
            transports=["polling", "websocket"],
            logger=False,
            engineio_logger=False,
        )
        self._events = ClientEvents(
            store,
            self.limits,
            self.analytics,
            announce=self._announce,
            send_count=self._fanout.send_count,
            push_subscriptions=PushSubscriptionStore(self._redis),
        )
        self._http = HttpApp(self.health, self.dashboard_data)
        self.asgi_app = socketio.ASGIApp(self.sio, other_asgi_app=self._http, static_files=static_files(static_dir))
        self._server: uvicorn.Server | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._register()

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to this gateway's live channel and start its presence writer; a client is accepted only
        after, so no commit can slip between its replay and its live feed."""
        self._presence.start()
        await self._live.start(self.limits.connect_timeout_s)

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
            # The websockets library's sans-I/O protocol: its frame handling is C-accelerated, wsproto's is not.
            ws="websockets-sansio",
            ws_per_message_deflate=self._settings.gateway_ws_compression,
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
        # All at once: one after another, 10,000 clients take longer to say goodbye to than a drain allows.
        await asyncio.gather(*(self.sio.disconnect(sid) for sid in list(self._sessions)), return_exceptions=True)
        await cancel_and_wait(list(self._tasks), what="gateway replays")
        await cancel_and_wait(list(self._filling.values()), what="gateway gap reads")
        await self._fanout.close()
        if self._server is not None and self._serve_task is not None:
            self._server.should_exit = True
            await asyncio.gather(self._serve_task, return_exceptions=True)
        self._server, self._serve_task = None, None
        await self.sio.shutdown()
        await self._live.close()
        await self._presence.close()
        await self._feed_redis.aclose()
        await self._redis.aclose()
        await self.analytics.close()

    def health(self) -> dict[str, Any]:
        subscribed = self._live.subscribed.is_set()
        serving = self._server is not None and bool(self._server.started)
        return {
            # Embedded through asgi_app, the host serves it; through serve(), only once uvicorn listens.
            "ok": subscribed and (serving or self._server is None),
            "subscribed": subscribed,
            "gateway_id": self.gateway_id,
            "serving": serving,
            "connections": len(self._sessions),
            "users": len(self._user_sids),
            "counters": asdict(self.counters),
            "live_latency_ms": _percentiles(self._latencies_ms),
            "dropped_stale": sum(s.dropped_stale for s in self._sessions.values()),
            # Versions the connections remember to drop duplicates (bounded by what is in flight, see session.py).
            "remembered_versions": sum(len(s.sent_versions) for s in self._sessions.values()),
            "analytics": asdict(self.analytics.counters),
        }

    async def dashboard_data(self) -> dict[str, Any]:
        """/dashboard/data: every fresh snapshot on the cluster's metrics board, merged (herald/metrics_board.py)."""
        now_ms = wall_clock_ms()
        return dashboard_view(await metrics_board.read_merged(self._redis, now_ms=now_ms), now_ms=now_ms)

    @property
    def counts_pending(self) -> int:
        """Unread counts being gathered or read for connections (tests wait for none)."""
        return self._fanout.counts_pending

    # -- counts and inbox changes ----------------------------------------------------------------------

    async def _read_count(self, user_id: str) -> int:
        self.counters.count_reads += 1
        return await self._store.unread_count(user_id)

    def _count_failed(self, exc: Exception) -> None:
        self.counters.store_errors += 1
        log.warning("reading an unread count failed: %s", exc)

    async def _announce(self, user_id: str, change: dict[str, Any]) -> None:
        # Through the live channels of every gateway holding the user (this one too), so every device hears it.
        entry = live.encode_entry(user_id, inbox=change, unread=change.get("unread"))
        await live.announce(self._redis, user_id, entry, now_ms=wall_clock_ms())

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
        self._user_sids.setdefault(claims.user_id, set()).add(sid)
        presence = self._presence.claim(claims.user_id)
        self._expire_at(sid, claims.expires_at)
        # No Socket.IO rooms: live entries are routed by this gateway's own user -> connections index, and
        # python-socketio scans every room of the namespace on each disconnect.
        self.counters.connected += 1
        replay = self._replay(sid, session, request.since, presence)
        task = asyncio.create_task(replay, name=f"herald-replay-{sid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        session = self._sessions.pop(sid, None)
        expiry = self._expiries.pop(sid, None)
        if expiry is not None:
            expiry.cancel()
        if session is None:
            return
        sids = self._user_sids.get(session.user_id)
        if sids is not None:
            sids.discard(sid)
            if not sids:
                del self._user_sids[session.user_id]
                self._heard_seq.pop(session.user_id, None)
        self._presence.release(session.user_id)

    def _after_subscription_gap(self) -> None:
        """Commits published while the subscription was down never reached this gateway: read what each
        held user missed from the inbox, by the sequence number last heard."""
        self.counters.resubscriptions += 1
        for user_id in list(self._user_sids):
            self._fill_gap_soon(user_id)

    @property
    def redis_client_name(self) -> str:
        return f"herald-gateway-{self.gateway_id}"

    # -- the live feed ---------------------------------------------------------------------------------

    async def _on_live(self, entries: list[LiveEntry]) -> None:
        self.counters.live_messages += 1
        sends: list[Delivery] = []
        for entry in entries:
            self.counters.live_entries += 1
            sids = self._user_sids.get(entry.user_id)
            if not sids:
                continue  # the user left; its presence here is being removed
            if entry.is_commit:
                heard = self._heard_seq.get(entry.user_id)
                if heard is not None and entry.from_seq is not None and entry.from_seq > heard:
                    # A commit in between never reached this gateway (its presence had lapsed, a message was
                    # lost): read it back from the inbox. Versions sent twice are dropped per connection.
                    self._fill_gap_soon(entry.user_id, since=heard)
                if entry.to_seq is not None and (heard is None or entry.to_seq > heard):
                    self._heard_seq[entry.user_id] = entry.to_seq
            sends += self._route_entry(entry, list(sids))
        await self._emit_all(sends)
        self._record_sent(entries)
        for user_id in {entry.user_id for entry in entries}:
            self._forget_settled(user_id)

    def _record_sent(self, entries: list[LiveEntry]) -> None:
        """IN_APP delivery metrics, per commit (not per socket): versions pushed, and the produce -> send latency
        of the commit's newest event. Entries of users not held here were not sent."""
        sent_ms = wall_clock_ms()
        latencies = []
        pushed = 0
        for entry in entries:
            if not entry.notes or entry.user_id not in self._user_sids:
                continue
            pushed += len(entry.notes)
            if entry.produced_ms is not None:
                latencies.append(max(0, sent_ms - entry.produced_ms) / 1000)
        if pushed:
            self.metrics.inc(metrics.DELIVERIES, pushed, channel="IN_APP", outcome="DELIVERED")
        if latencies:
            self.metrics.observe_many(metrics.PRODUCE_TO_DELIVERY, latencies, channel="IN_APP")

    def _route_entry(self, entry: LiveEntry, sids: list[str]) -> list[Delivery]:
        sends: list[Delivery] = []
        for body in entry.notes:
            sends += self._fanout.route(live.NOTIFICATION_EVENT, body, sids, count_follows=entry.unread is not None)
            self._sample_latency(body)
        self.counters.live_notifications += len(entry.notes)
        if entry.inbox is not None:
            change = entry.inbox | {"userId": entry.user_id, "unread": entry.unread}
            sends += self._fanout.route(INBOX_EVENT, change, sids)
        elif entry.notes and entry.unread is not None:
            sends += self._fanout.route(protocol.UNREAD_EVENT, {"unread": entry.unread}, sids)
        return sends

    async def _emit_all(self, sends: list[Delivery]) -> None:
        """Write each packet once encoded to its local recipients' engine.io sockets, in order.

        This is what python-socketio's emit does for a local recipient, minus what live traffic does not need
        and pays for on every emit: a scan of the payload for binary attachments (Herald sends JSON only), a
        task per recipient and a wait for them, which costs a turn of the event loop per packet."""
        for event, payload, recipients in sends:
            arguments = list(payload) if isinstance(payload, tuple) else [payload]
            packet = self.sio.packet_class(EVENT_PACKET, data=[event, *arguments], namespace=NAMESPACE, binary=False)
            encoded = packet.encode()
            for sid in recipients:
                eio_sid = self.sio.manager.eio_sid_from_sid(sid, NAMESPACE)
                if eio_sid is not None:  # None: the socket is gone
                    await self.sio.eio.send(eio_sid, encoded)

    async def _deliver(self, event: str, payload: Any, sids: list[str], *, count_follows: bool = False) -> None:
        await self._emit_all(self._fanout.route(event, payload, sids, count_follows=count_follows))

    def _forget_settled(self, user_id: str) -> None:
        """Let the user's connections forget the versions sent up to the last commit heard, unless a gap read
        is pending or running: it reads from an older sequence number (herald/gateway/session.py)."""
        heard = self._heard_seq.get(user_id)
        if heard is None or user_id in self._filling or user_id in self._gap_since:
            return
        for sid in self._user_sids.get(user_id, ()):
            session = self._sessions.get(sid)
            if session is not None:
                session.forget_settled(heard)

    def _fill_gap_soon(self, user_id: str, since: int | None = None) -> None:
        """Read what `user_id` missed after sequence number `since` (default: the last one heard) from the
        inbox and push it to the user's connections; gaps found while a read runs are read after it."""
        if user_id not in self._user_sids:
            return
        since = self._heard_seq.get(user_id, 0) if since is None else since
        self._gap_since[user_id] = min(since, self._gap_since.get(user_id, since))
        if user_id in self._filling:
            return
        task = asyncio.create_task(self._fill_gaps(user_id), name=f"herald-gap-{user_id}")
        self._filling[user_id] = task
        task.add_done_callback(lambda _t: self._filling.pop(user_id, None))

    async def _fill_gaps(self, user_id: str) -> None:
        failures = 0
        while (since := self._gap_since.pop(user_id, None)) is not None:
            try:
                self.counters.gaps_filled += 1
                await self._fill_gap(user_id, since)
                failures = 0
            except (HeraldError, RedisError, OSError) as exc:
                self.counters.store_errors += 1
                failures += 1
                if failures > len(GAP_RETRY_DELAYS_S):
                    log.warning("filling the live gap of %s failed (%s); disconnecting it so it replays", user_id, exc)
                    for sid in list(self._user_sids.get(user_id, ())):
                        await self.sio.disconnect(sid)
                    return
                # Redis restarting, most likely: try again shortly rather than send the client away.
                self._gap_since[user_id] = min(since, self._gap_since.get(user_id, since))
                await asyncio.sleep(GAP_RETRY_DELAYS_S[failures - 1])

    async def _fill_gap(self, user_id: str, since: int) -> None:
        async for items in self._inbox_after(user_id, since):
            sids = list(self._user_sids.get(user_id, ()))
            if not sids:
                break
            for body in items:
                await self._deliver(live.NOTIFICATION_EVENT, body, sids, count_follows=True)
        sids = list(self._user_sids.get(user_id, ()))
        if sids:
            unread = await self._store.unread_count(user_id)
            await self._deliver(protocol.UNREAD_EVENT, {"unread": unread}, sids)

    def _malformed_live(self, reason: str) -> None:
        self.counters.malformed_live += 1
        log.error("malformed message on %s: %s; filling every user's gap from the inbox", self._live.channel, reason)
        self._after_subscription_gap()

    def _sample_latency(self, body: dict[str, Any]) -> None:
        # One in 16: enough for percentiles, cheap at thousands per second.
        self._samples_offered += 1
        if self._samples_offered % 16:
            return
        updated = body.get("updatedAt")
        if isinstance(updated, str):
            with contextlib.suppress(ValueError):
                sent_ms = datetime.fromisoformat(updated).timestamp() * 1000
                self._latencies_ms.append(max(0.0, wall_clock_ms() - sent_ms))

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

    async def _replay(self, sid: str, session: ClientSession, since: int | None, presence: asyncio.Future[int]) -> None:
        try:
            seq = await asyncio.shield(presence)
            if session.user_id in self._user_sids:
                self._heard_seq.setdefault(session.user_id, seq)
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
            self._forget_settled(session.user_id)  # the backlog: an idle connection need not remember it
        except (HeraldError, RedisError, OSError) as exc:
            self.counters.store_errors += 1
            log.warning("replay for %s failed (%s); disconnecting it so it reconnects and retries", sid, exc)
            await self.sio.disconnect(
                sid,
            )

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
        async for items in self._inbox_after(session.user_id, since):
            if sid not in self._sessions:
                return
            for body in items:
                if session.admit(body):
                    for event, payload in translate(session.protocol, protocol.NOTIFICATION_EVENT, body).sends:
                        await self._send(sid, event, payload)
                    self.counters.replayed += 1

    async def _inbox_after(self, user_id: str, cursor: int) -> AsyncIterator[list[dict[str, Any]]]:
        """The user's notifications changed after `cursor`, page by page in cursor order (replays and gaps)."""
        for _page in range(MAX_REPLAY_PAGES):
            items = await self._store.notifications_after(user_id, cursor, self.limits.replay_page_size)
            if not items:
                return
            yield items
            cursor = max(cursor, *(int(body["cursor"]) for body in items))

    async def _send(self, sid: str, event: str, payload: Any) -> None:
        # Straight to the local socket: the client is on this gateway, other gateways need not hear of it.
        await self.sio.emit(
            event,
            payload,
            to=sid,
        )

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


def _percentiles(samples: deque[float]) -> dict[str, float | int | None]:
    if not samples:
        return {"p50": None, "p99": None, "samples": 0}
    ordered = sorted(samples)
    return {
        "p50": round(ordered[len(ordered) // 2], 1),
        "p99": round(ordered[min(len(ordered) - 1, (len(ordered) * 99) // 100)], 1),
        "samples": len(ordered),
    }
