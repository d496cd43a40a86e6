"""Batch routing: validation to the DLQ, stable shards, offsets that become safe to commit, and actor counts."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from herald.config import load_settings
from herald.routing import actor_of_shard, dlq_record, route, shard_of
from pipeline import Topology, plan_topology
from tests.support.events import event_dict


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: int = 1_795_687_200_000


def test_route_splits_valid_and_invalid_and_tracks_offsets() -> None:
    records = [
        Record("t", 0, 10, b"a", orjson.dumps(event_dict("alice"))),
        Record("t", 0, 11, b"a", b"{not json"),
        Record("t", 1, 5, b"b", orjson.dumps(event_dict("bob", event_id="explicit"))),
        Record("t", 1, 6, b"b", None),
    ]
    batch = route(records, shards=64, actors=3)
    assert batch.commit_offsets == {("t", 0): 12, ("t", 1): 7}
    assert [(r.offset, r.reason.split(":")[0]) for r in batch.rejected] == [
        (11, "not valid JSON"),
        (6, "record has no value (tombstone)"),
    ]
    ids = sorted(item.event_id for items in batch.per_actor.values() for item in items)
    assert ids == ["explicit", "kafka:t:0:10"]
    letter = dlq_record(batch.rejected[0], stage="reader", dlq_partitions=3)
    headers = dict(letter.headers)
    assert headers["herald-source-offset"] == b"11"
    assert headers["herald-dlq-stage"] == b"reader"
    assert "herald-dlq-original-bytes" not in headers
    assert (letter.partition, letter.value) == (0, batch.rejected[0].value)


def test_a_user_always_lands_on_the_same_actor() -> None:
    # Fixed values, not shard_of(x) == shard_of(x): every process (each reader, after each restart) must
    # agree, which Python's salted hash() would not; a change of hash would move every user's state.
    assert [shard_of(u, 64) for u in ("user123", "u1", "user-é")] == [1, 63, 50]
    actors = {actor_of_shard(shard_of(f"u{i}", 64), 4) for i in range(200)}
    assert actors == {0, 1, 2, 3}


def test_per_user_order_is_kept_within_a_batch() -> None:
    records = [Record("t", 0, i, b"u", orjson.dumps(event_dict("u", event_id=f"e{i}"))) for i in range(5)]
    (items,) = route(records, shards=8, actors=2).per_actor.values()
    assert [item.event_id for item in items] == [f"e{i}" for i in range(5)]
    assert [item.wire_id for item in items] == [f"kafka:t:0:{i}" for i in range(5)]


def test_topology_follows_the_cluster_and_settings() -> None:
    settings = load_settings(readers=None, aggregators=None, delivery_actors=None)
    assert plan_topology(settings, cpus=2, partitions=12).readers == 2
    assert plan_topology(settings, cpus=16, partitions=12).readers == 8
    assert plan_topology(settings, cpus=64, partitions=12).readers == 12
    fixed = load_settings(readers=3, aggregators=5, delivery_actors=2)
    assert plan_topology(fixed, cpus=2, partitions=12) == Topology(readers=3, aggregators=5, delivery_actors=2)


def test_a_batch_absorbs_a_later_one_keeping_order_offsets_and_rejections() -> None:
    first = route(
        [Record("t", 0, 1, b"u", orjson.dumps(event_dict("u", event_id="e1"))), Record("t", 0, 2, b"u", b"[")],
        shards=8,
        actors=1,
    )
    later = route(
        [Record("t", 0, 3, b"u", None), Record("t", 0, 4, b"u", orjson.dumps(event_dict("u", event_id="e4")))],
        shards=8,
        actors=1,
    )
    first.absorb(later)
    assert [e.event_id for e in first.per_actor[0]] == ["e1", "e4"]
    assert [r.offset for r in first.rejected] == [2, 3]
    assert first.commit_offsets == {("t", 0): 5}
    assert set(first.coordinates) == {"kafka:t:0:1", "kafka:t:0:4"}
    assert (first.event_count, first.record_count) == (2, 4)
