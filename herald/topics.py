"""Herald's Kafka topics as data (docs/architecture.md, Kafka topics): created idempotently, checked, never
silently changed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, for_code

from herald.config import DEFAULT_EVENTS_TOPIC, Settings
from herald.errors import BrokerUnavailableError, HeraldError
from herald.kafka import MAX_RECORD_BATCH_BYTES, close_client, make_admin, start_bounded, unreachable

# Only the default name: the input topic is `settings.events_topic`, which code must read instead.
EVENTS_TOPIC: Final = DEFAULT_EVENTS_TOPIC
DELIVERY_TOPIC: Final = "notification-delivery"
ANALYTICS_TOPIC: Final = "notification-analytics"
DLQ_TOPIC: Final = "notification-dlq"
PREFERENCES_TOPIC: Final = "user-preferences"
PUSH_TOPIC: Final = "push-notifications"

DEFAULT_PARTITIONS: Final = 3
_DAY_MS: Final = 24 * 3600 * 1000
# max.message.bytes limits a whole record batch, not one event (herald.kafka.MAX_RECORD_BATCH_BYTES). The DLQ
# carries original bytes plus a reason, so it needs the same.
MAX_MESSAGE_BYTES: Final = MAX_RECORD_BATCH_BYTES
_ERROR_NONE: Final = 0
_ERROR_TOPIC_ALREADY_EXISTS: Final = 36
_ERROR_UNKNOWN_TOPIC: Final = 3
_METADATA_SETTLE_S: Final = 10.0  # a loaded broker that has just started can take seconds


class TopicError(HeraldError):
    """The broker refused to create or describe a topic (not a connectivity problem)."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


class TopicStatus(StrEnum):
    CREATED = "created"
    OK = "ok"
    DIFFERS = "differs"


@dataclass(frozen=True)
class TopicReport:
    """What ensure/describe found. `differences` lists how an existing topic departs from its spec."""

    name: str
    status: TopicStatus
    partitions: int
    configs: dict[str, str]
    differences: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.differences


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The topics of docs/architecture.md (Kafka topics); the input topic's name and partitions come from settings."""
    return [
        TopicSpec(
            settings.events_topic,
            settings.events_partitions,
            {"retention.ms": str(7 * _DAY_MS), "max.message.bytes": str(MAX_MESSAGE_BYTES)},
        ),
        TopicSpec(DELIVERY_TOPIC, DEFAULT_PARTITIONS, {"retention.ms": str(7 * _DAY_MS)}),
        TopicSpec(ANALYTICS_TOPIC, DEFAULT_PARTITIONS, {"retention.ms": str(30 * _DAY_MS)}),
        TopicSpec(
            DLQ_TOPIC,
            DEFAULT_PARTITIONS,
            {"retention.ms": str(30 * _DAY_MS), "max.message.bytes": str(MAX_MESSAGE_BYTES)},
        ),
        TopicSpec(PREFERENCES_TOPIC, DEFAULT_PARTITIONS, {"cleanup.policy": "compact"}),
        TopicSpec(PUSH_TOPIC, DEFAULT_PARTITIONS, {"retention.ms": str(1 * _DAY_MS)}),
    ]


async def ensure_topics(
    settings: Settings,
    specs: Sequence[TopicSpec] | None = None,
    *,
    replication_factor: int = 1,
    timeout_s: float | None = None,
) -> list[TopicReport]:
    """Create the missing topics; report (never alter) existing ones whose partitions or configs differ.

    Replication factor 1 suits the one-broker local stack; pass e.g. min(3, brokers) for a real cluster.
    """
    specs = topic_specs(settings) if specs is None else list(specs)
    admin = make_admin(settings)
    await start_bounded(admin, settings, "ensuring topics", timeout_s=timeout_s)
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        created = await _create(admin, missing, replication_factor) if missing else set()
        reports = await inspect_topics(admin, specs, just_created=created)
    except KafkaError as exc:
        raise BrokerUnavailableError(unreachable(settings, "ensuring topics", settings.connect_timeout_s, exc)) from exc
    finally:
        await close_client(admin)
    return [
        TopicReport(r.name, TopicStatus.CREATED, r.partitions, r.configs, r.differences) if r.name in created else r
        for r in reports
    ]


