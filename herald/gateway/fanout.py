"""Live emits to this gateway's connections: each session admits, holds or drops an emit; the admitted ones
are grouped by protocol and the emit is translated once per group; counts follow where a protocol wants them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from herald.gateway.counts import CountRefresher
from herald.gateway.session import ClientSession
from herald.gateway.translate import Translation, count_event, translate

Send = Callable[[str, str, Any], Awaitable[None]]  # (sid, event, payload) straight to a local socket
# (event, payload, recipient sids): one packet to write to those sockets.
Delivery = tuple[str, Any, list[str]]


class Fanout:
    def __init__(
        self,
        sessions: dict[str, ClientSession],
        send: Send,
        *,
        read_count: Callable[[str], Awaitable[int]],
        count_window_s: float,
        on_count_error: Callable[[Exception], None],
    ) -> None:
        self._sessions = sessions
        self._send = send
        self._counts = CountRefresher(read_count, self._deliver_count, window_s=count_window_s, on_error=on_count_error)

    def route(self, event: str, payload: Any, sids: list[str], *, count_follows: bool = False) -> list[Delivery]:
        """What to send to whom for one emit, in order. `count_follows`: an exact unread count is sent right
        after, so a protocol that wants a count after this emit need not read one."""
        groups: dict[str, list[tuple[str, ClientSession]]] = {}
        for sid in sids:
            session = self._sessions.get(sid)
            # No session: the socket is going away; nothing unchecked leaves the gateway.
            if session is not None and session.accept_live(event, payload):
                groups.setdefault(session.protocol, []).append((sid, session))
        deliveries: list[Delivery] = []
        for protocol_name, members in groups.items():
            translation = translate(protocol_name, event, payload)
            recipients = [sid for sid, _session in members]
            deliveries += [(out_event, out, recipients) for out_event, out in translation.live()]
            self._follow_counts(translation, members, count_follows=count_follows)
        return deliveries

    def _follow_counts(
        self, translation: Translation, members: list[tuple[str, ClientSession]], *, count_follows: bool
    ) -> None:
        for sid, session in members:
            if translation.count is not None:
                self._counts.superseded(session.user_id)
            if translation.refresh_count and not count_follows:
                self._counts.request(session.user_id, sid)

    def refresh_count(self, session: ClientSession, sid: str) -> None:
        """Read the unread count soon (coalesced with other requests for the user) and send it to `sid`."""
        self._counts.request(session.user_id, sid)

    async def send_count(self, sid: str, session: ClientSession, unread: int) -> None:
        self._counts.superseded(session.user_id)
        await self._send(sid, *count_event(session.protocol, unread))

    async def _deliver_count(self, sid: str, unread: int) -> None:
        session = self._sessions.get(sid)
        if session is not None:
            await self.send_count(sid, session, unread)

    @property
    def counts_pending(self) -> int:
        return self._counts.pending

    async def close(self) -> None:
        await self._counts.close()
