"""What a gateway connection and an aggregator remember grows with what is in flight, not with traffic: a
long-lived connection forgets the versions it was sent once they are settled, and the aggregator's record of
profiles it wrote stays within its cap however many new actors arrive."""

from __future__ import annotations

import time
from typing import Any

from herald.applier import WRITTEN_PROFILES_CAP, InboxApplier
from herald.directory import MemoryUserDirectory
from herald.events import validate_event
from herald.gateway.limits import TokenBucket
from herald.gateway.session import ClientSession
from herald.store_memory import MemoryStore


def note(notification_id: str, version: int, cursor: int | None) -> dict[str, Any]:
    return {"id": notification_id, "version": version, "cursor": cursor}


def session(*, max_remembered: int = 2048) -> ClientSession:
    bucket = TokenBucket(20, 40, clock_s=lambda: 0.0)
    return ClientSession(user_id="u1", bucket=bucket, max_remembered=max_remembered, replaying=False)


def test_a_long_lived_connection_remembers_only_what_is_not_settled() -> None:
    s = session()
    for cursor in range(1, 100_001):  # a notification per commit, the commit heard right after
        assert s.admit(note(f"n{cursor}", 1, cursor))
        s.forget_settled(cursor - 1)
    assert len(s.sent_versions) == 1
    s.forget_settled(100_000)
    assert not s.sent_versions


def test_versions_above_the_settled_sequence_still_drop_duplicates() -> None:
    s = session()
    assert s.admit(note("a", 1, 5))
    assert s.admit(note("b", 1, 6))
    assert s.admit(note("a", 2, 7))
    s.forget_settled(6)
    assert list(s.sent_versions) == ["a"]
    assert not s.admit(note("a", 2, 7))  # the gap read sends again what live already sent
    assert not s.admit(note("a", 1, 5))  # and never an older version
    assert s.admit(note("a", 3, 8))


def test_a_forgotten_version_redelivered_is_still_stale() -> None:
    s = session()
    assert s.admit(note("a", 3, 5))
    s.forget_settled(5)
    assert not s.sent_versions
    assert not s.admit(note("a", 2, 5))  # the client has version 3: cursor 5 is settled
    assert not s.admit(note("b", 1, 4))
    assert s.admit(note("a", 4, 6))  # a later commit is news


def test_nothing_is_forgotten_during_a_replay() -> None:
    s = session()
    s.replaying = True
    assert s.admit(note("a", 1, 5))
    s.forget_settled(10)
    assert list(s.sent_versions) == ["a"]
    s.replaying = False
    s.forget_settled(10)
    assert not s.sent_versions


def test_a_version_sent_out_of_order_waits_and_the_cap_still_holds() -> None:
    s = session(max_remembered=3)
    assert s.admit(note("late", 1, 9))
    assert s.admit(note("early", 1, 4))
    s.forget_settled(5)
    assert list(s.sent_versions) == ["late", "early"]  # stops at the first one above
    s.forget_settled(9)
    assert not s.sent_versions
    for n in range(10):
        s.admit(note(f"x{n}", 1, None))  # no cursor: only the cap forgets it
    assert len(s.sent_versions) == 3


async def test_profiles_written_stay_within_the_cap_with_ever_new_actors() -> None:
    now_ms = int(time.time() * 1000)
    applier = InboxApplier(
        MemoryStore(clock_ms=lambda: now_ms), clock_ms=lambda: now_ms, directory=MemoryUserDirectory()
    )
    fans = WRITTEN_PROFILES_CAP + 500
    for start in range(0, fans, 500):
        events = [
            validate_event(
                {
                    "type": "NOTIFICATION_CREATED",
                    "eventId": f"e{n}",
                    "userId": "owner",
                    "notification": {
                        "type": "POST_LIKED",
                        "actor": {"id": f"fan{n}", "name": f"Fan {n}"},
                        "target": {"type": "post", "id": "p1"},
                    },
                }
            )
            for n in range(start, start + 500)
        ]
        await applier.apply(events)
    assert len(applier._written_profiles) == WRITTEN_PROFILES_CAP
