"""The whole pipeline against a secured Kafka broker (SASL_SSL, SCRAM-SHA-512 over TLS): topics made by `herald
topics ensure`, events published by the SDK, read by the Ray readers, applied by the aggregators, pushed to a
python-socketio client by the gateway (whose mark_read goes to the analytics topic) and delivered to a webhook by
a delivery actor (whose receipt goes to the delivery topic); a malformed record ends in the secured broker's DLQ
with its reason; the preferences feed consumes its topic; `herald dlq list`, `lag`, `audit` and `replay` read it
all back, never printing the password. Every Kafka client of the pipeline goes through the security settings
(herald/kafka.py `client_security`), and a pipeline with a wrong password or without TLS fails to start with a
typed error rather than hanging.

It shares the session's Ray runtime (not its pipeline) and keeps its state in a Redis database of its own."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import ray
import redis.asyncio as aioredis
from aiokafka import TopicPartition
from pydantic import SecretStr

from herald import keys
from herald.auth import mint_token
from herald.channels.webhook import verify_signature
from herald.config import Settings
from herald.dlq import STAGE_READER
from herald.dlq_admin import DeadLetter, read_dead_letters
from herald.errors import KafkaSecurityError
from herald.kafka import close_client, make_admin, make_consumer, make_producer, start_bounded
from herald.producer import NotificationProducer
from herald.topics import ANALYTICS_TOPIC, PREFERENCES_TOPIC, partition_counts, topic_specs
from pipeline import Pipeline
from tests.integration.gateway_harness import connected, wait_until
from tests.integration.ray_pipeline.conftest import free_port
from tests.support.events import event_dict
from tests.support.history import redis_url_with_db
from tests.support.http_sink import HttpSink
from tests.support.secure_kafka import SASL_PASSWORD, SASL_USER, SecuredKafkaBroker, running_secured_broker
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.ray]

# This module FLUSHDBs it: outbox streams, presence and inboxes of no other pipeline live there (db 0 is shared,
# 9 is the cluster scenario's, 13 the history tests').
SECURED_REDIS_DB = 11
WEBHOOK_SECRET = "secured-pipeline-webhook-secret"
# A start with refused credentials is answered by the broker at once; anything near the connect timeout
# means a client retried (or hung) instead of reporting.
REFUSAL_DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafkaBroker]:
    with running_secured_broker(tmp_path_factory.mktemp("secured-pipeline")) as broker:
        yield broker


@pytest.fixture
async def webhook_sink() -> AsyncIterator[HttpSink]:
    async with HttpSink() as sink:
        yield sink


@pytest.fixture
def private_redis_url(pipeline_settings: Settings) -> str:
    return redis_url_with_db(pipeline_settings.redis_url, SECURED_REDIS_DB)


@pytest.fixture
async def private_redis(private_redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(private_redis_url)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


def herald(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "herald"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert SASL_PASSWORD not in done.stdout + done.stderr, f"`herald {' '.join(args)}` printed the SASL password"
    return done


def cli_env(settings: Settings) -> dict[str, str]:
    """What an operator's shell on the secured cluster sets: the broker, its credentials and CA, and the rest."""
    return {
        "HERALD_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "HERALD_KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        "HERALD_KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
        "HERALD_KAFKA_SASL_USERNAME": SASL_USER,
        "HERALD_KAFKA_SASL_PASSWORD": SASL_PASSWORD,
        "HERALD_KAFKA_SSL_CAFILE": str(settings.kafka_ssl_cafile),
        "HERALD_EVENTS_PARTITIONS": str(settings.events_partitions),
        "HERALD_REDIS_URL": settings.redis_url,
    }


def pipeline_settings_for(secured: SecuredKafkaBroker, redis_url: str, **overrides: Any) -> Settings:
    return secured.client_settings(
        redis_url=redis_url,
        events_partitions=3,
        readers=1,
        aggregators=1,
        delivery_actors=1,
        gateway_port=free_port(),
        **overrides,
    )


async def keyed_records(settings: Settings, topic: str, key: str) -> list[dict[str, Any]]:
    """The JSON records of `topic` keyed by `key`, from the log start to the end as of now (a small topic)."""
    counts = await partition_counts(settings, [topic])
    partitions = [TopicPartition(topic, p) for p in range(counts.get(topic, 0))]
    consumer = make_consumer(settings, client_id="test-secured-reader")
    await start_bounded(consumer, settings, f"reading {topic}")
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[dict[str, Any]] = []
        remaining = {tp for tp, end in ends.items() if end > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500)
            found += [orjson.loads(r.value) for rs in batches.values() for r in rs if r.key == key.encode()]
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        return found
    finally:
        await close_client(consumer)


