"""Kafka over SASL_SSL (SCRAM-SHA-512 + TLS) against a second, secured broker started for this module: the SDK,
Herald's consumers, admin clients and the CLI connect with the security settings; a wrong password, an untrusted
certificate and plaintext to the TLS listener are refused with a typed error that never shows the password."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import NewTopic
from pydantic import SecretStr

from herald.config import Settings
from herald.errors import KafkaSecurityError
from herald.kafka import close_client, make_admin, make_consumer, start_bounded
from herald.producer import NotificationProducer
from tests.support.secure_kafka import SASL_PASSWORD, SASL_USER, SecuredKafkaBroker, running_secured_broker
from tests.support.tls import make_tls_files

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafkaBroker]:
    # Ready in 6-16 s here; start() fails with the broker's log past START_BOUND_S (tests/support/secure_kafka.py).
    with running_secured_broker(tmp_path_factory.mktemp("secured-kafka")) as broker:
        yield broker


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tls_files(tmp_path_factory.mktemp("other-ca")).ca_cert


async def create_topic(settings: Settings, partitions: int = 3) -> str:
    name = f"secured-{uuid.uuid4().hex[:10]}"
    admin = make_admin(settings)
    await start_bounded(admin, settings, "test admin")
    try:
        response = await admin.create_topics([NewTopic(name, partitions, 1)])
        assert all(e["error_code"] == 0 for e in response.to_object()["topic_errors"]), response
    finally:
        await close_client(admin)
    return name


def event(user: str) -> dict[str, object]:
    return {
        "type": "NOTIFICATION_CREATED",
        "userId": user,
        "notification": {"type": "POST_LIKED", "actor": {"id": "u42", "name": "John"}},
        "timestamp": "2026-11-26T10:00:00.000Z",
    }


async def test_sdk_publishes_and_a_consumer_reads_over_sasl_ssl(secured: SecuredKafkaBroker) -> None:
    settings = secured.client_settings()
    topic = await create_topic(settings)
    users = [f"sec-{i}-{uuid.uuid4().hex[:6]}" for i in range(20)]
    async with NotificationProducer(settings, topic=topic) as producer:
        results = await producer.publish_many([event(u) for u in users])
    assert [r.topic for r in results] == [topic] * len(users)

    consumer = make_consumer(settings, topic, group_id=f"sec-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest")
    await start_bounded(consumer, settings, "test consumer")
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while len(seen) < len(users) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            seen += [orjson.loads(r.value)["userId"] for records in batches.values() for r in records]
    finally:
        await close_client(consumer)
    assert sorted(seen) == sorted(users)


async def test_a_wrong_password_is_a_typed_error_without_the_password(
    secured: SecuredKafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "WrongPassw0rdAlsoNeverShown"
    settings = secured.client_settings(kafka_sasl_password=SecretStr(wrong))
    began = time.monotonic()
    with pytest.raises(KafkaSecurityError) as refused:
        async with NotificationProducer(settings, topic="any-topic"):
            pass
    message = str(refused.value)
    assert "refused the SASL credentials of user" in message
    assert SASL_USER in message
    assert "kafka_sasl_password" in message  # names the setting to fix
    # Refused at once, not after retrying until connect_timeout_s: a login does not start working by itself.
    assert time.monotonic() - began < settings.connect_timeout_s
    for secret in (wrong, SASL_PASSWORD):
        assert secret not in message
        assert secret not in repr(refused.value)
        assert secret not in caplog.text
        assert secret not in repr(settings)


async def test_plaintext_to_the_tls_listener_fails_clearly(secured: SecuredKafkaBroker) -> None:
    settings = secured.client_settings(kafka_security_protocol="PLAINTEXT")
    admin = make_admin(settings)
    with pytest.raises(KafkaSecurityError, match=r"closes them at the first request.*expect TLS"):
        await start_bounded(admin, settings, "test admin")


async def test_an_untrusted_broker_certificate_is_refused(secured: SecuredKafkaBroker, other_ca: Path) -> None:
    settings = secured.client_settings(kafka_ssl_cafile=other_ca)
    consumer = make_consumer(settings)
    with pytest.raises(KafkaSecurityError, match=r"TLS certificate does not verify.*kafka_ssl_cafile"):
        await start_bounded(consumer, settings, "test consumer")


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "herald"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_cli_publishes_over_sasl_ssl_and_never_prints_the_password(secured: SecuredKafkaBroker) -> None:
    settings = secured.client_settings()
    topic = await create_topic(settings, partitions=1)
    env = {
        "HERALD_KAFKA_BOOTSTRAP": secured.bootstrap,
        "HERALD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "HERALD_KAFKA_SASL_USERNAME": SASL_USER,
        "HERALD_KAFKA_SASL_PASSWORD": SASL_PASSWORD,
        "HERALD_KAFKA_SSL_CAFILE": str(secured.tls.ca_cert),
    }
    published = _cli(env, "publish", "--user", "cli-sec", "--type", "POST_LIKED", "--actor", "u1", "--topic", topic)
    assert published.returncode == 0, published.stderr
    refused = _cli(
        {**env, "HERALD_KAFKA_SASL_PASSWORD": "TypoPassw0rd"},
        "publish", "--user", "cli-sec", "--type", "POST_LIKED", "--actor", "u1", "--topic", topic,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "refused the SASL credentials" in refused.stderr
    for run in (published, refused):
        for secret in (SASL_PASSWORD, "TypoPassw0rd"):
            assert secret not in run.stdout + run.stderr
