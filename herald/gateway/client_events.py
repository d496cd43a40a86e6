"""Client events of both protocols: validate, call the store, answer with the ack. One dispatch table per
protocol, so a connection can only use the events of the protocol it chose at connect."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from herald.gateway import compat, protocol
from herald.gateway.analytics import AnalyticsPublisher
from herald.gateway.limits import GatewayLimits
from herald.gateway.session import ClientSession
from herald.gateway.translate import inbox_change
from herald.push_subscriptions import PushSubscriptionError, PushSubscriptionStore
from herald.store import InboxStore

Handler = Callable[[str, ClientSession, tuple[Any, ...]], Awaitable[dict[str, Any]]]
# Announces a user's inbox change to every connection of that user, on every gateway (through the manager).
Announce = Callable[[str, dict[str, Any]], Awaitable[None]]
# Sends a count to one local connection, in its protocol.
SendCount = Callable[[str, ClientSession, int], Awaitable[None]]


class ClientEvents:
    def __init__(
        self,
        store: InboxStore,
        limits: GatewayLimits,
        analytics: AnalyticsPublisher,
        *,
        announce: Announce,
        send_count: SendCount,
        push_subscriptions: PushSubscriptionStore | None = None,
    ) -> None:
        self._store = store
        self._limits = limits
        self._analytics = analytics
        self._announce = announce
        self._send_count = send_count
        self._push = push_subscriptions
        push_events: dict[str, Handler] = {
            "register_push": self._register_push,
            "unregister_push": self._unregister_push,
        }
        self._tables: dict[str, dict[str, Handler]] = {
            protocol.HERALD: {
                "mark_read": self._mark_read,
                "mark_all_read": self._mark_all_read,
                "fetch": self._fetch,
                **push_events,
            },
            protocol.COMPAT: {
                compat.MARK_READ: self._compat_mark_read,
                compat.MARK_ALL_READ: self._compat_mark_all_read,
                compat.GET_COUNT: self._compat_get_count,
                compat.JOIN: self._compat_join,
                **push_events,
            },
        }

    def handler(self, protocol_name: str, event: str) -> Handler | None:
        return self._tables[protocol_name].get(event)

    # -- Herald's own protocol ---------------------------------------------------------------------------

    async def _mark_read(self, _sid: str, session: ClientSession, args: tuple[Any, ...]) -> dict[str, Any]:
        request = protocol.parse_mark_read(args, max_ids=self._limits.mark_read_max_ids)
        return protocol.ok(unread=await self._read(session.user_id, request.ids))

    async def _mark_all_read(self, _sid: str, session: ClientSession, args: tuple[Any, ...]) -> dict[str, Any]:
        protocol.parse_mark_all_read(args)
        return protocol.ok(unread=await self._read(session.user_id, None))

    async def _fetch(self, _sid: str, session: ClientSession, args: tuple[Any, ...]) -> dict[str, Any]:
        request = protocol.parse_fetch(args, max_limit=self._limits.fetch_max_limit)
        items = await self._store.notifications_before(session.user_id, request.before, request.limit)
        next_cursor = int(items[-1]["cursor"]) if len(items) >= request.limit else None
        return protocol.ok(items=items, nextCursor=next_cursor)

    async def _register_push(self, _sid: str, session: ClientSession, args: tuple[Any, ...]) -> dict[str, Any]:
        """A Web Push subscription as the browser's PushManager gives it, or {fcmToken} from a mobile app."""
        store = self._push_store()
        try:
            stored = await store.add(session.user_id, args[0] if args else None)
        except PushSubscriptionError as exc:
            raise protocol.ProtocolError(f"register_push: {exc}") from None
        return protocol.ok(registered=stored.get("endpoint") or "fcm")

    async def _unregister_push(self, _sid: str, session: ClientSession, args: tuple[Any, ...]) -> dict[str, Any]:
        store = self._push_store()
        payload = args[0] if args else None
        try:
            removed = await store.remove(session.user_id, payload if isinstance(payload, dict) else str(payload))
        except PushSubscriptionError as exc:
            raise protocol.ProtocolError(f"unregister_push: {exc}") from None
        return protocol.ok(removed=removed)

    def _push_store(self) -> PushSubscriptionStore:
        if self._push is None:
            raise protocol.ProtocolError("push registration is not available on this gateway")
        return self._push

    # -- the existing application's protocol -------------------------------------------------------------

    async def _compat_mark_read(self, _sid: str, session: ClientSession, args: tuple[Any, ...]) -> dict[str, Any]:
        ids = protocol.parse_compat_mark_read(args, max_ids=self._limits.mark_read_max_ids)
        return protocol.ok(unreadCount=await self._read(session.user_id, ids))

    async def _compat_mark_all_read(self, _sid: str, session: ClientSession, args: tuple[Any, ...]) -> dict[str, Any]:
        protocol.parse_compat_no_payload(args)
        return protocol.ok(unreadCount=await self._read(session.user_id, None))

    async def _compat_get_count(self, sid: str, session: ClientSession, args: tuple[Any, ...]) -> dict[str, Any]:
        protocol.parse_compat_no_payload(args)
        unread = await self._store.unread_count(session.user_id)
        # The application's clients update their badge from the event, some only from it.
        await self._send_count(sid, session, unread)
        return protocol.ok(unreadCount=unread)

    async def _compat_join(self, _sid: str, _session: ClientSession, _args: tuple[Any, ...]) -> dict[str, Any]:
        # The application's clients ask to join their notifications room (naming a user id). A connection is
        # already in its own user's rooms and never joins another's, whatever the payload names.
        return protocol.ok()

    # -- shared ------------------------------------------------------------------------------------------

    async def _read(self, user_id: str, ids: list[str] | None) -> int:
        unread = await self._store.mark_read(user_id, ids)
        # As an inbox change rather than a bare count, so every device of the user, on every gateway and in
        # either protocol, learns which notifications were read, with the count.
        await self._announce(user_id, inbox_change(user_id, read=ids, unread=unread))
        self._analytics.publish_read(user_id, ids)
        return unread
