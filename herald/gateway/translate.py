"""What an emit that reaches the gateway becomes for a connection of each protocol (pure).

Emits arrive in Herald's internal vocabulary: `notification` bodies, `unread_count` and `herald:inbox` changes
(reads and deletes). Each is translated once per protocol per emit, not once per socket; the gateway then
sends the result to every admitted connection of that protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from herald.gateway import compat, protocol
from herald.live import INBOX_EVENT

log = logging.getLogger(__name__)

Send = tuple[str, Any]


@dataclass(frozen=True, slots=True)
class Translation:
    """What one emit becomes for connections of one protocol."""

    sends: tuple[Send, ...] = ()
    # The unread count the emit carries, apart from `sends`: a replay drops it when it is older than the count
    # the replay read itself.
    count: Send | None = None
    # The unread count changed but the emit does not say to what: the gateway reads it from the store.
    refresh_count: bool = False

    def live(self) -> tuple[Send, ...]:
        return self.sends if self.count is None else (*self.sends, self.count)


class InboxChange(BaseModel):
    """`herald:inbox`: a user's inbox changed by reads or deletes (from the pipeline or a gateway)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    user_id: StrictStr = Field(alias="userId", min_length=1)
    read: list[StrictStr] = Field(default_factory=list)
    deleted: list[StrictStr] = Field(default_factory=list)
    all_read: StrictBool = Field(default=False, alias="all")
    before: StrictStr | None = None
    unread: StrictInt | None = Field(default=None, ge=0)


def inbox_change(user_id: str, *, read: list[str] | None, unread: int) -> dict[str, Any]:
    """The `herald:inbox` payload a gateway emits after a client's mark_read (`read` None: everything)."""
    change = InboxChange(user_id=user_id, read=read or [], all_read=read is None, unread=unread)
    return change.model_dump(by_alias=True)


def count_event(protocol_name: str, unread: int) -> Send:
    return _COUNT[protocol_name](unread)


def translate(protocol_name: str, event: str, payload: Any) -> Translation:
    translator = _TRANSLATORS[protocol_name].get(event)
    if translator is None:
        # Not part of Herald's protocol: passed on untouched, as before there were two protocols.
        return Translation(sends=((event, payload),))
    return translator(payload)


def _parse_inbox(payload: Any) -> InboxChange | None:
    try:
        return InboxChange.model_validate(payload)
    except ValidationError as exc:
        log.warning("dropping a malformed %s emit: %s", INBOX_EVENT, exc.errors(include_url=False)[:1])
        return None


def _with_count(protocol_name: str, sends: list[Send], unread: int | None) -> Translation:
    if unread is None:
        return Translation(sends=tuple(sends), refresh_count=True)
    return Translation(sends=tuple(sends), count=count_event(protocol_name, unread))


# -- Herald's own protocol -------------------------------------------------------------------------------


def _native_notification(payload: Any) -> Translation:
    return Translation(sends=((protocol.NOTIFICATION_EVENT, payload),))


def _native_unread(payload: Any) -> Translation:
    return Translation(count=(protocol.UNREAD_EVENT, payload))


def _native_inbox(payload: Any) -> Translation:
    change = _parse_inbox(payload)
    if change is None:
        return Translation()
    sends: list[Send] = []
    if change.read or change.all_read:
        sends.append((protocol.READ_EVENT, {"ids": change.read, "all": change.all_read, "before": change.before}))
    if change.deleted:
        sends.append((protocol.DELETED_EVENT, {"ids": change.deleted}))
    return _with_count(protocol.HERALD, sends, change.unread)


# -- the existing application's protocol -----------------------------------------------------------------


def _compat_notification(payload: Any) -> Translation:
    if not isinstance(payload, dict):
        return Translation()
    # The application's clients expect a fresh count after every new notification.
    return Translation(sends=((compat.NEW_EVENT, compat.new_notification(payload)),), refresh_count=True)


def _compat_unread(payload: Any) -> Translation:
    unread = payload.get("unread") if isinstance(payload, dict) else None
    if not isinstance(unread, int):
        return Translation()
    return Translation(count=count_event(protocol.COMPAT, unread))


def _compat_inbox(payload: Any) -> Translation:
    change = _parse_inbox(payload)
    if change is None:
        return Translation()
    sends: list[Send] = [(compat.READ_EVENT, compat.read(i)) for i in change.read]
    sends += [(compat.DELETED_EVENT, compat.deleted(i)) for i in change.deleted]
    if change.all_read:
        sends.append((compat.ALL_READ_EVENT, compat.all_read(change.before)))
    return _with_count(protocol.COMPAT, sends, change.unread)


_COUNT: dict[str, Callable[[int], Send]] = {
    protocol.HERALD: lambda unread: (protocol.UNREAD_EVENT, {"unread": unread}),
    protocol.COMPAT: lambda unread: (compat.COUNT_EVENT, compat.count_updated(unread)),
}

_TRANSLATORS: dict[str, dict[str, Callable[[Any], Translation]]] = {
    protocol.HERALD: {
        protocol.NOTIFICATION_EVENT: _native_notification,
        protocol.UNREAD_EVENT: _native_unread,
        INBOX_EVENT: _native_inbox,
    },
    protocol.COMPAT: {
        protocol.NOTIFICATION_EVENT: _compat_notification,
        protocol.UNREAD_EVENT: _compat_unread,
        INBOX_EVENT: _compat_inbox,
    },
}
