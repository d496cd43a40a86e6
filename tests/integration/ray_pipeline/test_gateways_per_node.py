"""`gateways_per_node`: several gateways on one node, each serving on its own port, and a client of each gets
its user's notifications."""

from __future__ import annotations

import asyncio
import socket
import uuid

import pytest

from herald.auth import mint_token
from herald.config import load_settings
from herald.producer import NotificationProducer
from pipeline import Pipeline
from tests.integration.conftest import TopicFactory
from tests.integration.ray_pipeline.conftest import free_port
from tests.support.devices import Device
from tests.support.events import event_dict
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.ray]


def two_free_ports() -> int:
    """A port that is free, and so is the next one."""
    for _ in range(50):
        base = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base
    raise RuntimeError("no two consecutive free ports")


@pytest.mark.timeout(240)
async def test_two_gateways_on_one_node_on_consecutive_ports(ray_runtime: None, fresh_topic: TopicFactory) -> None:
    topic = await fresh_topic("gateways-per-node", partitions=2)
    base_port = two_free_ports()
    settings = load_settings(
        events_topic=topic,
        events_partitions=2,
        reader_group=f"gpn-{uuid.uuid4().hex[:6]}",
        readers=1,
        aggregators=1,
        gateways_per_node=2,
        gateway_port=base_port,
    )
    running = await asyncio.to_thread(Pipeline(settings, name=f"gpn-{uuid.uuid4().hex[:4]}").start)
    devices: list[Device] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        status = await asyncio.to_thread(running.status)
        assert sorted(int(g.get("port") or 0) for g in status["gateways"]) == [base_port, base_port + 1]
        assert all(g.get("serving") for g in status["gateways"])
        user = f"gpn-{uuid.uuid4().hex[:8]}"
        for port in (base_port, base_port + 1):
            devices.append(Device(f"http://127.0.0.1:{port}", mint_token(settings, user)))
        tasks = [asyncio.create_task(d.run()) for d in devices]

        async def connected() -> int:
            return sum(1 for d in devices if d.connected)

        await eventually(connected, lambda n: n == 2, timeout_s=30, what="a device on each gateway")
        async with NotificationProducer(settings) as producer:
            await producer.publish(event_dict(user, event_id=f"{user}-e1"))

        async def received() -> list[int]:
            return [len(d.received) for d in devices]

        await eventually(received, lambda got: got == [1, 1], timeout_s=60, what="the notification on both gateways")
    finally:
        for device in devices:
            await device.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(running.drain)
