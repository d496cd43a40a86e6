"""`herald lag` against real Kafka and Redis: committed, end and lag per partition of a group, exit 1 for a missing
group or one over --max-lag, full lines when piped, and the outbox backlog of the delivery streams."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

from herald import keys
from herald.config import Settings
from herald.producer import NotificationProducer
from tests.integration.conftest import TopicFactory
from tests.integration.test_directory import closed_port, herald
from tests.support.events import event_dict
from tests.support.history import cli_env, history_settings

pytestmark = pytest.mark.integration


@pytest.fixture
async def lagging(
    settings: Settings, fresh_topic: TopicFactory, kafka_bootstrap: str
) -> AsyncIterator[tuple[Settings, str, dict[int, int]]]:
    """A topic with records on every partition and a group that committed 2 records of each; returns the group and
    the end offset per partition. One EMAIL outbox stream holds 3 entries, one of them read (pending)."""
    mine = history_settings(settings, await fresh_topic("lag", partitions=3))
    client = aioredis.Redis.from_url(mine.redis_url)
    await client.flushdb(asynchronous=True)
    async with NotificationProducer(mine) as producer:
        results = await producer.publish_many(
            [event_dict(f"lag-u{i}", event_id=f"lag-{uuid.uuid4().hex}") for i in range(30)]
        )
    ends = {p: 1 + max(r.offset for r in results if r.partition == p) for p in {r.partition for r in results}}
    assert len(ends) == 3
    group = f"test-lag-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    tps = [TopicPartition(mine.events_topic, p) for p in ends]
    consumer.assign(tps)
    await consumer.commit(dict.fromkeys(tps, 2))
    await consumer.stop()
    stream = keys.outbox_key("EMAIL", 0)
    await client.xgroup_create(stream, keys.OUTBOX_GROUP, id="0", mkstream=True)
    for i in range(3):
        await client.xadd(stream, {"id": f"d{i}", "u": "lag-u0", "d": "{}"})
    await client.xreadgroup(keys.OUTBOX_GROUP, "test", {stream: ">"}, count=1)
    yield mine, group, ends
    await client.flushdb(asynchronous=True)
    await client.aclose()


def test_lag_json_per_partition(lagging: tuple[Settings, str, dict[int, int]]) -> None:
    settings, group, ends = lagging
    done = herald("lag", "--group", group, "--json", **cli_env(settings))
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    [found] = doc["groups"]
    assert (found["group"], found["required"], found["missing"]) == (group, True, False)
    assert {p["partition"]: (p["committed"], p["end"], p["lag"]) for p in found["partitions"]} == {
        p: (2, end, end - 2) for p, end in ends.items()
    }
    assert found["lag"] == sum(ends.values()) - 6
    assert doc["problems"] == []
    assert [(o["channel"], o["shard"], o["length"], o["pending"], o["unread"]) for o in doc["outbox"]] == [
        ("EMAIL", 0, 3, 1, 2)
    ]


def test_lag_exit_codes(lagging: tuple[Settings, str, dict[int, int]]) -> None:
    settings, group, ends = lagging
    worst = max(ends.values()) - 2
    assert herald("lag", "--group", group, "--max-lag", str(worst), **cli_env(settings)).returncode == 0
    over = herald("lag", "--group", group, "--max-lag", str(worst - 1), **cli_env(settings))
    assert over.returncode == 1
    assert f"{group} is {worst} records behind" in over.stderr
    missing = herald("lag", "--group", f"{group}-absent", "--json", **cli_env(settings))
    assert missing.returncode == 1
    assert json.loads(missing.stdout)["groups"][0]["missing"] is True


def test_lag_piped_prints_full_lines(lagging: tuple[Settings, str, dict[int, int]]) -> None:
    settings, group, ends = lagging
    done = herald("lag", "--group", group, **cli_env(settings))
    assert done.returncode == 0, done.stderr
    lines = [line.split("\t") for line in done.stdout.splitlines()]
    kafka = sorted(fields[1:] for fields in lines if fields[0] == "kafka")
    assert kafka == [
        [group, settings.events_topic, str(p), "2", str(end), str(end - 2)] for p, end in sorted(ends.items())
    ]
    assert [fields for fields in lines if fields[0] == "outbox"] == [["outbox", "EMAIL", "0", "3", "1", "2", "0"]]


@pytest.mark.parametrize("command", [["lag"], ["audit", "--user", "u1"], ["replay", "--since", "1h"]])
def test_unreachable_kafka_exits_1_with_one_clear_line(command: list[str]) -> None:
    done = herald(*command, HERALD_KAFKA_BOOTSTRAP=f"127.0.0.1:{closed_port()}", HERALD_CONNECT_TIMEOUT_S="1")
    assert done.returncode == 1
    assert "unreachable" in done.stderr
    assert "Traceback" not in done.stderr
    assert "Unclosed" not in done.stderr
    assert done.stdout == ""
