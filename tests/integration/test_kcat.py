"""Events from a non-Python producer (kcat, librdkafka) are read by a plain consumer and decoded by Herald."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import pytest

from herald.events import EventType, decode_event, derive_event_id
from tests.integration.conftest import ConsumerFactory, TopicFactory
from tests.support.events import design_example

pytestmark = pytest.mark.integration

# The wire format example (docs/architecture.md) as the existing application sends it: no eventId.
EXAMPLE = design_example(event_id=None)


async def test_kcat_produced_event_decodes(
    kafka_bootstrap: str, fresh_topic: TopicFactory, make_consumer: ConsumerFactory
) -> None:
    kcat = shutil.which("kcat")
    assert kcat is not None, "kcat is not installed (apt-get install kcat)"
    topic = await fresh_topic("kcat")
    # murmur2_random is the Java/aiokafka partitioner: without it librdkafka hashes keys with CRC32 and the
    # same user would land on different partitions depending on the producer, breaking per-user order.
    command = [
        kcat,
        "-P",
        "-b",
        kafka_bootstrap,
        "-t",
        topic,
        "-k",
        "user123",
        "-X",
        "partitioner=murmur2_random",
    ]
    completed = await asyncio.to_thread(
        subprocess.run,
        command,
        input=json.dumps(EXAMPLE).encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode()

    consumer = await make_consumer(topic)
    record = await asyncio.wait_for(consumer.getone(), timeout=30)
    assert record.key == b"user123"
    fallback = derive_event_id(record.topic, record.partition, record.offset)
    event = decode_event(record.value, fallback_event_id=fallback)
    assert event.type is EventType.NOTIFICATION_CREATED
    assert event.user_id == "user123"
    assert event.event_id == f"kafka:{topic}:{record.partition}:{record.offset}"
    assert event.notification is not None
    assert event.notification.actor is not None
    assert event.notification.actor.name == "John"
