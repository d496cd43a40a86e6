"""kill -9 of the gateway while clients are connected and events flow: the clients reconnect with `since` and
end with the final version of every notification, having seen no version twice."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from herald.auth import mint_token
from herald.config import Settings
from herald.producer import NotificationProducer
from herald.store_redis import RedisStore
from pipeline import Pipeline
from tests.support.devices import Device
from tests.support.events import event_dict
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.ray]

USERS = 20
ROUNDS = 30  # likes per user, each round a new actor on one of a few posts


@pytest.mark.timeout(300)
async def test_kill_the_gateway_while_clients_are_connected(
    pipeline: Pipeline, pipeline_settings: Settings, producer: NotificationProducer, store: RedisStore
) -> None:
    run = uuid.uuid4().hex[:6]
    users = [f"fo-{run}-{i}" for i in range(USERS)]
    url = f"http://127.0.0.1:{pipeline_settings.gateway_port}"
    devices = {user: Device(url, mint_token(pipeline_settings, user)) for user in users}
    tasks = [asyncio.create_task(d.run()) for d in devices.values()]
    supervisor = pipeline.supervise_in_background()
    try:

        async def connections() -> int:
            return sum(d.connections for d in devices.values())

        await eventually(
            connections,
            lambda connected: connected == USERS,
            timeout_s=30,
            what="every device connected",
        )
        gateway_pid = int((await asyncio.to_thread(pipeline.status))["gateways"][0]["pid"])
        base = datetime.now(UTC)
        for round_ in range(ROUNDS):
            await producer.publish_many(
                [
                    event_dict(
                        user,
                        actor=f"a{round_}",
                        actor_name=f"A{round_}",
                        target=f"p{round_ % 3}",
                        at=timedelta(seconds=round_),
                        event_id=f"{run}-{user}-{round_}",
                        base=base,
                    )
                    for user in users
                ]
            )
            if round_ == ROUNDS // 3:
                os.kill(gateway_pid, signal.SIGKILL)
            await asyncio.sleep(0.05)  # pacing, so the kill lands while events flow

        async def behind() -> list[str]:
            late = []
            for user, device in devices.items():
                stored = {n["id"]: int(n["version"]) for n in await store.notifications_after(user, 0, 1000)}
                if len(stored) != 3 or device.newest() != stored:
                    late.append(user)
            return late

        await eventually(behind, lambda late: not late, timeout_s=120, interval_s=0.5, what="every final version")
    finally:
        supervisor.stop()
        for device in devices.values():
            await device.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
    new_pid = int((await asyncio.to_thread(pipeline.status))["gateways"][0]["pid"])
    assert new_pid != gateway_pid, "the gateway was not killed and restarted"
    assert all(d.connections >= 2 for d in devices.values()), "every device had to reconnect"
    for user, device in devices.items():
        twice = device.seen_twice()
        assert not twice, f"{user} saw {twice} twice"
