"""The TIME arguments of `herald replay` and `herald audit`: an ISO-8601 instant, a span back from now (`90s`,
`15m`, `2h`, `7d`), `now`, or `earliest` (the start of the topic's retention)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from herald.errors import HeraldError

EARLIEST = "earliest"
_SPAN = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}


class TimeSpecError(HeraldError):
    """A TIME argument that is none of the accepted forms."""


def parse_time(text: str, *, now_ms: int) -> int | None:
    """Epoch milliseconds, or None for `earliest`. An ISO time without an offset is UTC (Kafka stamps UTC)."""
    value = text.strip()
    lowered = value.lower()
    if lowered in (EARLIEST, "beginning"):
        return None
    if lowered == "now":
        return now_ms
    span = _SPAN.match(lowered)
    if span:
        return now_ms - int(float(span.group(1)) * _UNIT_MS[span.group(2)])
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise TimeSpecError(
            f"not a time: {value[:64]!r} (use an ISO-8601 time like 2026-11-26T10:00:00Z, a span back from now "
            "like 30m, 2h or 7d, `now` or `earliest`)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def iso_of(epoch_ms: int | None) -> str | None:
    """The instant as `2026-11-26T10:00:00.000Z`, for output."""
    if epoch_ms is None:
        return None
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
