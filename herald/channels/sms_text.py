"""SMS text: the GSM-7 / UCS-2 choice, segment arithmetic and shortening to a segment budget.

A message of GSM 03.38 characters only travels as 7-bit septets, 160 to a lone SMS; one other character makes
the whole message UCS-2 (UTF-16 code units), 70 to a lone SMS. A longer message is split into parts that each
spend room on a concatenation header: 153 septets or 67 code units per part. Carriers bill per part, so the
provider shortens a text to `sms_max_segments` parts instead of letting it spill over.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

Encoding = Literal["GSM-7", "UCS-2"]

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Reached through the escape septet, so each costs two septets. Form feed is in the table too (a page break).
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

SINGLE_LIMIT: Mapping[Encoding, int] = {"GSM-7": 160, "UCS-2": 70}
PART_LIMIT: Mapping[Encoding, int] = {"GSM-7": 153, "UCS-2": 67}

GSM_ELLIPSIS = "..."
UNICODE_ELLIPSIS = "…"


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def encoding(text: str) -> Encoding:
    return "GSM-7" if is_gsm7(text) else "UCS-2"


def _widths(text: str, enc: Encoding) -> list[int]:
    """The units each character costs: septets for GSM-7, UTF-16 code units for UCS-2 (2 beyond the BMP)."""
    if enc == "GSM-7":
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def units(text: str) -> int:
    """Septets (GSM-7) or UTF-16 code units (UCS-2) of `text` in its own encoding."""
    return sum(_widths(text, encoding(text)))


def _parts(widths: list[int], enc: Encoding) -> int:
    if sum(widths) <= SINGLE_LIMIT[enc]:
        return 1
    # Filled one character at a time because phones and gateways never split an escape pair or a surrogate pair
    # across parts: such a character that does not fit opens the next part, so ceil(units / 153) can undercount.
    limit = PART_LIMIT[enc]
    parts, used = 1, 0
    for width in widths:
        if used + width > limit:
            parts, used = parts + 1, 0
        used += width
    return parts


def segments(text: str) -> int:
    """How many SMS parts `text` is sent as (an empty text is still one SMS)."""
    enc = encoding(text)
    return _parts(_widths(text, enc), enc)


def _longest_prefix(text: str, suffix: str, max_segments: int) -> int:
    """The longest prefix length n with segments(text[:n] + suffix) <= max_segments (parts only grow with n)."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if segments(text[:mid] + suffix) <= max_segments:
            lo = mid
        else:
            hi = mid - 1
    return lo


def fit(text: str, max_segments: int) -> str:
    """`text` itself when it fits in `max_segments` parts, else its longest prefix that fits with an ellipsis."""
    if max_segments < 1:
        raise ValueError(f"max_segments must be at least 1, got {max_segments}")
    if segments(text) <= max_segments:
        return text
    # "…" is not GSM-7: appended to a GSM-7 text it would switch the message to UCS-2 and cost it over half
    # its room, so GSM-7 prefixes end in "..." instead.
    gsm_part = text[: _gsm_prefix_length(text)]
    gsm_keep = _longest_prefix(gsm_part, GSM_ELLIPSIS, max_segments)
    if len(gsm_part) == len(text):
        return text[:gsm_keep].rstrip() + GSM_ELLIPSIS
    # A UCS-2 text whose non-GSM characters all sit in the cut-off tail keeps more as GSM-7 with "...".
    ucs_keep = _longest_prefix(text, UNICODE_ELLIPSIS, max_segments)
    if gsm_keep > ucs_keep:
        return text[:gsm_keep].rstrip() + GSM_ELLIPSIS
    return text[:ucs_keep].rstrip() + UNICODE_ELLIPSIS


def _gsm_prefix_length(text: str) -> int:
    for index, ch in enumerate(text):
        if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION:
            return index
    return len(text)


def render(payload: Mapping[str, Any]) -> str:
    """The SMS text of a notification body, or of a digest ({"digest": {"count": N, "items": [...]}})."""
    digest = payload.get("digest")
    if isinstance(digest, Mapping):
        items = digest.get("items")
        count = digest.get("count")
        if not isinstance(count, int):
            count = len(items) if isinstance(items, list) else 0
        return f"You have {count} new notification{'' if count == 1 else 's'}"
    for key in ("text", "title", "message"):
        value = payload.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return "You have a new notification"
