"""The client side of the Socket.IO protocols (docs/architecture.md, "Socket.IO protocol"): connect `auth`,
client event payloads and their acknowledgements, for Herald's own protocol and the existing application's
("compat"). Payloads are validated strictly; a malformed one gets `{ok: false, error}`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

NOTIFICATION_EVENT: Final = "notification"
UNREAD_EVENT: Final = "unread_count"
READ_EVENT: Final = "notifications_read"
DELETED_EVENT: Final = "notifications_deleted"
MAX_ID_CHARS: Final = 256
MAX_TOKEN_CHARS: Final = 8192

HERALD: Final = "herald"
COMPAT: Final = "compat"
PROTOCOLS: Final = (HERALD, COMPAT)


class ProtocolError(ValueError):
    """A client sent something the protocol does not allow; the message goes back in the ack."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConnectAuth(_Request):
    model_config = ConfigDict(extra="ignore", frozen=True)

    # None: the client may still be authenticated by its session cookie.
    token: StrictStr | None = Field(default=None, min_length=1, max_length=MAX_TOKEN_CHARS)
    since: StrictInt | None = Field(default=None, ge=0)
    protocol: StrictStr = HERALD


class MarkReadRequest(_Request):
    ids: list[StrictStr] = Field(min_length=1)


class CompatMarkReadRequest(_Request):
    # The application's clients are not ours to tighten: fields beyond these (a userId, say) are ignored.
    model_config = ConfigDict(extra="ignore", frozen=True)

    notification_id: StrictStr | None = Field(default=None, alias="notificationId")
    notification_ids: list[StrictStr] | None = Field(default=None, alias="notificationIds", min_length=1)


class FetchRequest(_Request):
    before: StrictInt | None = Field(default=None, ge=0)
    limit: StrictInt = Field(default=20, ge=1)


def _explain(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "payload"
    return f"{where}: {first['msg']}"


def parse_connect_auth(auth: Any, query_string: str = "", default_protocol: str = HERALD) -> ConnectAuth:
    """The connect request: `auth` {token, since, protocol}, the protocol also from `?protocol=` in the query
    string, else `default_protocol`. A missing token is left to the authenticator (cookies)."""
    if auth is None:
        auth = {}
    if not isinstance(auth, dict):
        raise ProtocolError("invalid auth: connect with auth {token, since, protocol}")
    fields = {key: value for key, value in auth.items() if key != "token" or value not in (None, "")}
    since = fields.get("since")
    # Browsers keep the cursor in localStorage, which stores strings: accept a decimal string too.
    if isinstance(since, str) and since.isdecimal():
        fields["since"] = int(since)
    if fields.get("protocol") is None:
        fields["protocol"] = _query_value(query_string, "protocol") or default_protocol
    try:
        request = ConnectAuth.model_validate(fields)
    except ValidationError as exc:
        raise ProtocolError(f"invalid auth: {_explain(exc)}") from None
    if request.protocol not in PROTOCOLS:
        raise ProtocolError(f"unknown protocol {request.protocol[:32]!r}: use {' or '.join(map(repr, PROTOCOLS))}")
    return request


def _query_value(query_string: str, name: str) -> str | None:
    values = parse_qs(query_string or "").get(name)
    return values[0] if values else None


def parse_mark_read(args: tuple[Any, ...], *, max_ids: int) -> MarkReadRequest:
    payload = _single(args)
    if payload is None:
        raise ProtocolError("mark_read needs a payload {ids: [string, ...]}")
    try:
        request = MarkReadRequest.model_validate(payload)
    except ValidationError as exc:
        raise ProtocolError(_explain(exc)) from None
    _check_ids("ids", request.ids, max_ids)
    return request


def parse_compat_mark_read(args: tuple[Any, ...], *, max_ids: int) -> list[str]:
    """`notification:mark_read` {notificationId} or {notificationIds: [...]}: the ids to mark."""
    payload = _single(args)
    if payload is None:
        raise ProtocolError("notification:mark_read needs a payload {notificationId} or {notificationIds}")
    try:
        request = CompatMarkReadRequest.model_validate(payload)
    except ValidationError as exc:
        raise ProtocolError(_explain(exc)) from None
    if (request.notification_id is None) == (request.notification_ids is None):
        raise ProtocolError("give exactly one of notificationId and notificationIds")
    if request.notification_ids is None:
        ids, field = [str(request.notification_id)], "notificationId"
    else:
        ids, field = request.notification_ids, "notificationIds"
    _check_ids(field, ids, max_ids)
    return ids


def parse_compat_no_payload(args: tuple[Any, ...]) -> None:
    """Compat events without arguments: the application's clients may send an object (a userId, say); it is
    ignored, the user is the authenticated one."""
    _single(args)


def _check_ids(field: str, ids: Sequence[str], max_ids: int) -> None:
    if len(ids) > max_ids:
        raise ProtocolError(f"{field}: at most {max_ids} per call")
    if any(not i or len(i) > MAX_ID_CHARS for i in ids):
        raise ProtocolError(f"{field}: each id must be 1 to {MAX_ID_CHARS} characters")


def parse_fetch(args: tuple[Any, ...], *, max_limit: int) -> FetchRequest:
    payload = _single(args)
    try:
        request = FetchRequest.model_validate({} if payload is None else payload)
    except ValidationError as exc:
        raise ProtocolError(_explain(exc)) from None
    if request.limit > max_limit:
        raise ProtocolError(f"limit: at most {max_limit}")
    return request


def parse_mark_all_read(args: tuple[Any, ...]) -> None:
    payload = _single(args)
    if payload not in (None, {}):
        raise ProtocolError("mark_all_read takes no payload (or an empty object)")


def _single(args: tuple[Any, ...]) -> Any:
    if len(args) > 1:
        raise ProtocolError(f"expected one payload argument, got {len(args)}")
    payload = args[0] if args else None
    if payload is not None and not isinstance(payload, dict):
        raise ProtocolError(f"payload must be an object, got {type(payload).__name__}")
    return payload


def ok(**fields: Any) -> dict[str, Any]:
    return {"ok": True, **fields}


def error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}
