"""Run by test_cluster_growth in its own process (a multi-raylet cluster cannot share a driver with the session's
Ray runtime): a Ray cluster of one raylet per node on this machine, the pipeline on it, events and connected
Socket.IO clients flowing while a node joins and while it is removed. Prints a JSON report as its last line.

The pipeline reads a private topic and keeps its state in a Redis db of its own (CLUSTER_REDIS_DB), so no other
pipeline on the shared stack consumes its events or its webhook outbox, and it consumes none of theirs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import ray
import redis.asyncio as aioredis
from ray.cluster_utils import Cluster

from herald.auth import mint_token
from herald.config import Settings, load_settings
from herald.contracts import ActorHealth
from herald.kafka import close_client, make_admin, start_bounded
from herald.producer import NotificationProducer
from herald.store_redis import RedisStore
from herald.workload import SocialTraffic
from pipeline import Pipeline
from tests.support.devices import Device
from tests.support.http_sink import HttpSink
from tests.support.reference_model import expected_inboxes
from tests.support.waiting import eventually
from tests.support.workload import fingerprint

CLUSTER_REDIS_DB = 9
HEAD_CPUS, JOIN_CPUS = 2, 8  # the joining node's 8 (virtual) CPUs make the plan grow: 2 -> 5 readers, 1 -> 2 delivery
USERS = 200
DEVICES_BEFORE, DEVICES_AFTER = 12, 12  # users with a device on the head's gateway; more on the new node's
RATE_PER_S = 150.0
SERVE_DEADLINE_S = 30.0
SECRET = "cluster-scenario-secret"
Status = dict[str, list[ActorHealth]]


@dataclass
class Timeline:
    """Monotonic instants the monitor saw; the report gives them relative to the join or the removal."""

    joined_node: str | None = None
    join_at: float = 0.0
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str, condition: bool) -> None:
        if condition and name not in self.marks:
            self.marks[name] = time.monotonic()

    def since(self, name: str, origin: float) -> float | None:
        at = self.marks.get(name)
        return None if at is None else round(at - origin, 2)


def serving_urls(status: Status) -> dict[str, str]:
    """Node -> URL of a serving gateway on it."""
    serving = [g for g in status["gateways"] if g.get("serving") and g.get("node")]
    return {str(g["node"]): f"http://127.0.0.1:{g['port']}" for g in serving}


def on_node(status: Status, kind: str, node: str) -> list[ActorHealth]:
    return [h for h in status[kind] if h.get("node") == node]


class Scenario:
    def __init__(self, settings: Settings, run: str, sink: HttpSink) -> None:
        self.settings, self.run, self.sink = settings, run, sink
        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": HEAD_CPUS})
        head = self.cluster.head_node
        if head is None:
            raise RuntimeError("the cluster started without a head node")
        self.head: str = str(head.node_id)
        self.pipeline: Pipeline | None = None
        self.status: Status = {}
        self.urls: dict[str, str] = {}
        self.timeline: Timeline = Timeline()
        self.published: list[dict[str, Any]] = []
        self.devices: dict[str, Device] = {}
        self.report: dict[str, Any] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._producing: bool = True
        self._producer: asyncio.Task[None] | None = None

    # -- helpers ----------------------------------------------------------------------------------------

    def url_for(self, prefer: str | None) -> str:
        """What a load balancer does: a live gateway, the preferred node's while it serves."""
        urls = self.urls
        if prefer in urls:
            return urls[prefer]
        if self.head in urls:
            return urls[self.head]
        return next(iter(urls.values()), "http://127.0.0.1:1")

    def add_device(self, user: str, prefer: str | None) -> None:
        device = Device(lambda: self.url_for(prefer), mint_token(self.settings, user))
        self.devices[f"{user}@{prefer or 'any'}"] = device
        self._tasks.append(asyncio.create_task(device.run()))

    async def refresh(self) -> Status:
        assert self.pipeline is not None
        self.status = await asyncio.to_thread(self.pipeline.status, 3.0)
        self.urls = serving_urls(self.status) or self.urls
        return self.status

    async def monitor(self) -> None:
        """Polls the pipeline's status and marks when the joined node first serves and first delivers."""
        while True:
            status = await self.refresh()
            node = self.timeline.joined_node
            if node is not None and self.pipeline is not None:
                gateways = on_node(status, "gateways", node)
                readers = on_node(status, "readers", node)
                delivery = on_node(status, "delivery", node)
                # Every actor the plan gave the node runs there and works.
                planned_readers = self.pipeline.reader_nodes.count(node)
                planned_delivery = sum(1 for _c, n in self.pipeline.delivery_nodes if n == node)
                polling = len([r for r in readers if r.get("partitions")])
                self.timeline.mark("gateway_serving", any(g.get("serving") for g in gateways))
                self.timeline.mark("readers_polling", 0 < planned_readers == polling)
                running = len([d for d in delivery if d.get("ok")])
                self.timeline.mark("delivery_running", 0 < planned_delivery == running)
                live = sum(int((g.get("counters") or {}).get("live_notifications", 0)) for g in gateways)
                self.timeline.mark("first_live_push", live > 0)
                self.timeline.mark("first_webhook", sum(int(d.get("delivered") or 0) for d in delivery) > 0)
                self.timeline.mark("first_event_read", sum(int(r.get("events") or 0) for r in readers) > 0)
            await asyncio.sleep(0.3)

    async def produce(self) -> None:
        """A steady stream over USERS users; mentions also go to the WEBHOOK channel."""
        traffic = SocialTraffic(self.run, users=USERS, seed=11)
        async with NotificationProducer(self.settings) as producer:
            per_tick = max(1, int(RATE_PER_S / 10))
            while self._producing:
                chunk = []
                for _ in range(per_tick):
                    event = traffic.next(datetime.now(UTC))
                    if event["notification"]["type"] == "MENTIONED":
                        event["channels"] = ["IN_APP", "WEBHOOK"]
                    chunk.append(event)
                await producer.publish_many(chunk)
                self.published.extend(chunk)
                await asyncio.sleep(0.1)  # pacing the offered load, not waiting for an outcome

    async def wait_status(self, accept: Any, what: str, timeout_s: float = 90.0) -> Status:
        async def probe() -> Status:
            return await self.refresh()

        return await eventually(probe, accept, timeout_s=timeout_s, interval_s=0.3, what=what)

    # -- the scenario -----------------------------------------------------------------------------------

    async def main(self) -> dict[str, Any]:
        ray.init(address=self.cluster.address, namespace="herald", log_to_driver=False)
        self.pipeline = await asyncio.to_thread(Pipeline(self.settings, name=f"cluster-{self.run}").start)
        supervisor = self.pipeline.supervise_in_background(0.5)
        try:
            await self._run()
        except BaseException:
            # What the pipeline looked like last, for whoever reads the failed test's stderr.
            print(json.dumps({"last_status": self.status, "report": self.report}, default=str), file=sys.stderr)
            raise
        finally:
            self._producing = False
            supervisor.stop()
            for device in self.devices.values():
                await device.stop()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await asyncio.to_thread(self.pipeline.drain)
        return self.report

    async def _run(self) -> None:
        status = await self.wait_status(lambda s: len(serving_urls(s)) == 1, "one gateway serving")
        self.report["before"] = {"gateways": len(status["gateways"]), "readers": len(status["readers"])}
        self._tasks.append(asyncio.create_task(self.monitor()))
        for i in range(DEVICES_BEFORE):
            self.add_device(f"{self.run}-u{i}", None)
        self._producer = asyncio.create_task(self.produce())
        self._tasks.append(self._producer)
        await eventually(self._connected, lambda n: n == len(self.devices), timeout_s=30, what="devices connected")

        # A node joins while events flow.
        started = time.monotonic()
        # In the main thread: a node's start installs signal handlers. The loop stalls for those seconds.
        joined = self.cluster.add_node(num_cpus=JOIN_CPUS)
        self.timeline.join_at, self.timeline.joined_node = time.monotonic(), str(joined.node_id)
        self.report["add_node_s"] = round(self.timeline.join_at - started, 2)
        node = str(joined.node_id)
        status = await self.wait_status(lambda s: node in serving_urls(s), "a gateway on the new node")
        for i in range(DEVICES_BEFORE, DEVICES_BEFORE + DEVICES_AFTER):
            self.add_device(f"{self.run}-u{i}", node)  # new connections, sent to the new node by the balancer
        await eventually(self._connected, lambda n: n == len(self.devices), timeout_s=30, what="new devices connected")
        wanted = ("gateway_serving", "readers_polling", "delivery_running", "first_live_push", "first_webhook")

        async def marks() -> set[str]:
            return set(self.timeline.marks)

        await eventually(marks, lambda m: set(wanted) <= m, timeout_s=60, interval_s=0.3, what=f"new node: {wanted}")
        status = self.status
        self.report["joined"] = {
            "gateways": len(status["gateways"]),
            "gateway_nodes": len({slot.node_id for slot in self.pipeline_gateways()}),
            "ports": sorted(int(g.get("port") or 0) for g in status["gateways"] if g.get("serving")),
            "readers": len(status["readers"]),
            "readers_on_new_node": len(on_node(status, "readers", node)),
            "delivery": len(status["delivery"]),
            "delivery_on_new_node": len(on_node(status, "delivery", node)),
            "devices_on_new_node": sum(1 for d in self.devices.values() if d.gateways[-1:] == [self.urls.get(node)]),
        }
        join_at = self.timeline.join_at
        self.report["after_join_s"] = {name: self.timeline.since(name, join_at) for name in self.timeline.marks}
        self.report["after_join_s"]["serving"] = max(self.timeline.since(n, join_at) or 0.0 for n in wanted[:3])
        self.report["after_join_s"]["first_delivered"] = min(
            self.timeline.since(n, join_at) or 1e9 for n in ("first_live_push", "first_webhook")
        )

        # The node is removed while events flow: its gateway's clients reconnect elsewhere, its readers and
        # delivery actors are released and the head's take over their partitions and outbox entries.
        removed_reader_pids = {int(h["pid"]) for h in on_node(status, "readers", node)}
        connections_before = {key: d.connections for key, d in self.devices.items()}
        removed_at = time.monotonic()
        self.cluster.remove_node(joined)
        partitions = self.settings.events_partitions

        def recovered(s: Status) -> bool:
            readers_back = all(r.get("ok") and r.get("node") == self.head for r in s["readers"])
            owned = sum(len(r.get("partitions", [])) for r in s["readers"]) == partitions
            delivery_back = all(d.get("ok") and d.get("node") == self.head for d in s["delivery"])
            gateways = list(serving_urls(s)) == [self.head] and len(s["gateways"]) == 1
            return readers_back and owned and delivery_back and gateways

        status = await self.wait_status(recovered, "the head took over the removed node's actors", timeout_s=120)
        self.report["left"] = {
            "gateways": len(status["gateways"]),
            "readers": len(status["readers"]),
            "delivery": len(status["delivery"]),
            "recovered_s": round(time.monotonic() - removed_at, 2),
            "readers_released": len(removed_reader_pids - {int(r.get("pid") or 0) for r in status["readers"]}),
        }

        moved = [k for k, d in self.devices.items() if d.connections > connections_before[k]]
        await eventually(self._connected, lambda n: n == len(self.devices), timeout_s=30, what="devices reconnected")
        self.report["left"]["devices_reconnected"] = len(moved)
        self.report["left"]["devices_reconnected_s"] = round(time.monotonic() - removed_at, 2)
        await asyncio.sleep(3.0)  # pacing: the stream flows a little longer on the shrunk cluster
        self._producing = False
        await self._producer  # its last chunk is published (and in self.published) before the check
        await self._check()

    def pipeline_gateways(self) -> list[Any]:
        assert self.pipeline is not None
        return list(self.pipeline.gateways)

    async def _connected(self) -> int:
        return sum(1 for d in self.devices.values() if d.connected)

    async def _check(self) -> None:
        """Nothing lost, nothing shown twice: inboxes against the reference model, devices against the inboxes,
        every mention's webhook delivered."""
        expected = expected_inboxes(
            self.published,
            late_allowance_ms=self.settings.late_allowance_s * 1000,
            inbox_capacity=self.settings.inbox_capacity,
        )
        store = RedisStore.from_url(self.settings.redis_url)
        try:

            async def mismatched() -> list[str]:
                return [
                    user
                    for user, reference in expected.items()
                    if fingerprint(await store.notifications_after(user, 0, 10_000)) != reference
                ]

            await eventually(mismatched, lambda bad: not bad, timeout_s=90, interval_s=1, what="reference model")

            async def behind() -> list[str]:
                late = []
                for key, device in self.devices.items():
                    user = key.split("@")[0]
                    stored = {n["id"]: int(n["version"]) for n in await store.notifications_after(user, 0, 10_000)}
                    if device.newest() != stored:
                        late.append(key)
                return late

            await eventually(behind, lambda late: not late, timeout_s=60, interval_s=0.5, what="devices final")
        finally:
            await store.close()
        mentions = {
            (user, nid)
            for user, notes in expected.items()
            for nid, text, _count, _version in notes
            if text.endswith("mentioned you")
        }

        async def hooks() -> Counter[tuple[str, str]]:
            mine = [r.json() for r in self.sink.requests if r.path == "/hook"]
            return Counter((b["userId"], b["notification"]["id"]) for b in mine if "notification" in b)

        got = await eventually(hooks, lambda c: mentions <= set(c), timeout_s=60, interval_s=0.5, what="webhooks")
        self.report["checked"] = {
            "events": len(self.published),
            "users": len(expected),
            "notifications": sum(len(notes) for notes in expected.values()),
            "devices": len(self.devices),
            "device_notifications": sum(len(d.received) for d in self.devices.values()),
            "shown_twice": {k: d.seen_twice() for k, d in self.devices.items() if d.seen_twice()},
            "webhooks_expected": len(mentions),
            "webhooks_missing": len(mentions - set(got)),
            "webhooks_repeated": sum(n - 1 for n in got.values()),
        }


