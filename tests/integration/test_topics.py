"""Topics are created with their documented configs, idempotently, and drift is reported, never fixed."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from herald.config import Settings
from herald.topics import (
    EVENTS_TOPIC,
    MAX_MESSAGE_BYTES,
    PREFERENCES_TOPIC,
    TopicSpec,
    TopicStatus,
    describe_topics,
    ensure_topics,
    topic_specs,
)
from tests.integration.conftest import TopicFactory

pytestmark = pytest.mark.integration


async def read_configs(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    (resource,) = response.to_object()["resources"]
    return {e["config_names"]: e["config_value"] for e in resource["config_entries"]}


async def test_ensure_creates_with_documented_configs_and_is_idempotent(
    settings: Settings, admin: AIOKafkaAdminClient
) -> None:
    suffix = uuid.uuid4().hex[:8]
    specs = [
        TopicSpec(f"t-events-{suffix}", 4, {"retention.ms": "604800000", "max.message.bytes": "1114112"}),
        TopicSpec(f"t-prefs-{suffix}", 2, {"cleanup.policy": "compact"}),
    ]
    try:
        first = await ensure_topics(settings, specs)
        assert [r.status for r in first] == [TopicStatus.CREATED, TopicStatus.CREATED]
        for spec in specs:
            configs = await read_configs(admin, spec.name)
            assert {k: configs[k] for k in spec.configs} == spec.configs
        (described,) = await admin.describe_topics([specs[0].name])
        assert len(described["partitions"]) == 4

        second = await ensure_topics(settings, specs)
        assert [r.status for r in second] == [TopicStatus.OK, TopicStatus.OK]
        assert all(r.ok for r in second)
    finally:
        await admin.delete_topics([s.name for s in specs])


async def test_existing_topic_that_differs_is_reported_not_changed(
    settings: Settings, admin: AIOKafkaAdminClient, fresh_topic: TopicFactory
) -> None:
    name = await fresh_topic("t-drift", partitions=2, configs={"retention.ms": "1000"})
    spec = TopicSpec(name, 5, {"retention.ms": "604800000"})
    (report,) = await ensure_topics(settings, [spec])
    assert report.status is TopicStatus.DIFFERS
    assert report.partitions == 2
    assert any("partitions 2, expected 5" in d for d in report.differences)
    assert any("retention.ms=1000" in d for d in report.differences)
    (described,) = await admin.describe_topics([name])
    assert len(described["partitions"]) == 2
    assert (await read_configs(admin, name))["retention.ms"] == "1000"


async def test_the_project_topics_exist_as_documented(settings: Settings) -> None:
    """ensure on the real topic list (what the pipeline does at start), then describe agrees."""
    reports = await ensure_topics(settings)
    assert {r.name for r in reports} == {s.name for s in topic_specs(settings)}
    by_name = {r.name: r for r in await describe_topics(settings)}
    assert by_name[EVENTS_TOPIC].ok, by_name[EVENTS_TOPIC].differences
    assert by_name[EVENTS_TOPIC].configs["max.message.bytes"] == str(MAX_MESSAGE_BYTES)
    assert by_name[PREFERENCES_TOPIC].configs == {"cleanup.policy": "compact"}


async def test_describe_reports_a_missing_topic(settings: Settings) -> None:
    (report,) = await describe_topics(settings, [TopicSpec(f"absent-{uuid.uuid4().hex[:8]}", 1)])
    assert not report.ok
    assert "missing" in report.differences[0]
