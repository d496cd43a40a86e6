"""herald/topics.py: right after a create, the broker's metadata may not know the topic yet (a broker that has
just started, found by CI); `topics ensure` waits for the topics it created instead of reporting them missing."""

from __future__ import annotations

from typing import Any

from herald.topics import _ERROR_UNKNOWN_TOPIC, _partition_counts


class SlowMetadataAdmin:
    """Answers describe_topics as a broker whose metadata learns of its topics only at the `known_from`-th call."""

    def __init__(self, known_from: int) -> None:
        self.known_from = known_from
        self.calls = 0

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        self.calls += 1
        known = self.calls >= self.known_from
        return [
            {"topic": name, "error_code": 0 if known else _ERROR_UNKNOWN_TOPIC, "partitions": [{}, {}] if known else []}
            for name in names
        ]


async def test_a_topic_just_created_is_waited_for() -> None:
    admin = SlowMetadataAdmin(known_from=3)
    counts = await _partition_counts(admin, ["fresh"], just_created={"fresh"})
    assert counts == {"fresh": 2}
    assert admin.calls == 3


async def test_a_topic_nobody_created_is_missing_at_once() -> None:
    admin = SlowMetadataAdmin(known_from=99)
    assert await _partition_counts(admin, ["absent"]) == {}
    assert admin.calls == 1
