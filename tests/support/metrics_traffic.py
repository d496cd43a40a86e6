"""Traffic for the metrics tests (a connected client, valid events, a record the readers must refuse) and a
reader of Prometheus' text format as Ray's metrics agent serves it."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from herald.auth import mint_token
from herald.config import Settings
from herald.producer import NotificationProducer
from tests.integration.gateway_harness import Recorder
from tests.support.events import event_dict

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse_prometheus(text: str) -> list[Sample]:
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels, value = match.groups()
        samples.append(Sample(name, dict(_LABEL.findall(labels or "")), float(value)))
    return samples


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels` (all workers, all nodes)."""
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def growth(before: list[Sample], after: list[Sample], name: str, **labels: str) -> float:
    """How much the series of `name` matching `labels` grew, series by series: a series that is gone from `after`
    (Ray stops exporting the series of a worker that died, e.g. an actor killed by an earlier test) is left out
    rather than counted as a fall, and a new series counts from 0."""
    earlier = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in before}
    return sum(
        s.value - earlier.get((s.name, tuple(sorted(s.labels.items()))), 0.0)
        for s in after
        if s.name == name and labels.items() <= s.labels.items()
    )


async def scrape(urls: list[str]) -> list[Sample]:
    samples: list[Sample] = []
    async with httpx.AsyncClient(timeout=10) as client:
        for url in urls:
            response = await client.get(url)
            response.raise_for_status()
            samples += parse_prometheus(response.text)
    return samples


class Traffic:
    """One user connected to the pipeline's gateway (so IN_APP commits are pushed and counted) and events for it."""

    def __init__(self, settings: Settings, producer: NotificationProducer) -> None:
        self.settings = settings
        self.producer = producer
        self.user = f"metrics-{uuid.uuid4().hex[:10]}"
        self.client = Recorder()
        self.published = 0

    async def __aenter__(self) -> Traffic:
        url = f"http://127.0.0.1:{self.settings.gateway_port}"
        await self.client.connect(url, mint_token(self.settings, self.user))
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.client.client.disconnect()

    async def publish(self, count: int) -> None:
        """`count` events, each on a target of its own, so each is a notification pushed to the client."""
        events: list[dict[str, Any]] = [
            event_dict(self.user, actor=f"a{i}", actor_name=f"A{i}", target=f"p-{uuid.uuid4().hex[:8]}")
            for i in range(count)
        ]
        await self.producer.publish_many(events)
        self.published += count

    async def publish_invalid(self, count: int) -> None:
        """Records no reader accepts: they go to the DLQ with stage `reader`."""
        raw = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap)
        await raw.start()
        try:
            for _ in range(count):
                value = orjson.dumps({"type": "NOTIFICATION_CREATED", "marker": self.user})  # no userId
                await raw.send_and_wait(self.settings.events_topic, value, key=self.user.encode())
        finally:
            await raw.stop()
