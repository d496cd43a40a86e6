"""The dead-letter record's headers and partition (herald/dlq.py)."""

from __future__ import annotations

import pytest

from herald.dlq import (
    HEADER_ORIGINAL_BYTES,
    HEADER_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    KEPT_PREFIX_BYTES,
    MAX_REASON_BYTES,
    SourceRecord,
    dlq_headers,
    dlq_partition,
    kept_value,
)
from herald.events import MAX_EVENT_BYTES


def test_a_source_partition_maps_to_one_dlq_partition_and_all_dlq_partitions_are_used() -> None:
    assert [dlq_partition(p, 3) for p in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert {dlq_partition(p, 12) for p in range(12)} == set(range(12))


def test_a_dlq_without_partitions_is_an_error_not_a_division_by_zero() -> None:
    with pytest.raises(ValueError, match="0 partitions"):
        dlq_partition(4, 0)


def test_headers_carry_the_source_and_a_reason_cut_on_a_character_boundary() -> None:
    reason = "é" * MAX_REASON_BYTES  # two bytes each: the cut falls inside a character unless it is moved
    headers = dict(dlq_headers(reason=reason, stage="reader", source=SourceRecord("events", 5, 1234)))
    assert headers[HEADER_SOURCE_PARTITION] == b"5"
    assert headers[HEADER_SOURCE_OFFSET] == b"1234"
    assert len(headers[HEADER_REASON]) <= MAX_REASON_BYTES
    assert headers[HEADER_REASON].decode() == "é" * (MAX_REASON_BYTES // 2)


def test_a_value_within_the_event_limit_is_kept_whole_and_a_bigger_one_is_cut_and_sized() -> None:
    whole = b"x" * MAX_EVENT_BYTES
    assert kept_value(whole) == (whole, None)
    assert kept_value(None) == (b"", None)
    cut, original = kept_value(whole + b"yz")
    assert (cut, original) == (whole[:KEPT_PREFIX_BYTES], MAX_EVENT_BYTES + 2)
    headers = dict(dlq_headers(reason="too big", stage="reader", original_bytes=original))
    assert headers[HEADER_ORIGINAL_BYTES] == str(MAX_EVENT_BYTES + 2).encode()
