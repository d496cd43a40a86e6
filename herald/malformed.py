"""Malformed Kafka records of every kind the reader must dead-letter, for the bad-input run (tests and
`scripts/bench.py badinput`) and the fuzz tests: truncated JSON, wrong types, huge fields, invalid UTF-8, unknown
types, values over 1 MiB, numbers JSON cannot hold, and reads that name nothing. Deterministic for a seed.

Each record says which kind it is and a piece of the reason its DLQ record must carry, so a run can check not only
that everything arrived in `notification-dlq` but that it arrived for the right reason (docs/reliability.md).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from herald.events import MAX_EVENT_BYTES, MAX_ID_CHARS
from herald.prepared import MAX_IDS_PER_EVENT


@dataclass(frozen=True)
class MalformedRecord:
    kind: str
    key: bytes | None
    value: bytes | None  # None: a tombstone
    expect: str  # a piece of the DLQ reason


def _valid(user: str, i: int) -> dict[str, Any]:
    at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "type": "NOTIFICATION_CREATED",
        "userId": user,
        "notification": {
            "type": "POST_LIKED",
            "actor": {"id": f"a{i}", "name": f"Actor {i}"},
            "target": {"type": "post", "id": f"p{i % 7}"},
            "data": {},
        },
        "channels": ["IN_APP"],
        "priority": "NORMAL",
        "timestamp": at,
    }


def _truncated(rng: random.Random, user: str, i: int) -> tuple[bytes | None, str]:
    raw = orjson.dumps(_valid(user, i))
    return raw[: rng.randrange(1, len(raw) - 1)], "not valid JSON"


def _wrong_type(rng: random.Random, user: str, i: int) -> tuple[bytes | None, str]:
    event = _valid(user, i)
    field, value = rng.choice(
        [
            ("userId", 12345),
            ("channels", "IN_APP"),
            ("priority", 3),
            ("notification", ["POST_LIKED"]),
            ("timestamp", 1795687200000),
            ("metadata", "none"),
            ("eventId", True),
        ]
    )
    event[field] = value
    return orjson.dumps(event), field


def _huge_field(rng: random.Random, user: str, i: int) -> tuple[bytes | None, str]:
    event = _valid(user, i)
    huge = "x" * rng.randrange(MAX_ID_CHARS + 1, 200_000)
    where = rng.choice(["userId", "eventId", "actor", "target"])
    if where in ("userId", "eventId"):
        event[where] = huge
    else:
        event["notification"][where]["id"] = huge
    return orjson.dumps(event), f"at most {MAX_ID_CHARS} characters"


def _invalid_utf8(rng: random.Random, user: str, i: int) -> tuple[bytes | None, str]:
    raw = orjson.dumps(_valid(user, i))
    bad = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"])
    return raw.replace(b'"Actor ', b'"Actor ' + bad, 1), "not valid UTF-8"


def _unknown_type(rng: random.Random, user: str, i: int) -> tuple[bytes | None, str]:
    event = _valid(user, i)
    event["type"] = rng.choice(["NOTIFICATION_EXPLODED", "notification_created", "", "DELETE_EVERYTHING"])
    return orjson.dumps(event), "type"


def _oversized(rng: random.Random, user: str, i: int) -> tuple[bytes | None, str]:
    # Just over the limit and under the topic's max.message.bytes (1 MiB + 64 KiB), so Kafka takes it.
    event = _valid(user, i)
    event["notification"]["message"] = "m" * (MAX_EVENT_BYTES + rng.randrange(1, 16_384))
    return orjson.dumps(event), "more than the limit"


def _not_an_object(rng: random.Random, user: str, i: int) -> tuple[bytes | None, str]:
    return rng.choice([b"[]", b'"event"', b"42", b"null", b"true"]), "must be a JSON object"


def _bad_number(rng: random.Random, user: str, i: int) -> tuple[bytes | None, str]:
    raw = orjson.dumps(_valid(user, i))
    number = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"123456789012345678901234567890"])
    return raw.replace(b'"data":{}', b'"data":{"score":' + number + b"}", 1), "notification.data.score"


def _bad_timestamp(rng: random.Random, user: str, i: int) -> tuple[bytes | None, str]:
    event = _valid(user, i)
    event["timestamp"] = rng.choice(["yesterday", "2026-13-45T99:00:00Z", "0001-01-01T00:00:00+23:59", ""])
    return orjson.dumps(event), "timestamp"


def _missing_field(rng: random.Random, user: str, i: int) -> tuple[bytes | None, str]:
    event = _valid(user, i)
    field = rng.choice(["userId", "notification", "type"])
    del event[field]
    return orjson.dumps(event), "required" if field != "type" else "type"


def _tombstone(rng: random.Random, user: str, i: int) -> tuple[bytes | None, str]:
    return None, "tombstone"


def _names_nothing(rng: random.Random, user: str, i: int) -> tuple[bytes | None, str]:
    # Decodes, so the aggregator refuses it (stage "aggregator"): a read must name what it reads.
    event = {"type": "NOTIFICATION_READ", "userId": user, "timestamp": _valid(user, i)["timestamp"]}
    return orjson.dumps(event), "notificationId"


def _too_many_ids(rng: random.Random, user: str, i: int) -> tuple[bytes | None, str]:
    ids = [f"n{j}" for j in range(MAX_IDS_PER_EVENT + 1 + rng.randrange(5000))]
    event = {"type": "NOTIFICATION_READ", "userId": user, "notificationIds": ids, "timestamp": "2026-11-26T10:00Z"}
    return orjson.dumps(event), f"more than {MAX_IDS_PER_EVENT}"


# Kinds that decode: the reader passes them on and the aggregator refuses them (stage "aggregator").
REFUSED_BY_AGGREGATOR: Final = frozenset({"names_nothing"})

Maker = Callable[[random.Random, str, int], tuple[bytes | None, str]]

# kind -> (maker, weight). Values over 1 MiB are rare (they are what costs the broker), the rest equally common.
KINDS: Final[dict[str, tuple[Maker, int]]] = {
    "truncated_json": (_truncated, 100),
    "wrong_type": (_wrong_type, 100),
    "huge_field": (_huge_field, 20),
    "invalid_utf8": (_invalid_utf8, 100),
    "unknown_type": (_unknown_type, 100),
    "not_an_object": (_not_an_object, 100),
    "bad_number": (_bad_number, 100),
    "bad_timestamp": (_bad_timestamp, 100),
    "missing_field": (_missing_field, 100),
    "tombstone": (_tombstone, 50),
    "names_nothing": (_names_nothing, 50),
    "too_many_ids": (_too_many_ids, 10),
    "over_1_mib": (_oversized, 1),
}


def malformed_records(run: str, count: int, *, users: int = 1000, seed: int = 11) -> list[MalformedRecord]:
    """`count` malformed records keyed by `<run>-m<n>` users, every kind at least once when count allows."""
    rng = random.Random(seed)  # noqa: S311 - test data, reproducible by seed
    names = list(KINDS)
    weights = [KINDS[k][1] for k in names]
    picks = names[: min(count, len(names))] + rng.choices(names, weights, k=max(count - len(names), 0))
    out = []
    for i, kind in enumerate(picks):
        user = f"{run}-m{i % users}"
        value, expect = KINDS[kind][0](rng, user, i)
        out.append(MalformedRecord(kind, user.encode(), value, expect))
    return out
