"""The input topic and the reader group are settings every component reads, the size bound is one number, and the
DLQ headers come from one builder: no module global for a harness to patch."""

from __future__ import annotations

import pytest

from herald.config import DEFAULT_EVENTS_TOPIC, DEFAULT_READER_GROUP, load_settings
from herald.dlq import MAX_REASON_BYTES, SourceRecord, delivery_stage, dlq_headers
from herald.errors import ConfigError
from herald.kafka import MAX_RECORD_BATCH_BYTES, producer_config
from herald.producer import NotificationProducer, SyncNotificationProducer
from herald.stack.kafka import MESSAGE_MAX_BYTES
from herald.topics import DLQ_TOPIC, MAX_MESSAGE_BYTES, topic_specs


def test_the_events_topic_defaults_to_notification_events_and_reads_the_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().events_topic == DEFAULT_EVENTS_TOPIC == "notification-events"
    monkeypatch.setenv("HERALD_EVENTS_TOPIC", "staging.notification-events")
    monkeypatch.setenv("HERALD_READER_GROUP", "staging-readers")
    settings = load_settings()
    assert (settings.events_topic, settings.reader_group) == ("staging.notification-events", "staging-readers")


def test_the_reader_group_defaults_to_herald_readers() -> None:
    assert load_settings().reader_group == DEFAULT_READER_GROUP == "herald-readers"


@pytest.mark.parametrize("bad", ["", "has space", "x" * 250, "slash/topic"])
def test_a_topic_name_kafka_would_refuse_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="events_topic"):
        load_settings(events_topic=bad)


def test_topics_ensure_and_doctor_check_the_configured_events_topic() -> None:
    settings = load_settings(events_topic="bench-1234-events", events_partitions=4)
    specs = {spec.name: spec for spec in topic_specs(settings)}
    assert specs["bench-1234-events"].partitions == 4
    assert DEFAULT_EVENTS_TOPIC not in specs
    assert DLQ_TOPIC in specs


def test_producers_publish_to_the_configured_topic_unless_told_otherwise() -> None:
    settings = load_settings(events_topic="bench-1234-events")
    assert NotificationProducer(settings).topic == "bench-1234-events"
    assert NotificationProducer(settings, topic="elsewhere").topic == "elsewhere"
    assert SyncNotificationProducer(settings)._topic == "bench-1234-events"


def test_one_size_bound_for_producers_topics_and_the_local_broker() -> None:
    assert MAX_RECORD_BATCH_BYTES == 1024 * 1024 + 64 * 1024
    assert producer_config(load_settings())["max_request_size"] == MAX_RECORD_BATCH_BYTES
    assert MAX_MESSAGE_BYTES == MESSAGE_MAX_BYTES == MAX_RECORD_BATCH_BYTES


def test_dlq_headers_of_a_record_read_from_kafka_say_where_it_came_from() -> None:
    headers = dict(dlq_headers(reason="bad JSON", stage="reader", source=SourceRecord("events", 3, 42)))
    assert headers == {
        "herald-dlq-reason": b"bad JSON",
        "herald-dlq-stage": b"reader",
        "herald-source-topic": b"events",
        "herald-source-partition": b"3",
        "herald-source-offset": b"42",
    }


def test_dlq_headers_of_a_failed_delivery_have_no_source() -> None:
    headers = dict(dlq_headers(reason="gone", stage=delivery_stage("IN_APP")))
    assert headers == {"herald-dlq-reason": b"gone", "herald-dlq-stage": b"delivery:IN_APP"}


def test_a_long_reason_is_cut_on_a_character_boundary() -> None:
    reason = "é" * MAX_REASON_BYTES  # two bytes each: the cut falls inside none
    (_, cut), _ = dlq_headers(reason=reason + "x", stage="apply")
    assert len(cut) <= MAX_REASON_BYTES
    assert cut.decode() == "é" * (MAX_REASON_BYTES // 2)
    (_, odd), _ = dlq_headers(reason="a" + reason, stage="apply")
    assert odd.decode() == "a" + "é" * ((MAX_REASON_BYTES - 1) // 2)