async def describe_topics(
    settings: Settings, specs: Sequence[TopicSpec] | None = None, *, timeout_s: float | None = None
) -> list[TopicReport]:
    """Compare the cluster with the specs without changing anything; a missing topic is a difference."""
    specs = topic_specs(settings) if specs is None else list(specs)
    admin = make_admin(settings)
    await start_bounded(admin, settings, "describing topics", timeout_s=timeout_s)
    try:
        return await inspect_topics(admin, specs)
    except KafkaError as exc:
        raise BrokerUnavailableError(
            unreachable(settings, "describing topics", settings.connect_timeout_s, exc)
        ) from exc
    finally:
        await close_client(admin)


async def _create(admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec], replication_factor: int) -> set[str]:
    """Create topics; errors come back in the response (not raised), a concurrent creator is not an error."""
    response = await admin.create_topics(
        [NewTopic(s.name, s.partitions, replication_factor, topic_configs=dict(s.configs)) for s in specs]
    )
    created: set[str] = set()
    failures: list[str] = []
    for entry in response.to_object()["topic_errors"]:
        code = entry["error_code"]
        if code == _ERROR_NONE:
            created.add(entry["topic"])
        elif code != _ERROR_TOPIC_ALREADY_EXISTS:
            message = entry.get("error_message") or for_code(code).__name__
            failures.append(f"{entry['topic']}: {message} (error {code})")
    if failures:
        raise TopicError("could not create topics: " + "; ".join(failures))
    return created


async def inspect_topics(
    admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec], *, just_created: Collection[str] = ()
) -> list[TopicReport]:
    """Compare the cluster with the specs through an already started admin client; `just_created` topics are
    waited for (briefly) rather than reported missing."""
    names = [spec.name for spec in specs]
    partitions = await _partition_counts(admin, names, just_created=just_created)
    configs = await _topic_configs(admin, [n for n in names if n in partitions])
    return [_compare(spec, partitions.get(spec.name), configs.get(spec.name, {})) for spec in specs]


async def _partition_counts(
    admin: AIOKafkaAdminClient, names: list[str], *, just_created: Collection[str] = ()
) -> dict[str, int]:
    """Partition count per existing topic. Right after a create, metadata can briefly say LEADER_NOT_AVAILABLE,
    list no partitions yet, or (on a broker that has just started, found by CI) not know the topic at all: retry
    that for a moment rather than report a fresh topic as missing."""
    deadline = time.monotonic() + _METADATA_SETTLE_S
    while True:
        counts: dict[str, int] = {}
        settling = False
        for topic in await admin.describe_topics(names):
            code = topic["error_code"]
            if code == _ERROR_UNKNOWN_TOPIC:
                settling = settling or topic["topic"] in just_created
                continue
            if code != _ERROR_NONE or not topic["partitions"]:
                settling = True
            counts[topic["topic"]] = len(topic["partitions"])
        if not settling or time.monotonic() >= deadline:
            return counts
        await asyncio.sleep(0.1)


async def _topic_configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            if resource["error_code"] != _ERROR_NONE:
                raise TopicError(
                    f"describe configs of {resource['resource_name']}: {resource['error_message']} "
                    f"(error {resource['error_code']})"
                )
            configs[resource["resource_name"]] = _entries(resource["config_entries"])
    return configs


def _entries(entries: list[dict[str, Any]]) -> dict[str, str]:
    return {e["config_names"]: e["config_value"] for e in entries if e["config_value"] is not None}


def _compare(spec: TopicSpec, partitions: int | None, actual: dict[str, str]) -> TopicReport:
    if partitions is None:
        return TopicReport(spec.name, TopicStatus.DIFFERS, 0, {}, ("missing (run `herald topics ensure`)",))
    differences = []
    if partitions != spec.partitions:
        differences.append(f"partitions {partitions}, expected {spec.partitions}")
    for key, expected in spec.configs.items():
        if actual.get(key) != expected:
            differences.append(f"{key}={actual.get(key)}, expected {expected}")
    relevant = {key: actual[key] for key in spec.configs if key in actual}
    status = TopicStatus.DIFFERS if differences else TopicStatus.OK
    return TopicReport(spec.name, status, partitions, relevant, tuple(differences))


async def partition_counts(settings: Settings, names: Sequence[str]) -> dict[str, int]:
    """Partition count of each of these topics that exists (the CLI's readers assign partitions themselves)."""
    admin = make_admin(settings)
    await start_bounded(admin, settings, "reading topic metadata")
    try:
        return await _partition_counts(admin, list(names))
    finally:
        await close_client(admin)
