"""The client side of the Socket.IO protocol (DESIGN section 7): connect `auth`, client event payloads and
their acknowledgements. Payloads are validated strictly; a malformed one gets `{ok: false, error}`."""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

NOTIFICATION_EVENT: Final = "notification"
UNREAD_EVENT: Final = "unread_count"
MAX_ID_CHARS: Final = 256
MAX_TOKEN_CHARS: Final = 8192


class ProtocolError(ValueError):
    """A client sent something the protocol does not allow; the message goes back in the ack."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConnectAuth(_Request):
    model_config = ConfigDict(extra="ignore", frozen=True)

    token: StrictStr = Field(min_length=1, max_length=MAX_TOKEN_CHARS)
    since: StrictInt | None = Field(default=None, ge=0)


class MarkReadRequest(_Request):
    ids: list[StrictStr] = Field(min_length=1)


class FetchRequest(_Request):
    before: StrictInt | None = Field(default=None, ge=0)
    limit: StrictInt = Field(default=20, ge=1)


def _explain(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "payload"
    return f"{where}: {first['msg']}"


def parse_connect_auth(auth: Any) -> ConnectAuth:
    if not isinstance(auth, dict) or not auth.get("token"):
        raise ProtocolError("missing token: connect with auth {token, since}")
    since = auth.get("since")
    # Browsers keep the cursor in localStorage, which stores strings: accept a decimal string too.
    if isinstance(since, str) and since.isdecimal():
        auth = {**auth, "since": int(since)}
    try:
        return ConnectAuth.model_validate(auth)
    except ValidationError as exc:
        raise ProtocolError(f"invalid auth: {_explain(exc)}") from None


def parse_mark_read(args: tuple[Any, ...], *, max_ids: int) -> MarkReadRequest:
    payload = _single(args)
    if payload is None:
        raise ProtocolError("mark_read needs a payload {ids: [string, ...]}")
    try:
        request = MarkReadRequest.model_validate(payload)
    except ValidationError as exc:
        raise ProtocolError(_explain(exc)) from None
    if len(request.ids) > max_ids:
        raise ProtocolError(f"ids: at most {max_ids} per call")
    if any(not i or len(i) > MAX_ID_CHARS for i in request.ids):
        raise ProtocolError(f"ids: each id must be 1 to {MAX_ID_CHARS} characters")
    return request


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
