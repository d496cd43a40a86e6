"""How the HTTP providers turn a response or a transport failure into a DeliveryError."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from herald.errors import DeliveryError

# A receiver that asks for hours would hold a delivery actor that long; past this bound the entry is better
# retried by the next attempt's backoff (or reclaimed) than parked.
MAX_RETRY_AFTER_S = 300.0


def retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT by definition; a sloppy one without a zone is read as such
        return None
    wait = when.timestamp() - (time.time() if now is None else now)
    return min(max(wait, 0.0), MAX_RETRY_AFTER_S)


def is_retriable_status(status: int) -> bool:
    """408 and 429 are the receiver's load or patience, 5xx its own trouble; other 4xx would repeat."""
    return status in (408, 429) or status >= 500


def origin(url: str) -> str:
    """scheme://host[:port] of `url`: a reason names the endpoint without a path or query that may hold a token."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def redact(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def status_error(what: str, response: httpx.Response, detail: str = "") -> DeliveryError:
    """The DeliveryError of a non-2xx response; the reason names the status so operators can tell them apart."""
    reason = f"{what} answered HTTP {response.status_code}" + (f": {detail}" if detail else "")
    if not is_retriable_status(response.status_code):
        return DeliveryError(reason, retriable=False)
    wait = retry_after_s(response.headers.get("retry-after")) if response.status_code in (429, 503) else None
    return DeliveryError(reason, retriable=True, retry_after_s=wait)


def transport_error(what: str, exc: httpx.HTTPError, timeout_s: float) -> DeliveryError:
    if isinstance(exc, httpx.UnsupportedProtocol):
        return DeliveryError(f"{what}: unsupported URL scheme", retriable=False)
    if isinstance(exc, httpx.TimeoutException):
        return DeliveryError(f"{what} timed out after {timeout_s:g} s ({type(exc).__name__})", retriable=True)
    return DeliveryError(f"{what} unreachable ({type(exc).__name__})", retriable=True)