async def cleanup(settings: Settings, run: str) -> None:
    admin = make_admin(settings)
    await start_bounded(admin, settings, "cluster scenario cleanup")
    try:
        await admin.delete_topics([settings.events_topic])
    finally:
        await close_client(admin)
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        doomed = [key async for key in client.scan_iter(match=f"herald:{{u:{run}-*", count=1000)]
        for start in range(0, len(doomed), 500):
            await client.delete(*doomed[start : start + 500])
    finally:
        await client.aclose()


async def amain() -> dict[str, Any]:
    run = f"cl{uuid.uuid4().hex[:6]}"
    base = load_settings()
    async with HttpSink() as sink:
        settings = load_settings(
            gateway_port=0,
            events_topic=f"herald-cluster-{run}",
            reader_group=f"herald-cluster-{run}",
            redis_url=base.redis_url.rsplit("/", 1)[0] + f"/{CLUSTER_REDIS_DB}",
            readers=None,
            aggregators=2,
            delivery_actors=None,
            reader_max_records=500,
            delivery_reclaim_idle_s=3.0,  # a delivery taken by an actor of the removed node is taken over soon
            webhook_url=f"{sink.url}/hook",
            webhook_secret=SECRET,
        )
        scenario = Scenario(settings, run, sink)
        try:
            return await scenario.main()
        finally:
            ray.shutdown()
            scenario.cluster.shutdown()  # type: ignore[no-untyped-call]
            await cleanup(settings, run)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    report = asyncio.run(amain())
    print(json.dumps(report))


if __name__ == "__main__":
    main()