async def send_raw(settings: Settings, topic: str, key: str, value: bytes) -> tuple[int, int]:
    """One record as given, past the SDK's validation; its (partition, offset)."""
    producer = make_producer(settings, client_id="test-raw-producer")
    await start_bounded(producer, settings, "test producer")
    try:
        sent = await (await producer.send(topic, value, key.encode()))
    finally:
        await close_client(producer)
    return sent.partition, sent.offset


async def advertised_ports(settings: Settings) -> set[int]:
    """The broker ports the cluster's metadata gives a client connected with `settings`."""
    admin = make_admin(settings, client_id="test-describe")
    await start_bounded(admin, settings, "test admin")
    try:
        cluster = await admin.describe_cluster()
    finally:
        await close_client(admin)
    return {int(broker["port"]) for broker in cluster["brokers"]}


def read_lag(env: dict[str, str]) -> dict[str, Any]:
    done = herald(env, "lag", "--json")
    # Exit 1 with a document means a required group is missing; no document means it could not read at all.
    assert done.stdout.strip(), f"herald lag exited {done.returncode}: {done.stderr}"
    document: dict[str, Any] = json.loads(done.stdout)
    return document


@pytest.mark.timeout(420)
async def test_the_pipeline_end_to_end_over_sasl_ssl(
    ray_runtime: None,
    secured: SecuredKafkaBroker,
    private_redis_url: str,
    private_redis: aioredis.Redis,
    webhook_sink: HttpSink,
) -> None:
    settings = pipeline_settings_for(
        secured, private_redis_url, webhook_url=f"{webhook_sink.url}/hook", webhook_secret=WEBHOOK_SECRET
    )
    env = cli_env(settings)
    # Clients bootstrap on the SASL_SSL listener and are told of no other (the PLAINTEXT one is inter-broker).
    assert settings.kafka_bootstrap == f"127.0.0.1:{secured.ports.sasl_ssl}"
    assert await advertised_ports(settings) == {secured.ports.sasl_ssl}

    ensured = herald(env, "topics", "ensure", "--json")
    assert ensured.returncode == 0, ensured.stderr
    created = {row["topic"]: row["status"] for row in json.loads(ensured.stdout)}
    assert created == {spec.name: "created" for spec in topic_specs(settings)}

    running = await asyncio.to_thread(Pipeline(settings, name=f"secured-{uuid.uuid4().hex[:6]}").start)
    supervisor = running.supervise_in_background()
    user = f"sec-{uuid.uuid4().hex[:8]}"
    try:
        # IN_APP: SDK -> Kafka (SASL_SSL) -> reader -> aggregator -> gateway -> a python-socketio client, whose
        # mark_read makes the gateway publish NOTIFICATION_READ to the analytics topic.
        async with connected(f"http://127.0.0.1:{settings.gateway_port}", mint_token(settings, user)) as device:
            async with NotificationProducer(settings) as producer:
                published = await producer.publish(
                    event_dict(user, event_id=f"{user}-e1", channels=("IN_APP", "WEBHOOK"), priority="HIGH")
                )
            await wait_until(lambda: bool(device.notifications), timeout_s=60, what="the notification on the client")
            [note] = device.notifications
            assert note["text"] == "John liked your post"
            assert await device.call("mark_read", {"ids": [note["id"]]}) == {"ok": True, "unread": 0}

        async def reads() -> list[dict[str, Any]]:
            return await keyed_records(settings, ANALYTICS_TOPIC, user)

        [read] = await eventually(reads, bool, timeout_s=30, what="NOTIFICATION_READ on the analytics topic")
        assert (read["type"], read["notificationIds"]) == ("NOTIFICATION_READ", [note["id"]])

        # WEBHOOK: outbox -> delivery actor -> the sink, signed; its receipt goes to the secured broker.
        [hook] = await webhook_sink.wait_for(1, timeout_s=60)
        assert (hook.path, hook.json()["userId"]) == ("/hook", user)
        signature = (hook.headers["x-herald-timestamp"], hook.body, hook.headers["x-herald-signature"])
        assert verify_signature(WEBHOOK_SECRET, *signature, now=time.time())

        # A malformed record: the reader's DLQ producer writes it, with its reason, to the secured broker.
        truncated = b'{"type": "NOTIFICATION_CREATED", "userId": '
        source = (settings.events_topic, *await send_raw(settings, settings.events_topic, user, truncated))

        async def dead_lettered() -> list[DeadLetter]:
            return [d for d in await read_dead_letters(settings) if d.source == source]

        [letter] = await eventually(dead_lettered, bool, timeout_s=60, what="the malformed record in the DLQ")
        assert letter.stage == STAGE_READER
        assert "not valid JSON" in letter.reason
        listed = herald(env, "dlq", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [(row["stage"], row["reason"]) for row in json.loads(listed.stdout) if row["ref"] == letter.ref] == [
            (STAGE_READER, letter.reason)
        ]

        # Lag over SASL_SSL: the readers' group committed past everything published, the outbox is empty.
        async def reader_lag() -> dict[str, Any]:
            groups = (await asyncio.to_thread(read_lag, env))["groups"]
            return next((g for g in groups if g["group"] == settings.reader_group), {"missing": True})

        group = await eventually(
            reader_lag, lambda g: not g["missing"] and g["lag"] == 0, timeout_s=60, interval_s=1, what="lag 0"
        )
        assert {p["topic"] for p in group["partitions"]} == {settings.events_topic}

        # The readers' own lag gauge (exported as herald_consumer_lag) reads their SASL_SSL consumer.
        async def lag_gauge() -> dict[str, int]:
            status = await asyncio.to_thread(running.status)
            return {tp: n for r in status["readers"] for tp, n in (r.get("lag") or {}).items()}

        await eventually(
            lag_gauge,
            lambda lag: len(lag) == settings.events_partitions and not any(lag.values()),
            timeout_s=30,
            what="the readers' lag gauge at 0 on every partition",
        )

        # The audit reads the user's events and the delivery receipts back from the secured broker.
        audited = herald(env, "audit", "--user", user, "--json")
        assert audited.returncode == 0, audited.stdout + audited.stderr
        trail = json.loads(audited.stdout)
        assert (trail["consistent"], trail["partition"]) == (True, published.partition)
        [notification] = trail["notifications"]
        assert [e["eventId"] for e in notification["events"]] == [f"{user}-e1"]
        assert [(d["channel"], d["status"]) for d in notification["deliveries"]] == [("WEBHOOK", "DELIVERED")]

        # Replay reads the user's partition again (admin for the readers' commits, a consumer of its own group);
        # into the same Redis, dedup leaves everything as it was.
        replayed = herald(env, "replay", "--since", "earliest", "--user", user, "--json")
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        report = json.loads(replayed.stdout)
        assert (report["events"], report["duplicates"], report["applied"]) == (1, 1, 0), report

        # The preferences feed consumes the compacted user-preferences topic into Redis.
        await send_raw(settings, PREFERENCES_TOPIC, user, orjson.dumps({"digest": "daily"}))

        async def stored_preferences() -> Any:
            raw = await private_redis.get(keys.preferences_key(user))
            return orjson.loads(raw) if raw else None

        stored = await eventually(stored_preferences, bool, timeout_s=30, what="the preferences stored in Redis")
        assert stored["digest"] == "daily"

        status = await asyncio.to_thread(running.status)
        assert not [h for actors in status.values() for h in actors if not h.get("ok")], status
        assert sum(r.get("dead_lettered", 0) for r in status["readers"]) == 1
    finally:
        supervisor.stop()
        await asyncio.to_thread(running.drain)


@pytest.mark.parametrize(
    ("wrong", "overrides", "says"),
    [
        ("password", {"kafka_sasl_password": SecretStr("WrongPassw0rdForThePipeline")}, "refused the SASL credentials"),
        ("plaintext", {"kafka_security_protocol": "PLAINTEXT"}, "expect TLS"),
    ],
)
async def test_a_pipeline_with_wrong_kafka_security_fails_to_start_with_a_typed_error(
    ray_runtime: None, secured: SecuredKafkaBroker, wrong: str, overrides: dict[str, Any], says: str
) -> None:
    settings = secured.client_settings(gateway_port=free_port(), readers=1, aggregators=1, **overrides)
    name = f"secured-{wrong}-{uuid.uuid4().hex[:6]}"
    began = time.monotonic()
    with pytest.raises(KafkaSecurityError, match=says):
        await asyncio.wait_for(asyncio.to_thread(Pipeline(settings, name=name).start), REFUSAL_DEADLINE_S)
    assert time.monotonic() - began < REFUSAL_DEADLINE_S
    # Refused before anything was placed: no actor of this pipeline runs, none retries a login in a loop.
    assert not [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(name)]
