"""Which broker the security diagnosis connects to (the connection itself is tested against a real broker in
tests/integration/test_kafka_security.py)."""

from __future__ import annotations

import pytest

from herald.kafka_security import first_broker


@pytest.mark.parametrize(
    ("bootstrap", "broker"),
    [
        ("127.0.0.1:19092", ("127.0.0.1", 19092)),
        ("kafka-1:9093, kafka-2:9093", ("kafka-1", 9093)),
        ("kafka", ("kafka", 9092)),
        ("[::1]:9094", ("::1", 9094)),
    ],
)
def test_first_broker(bootstrap: str, broker: tuple[str, int]) -> None:
    assert first_broker(bootstrap) == broker
