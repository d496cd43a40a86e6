"""The Herald driver: connects to Ray, ensures the topics, places the actor graph and supervises it.

Run it as `python pipeline.py` or `herald run`; SIGTERM or Ctrl-C drains it: readers stop polling, finish the
batch in flight and commit, delivery pools stop, then the driver exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
import uuid
from collections import Counter
from types import FrameType
from typing import Any

import ray
from ray.exceptions import AuthenticationError, RayActorError

from actors.factory import (
    NAMESPACE,
    Aggregator,
    Delivery,
    Gateway,
    PreferencesFeedActor,
    Reader,
    on_node,
    probe_node,
    start_loop,
)
from herald.channels.registry import configured_channels
from herald.cluster import join_failure_hint, resolve_ray_address
from herald.config import Settings, load_settings
from herald.contracts import ActorHealth
from herald.errors import ClusterJoinError
from herald.topics import ensure_topics
from herald.topology import GatewaySlot, Topology, gateway_port, gateway_slots, place_new, plan_topology

__all__ = ["Pipeline", "Topology", "connect_ray", "plan_topology"]

log = logging.getLogger("herald.pipeline")

# Channels delivered from the outbox by delivery actors; IN_APP is not one of them (it is pushed live by the
# aggregators' commits to the gateways, herald/live.py), the external channels will be.
DRAIN_TIMEOUT_S = 60.0
# How often the supervisor looks at the nodes (one GCS call): a node that joined waits up to this long before
# anything is placed on it (docs/scaling.md, "Growing and shrinking: measured").
NODE_CHECK_INTERVAL_S = 2.0
STATUS_LOG_INTERVAL_S = 30.0


def unreachable(label: str, error: str) -> ActorHealth:
    """The health of an actor that did not answer: `label` names it by its place in the pipeline."""
    return {"actor": label, "ok": False, "error": error}


def summarize(status: dict[str, list[ActorHealth]]) -> str:
    """One log line of a status(): how much was read, applied, delivered and how far behind the readers are."""
    readers, delivery = status.get("readers", []), status.get("delivery", [])
    aggregators = status.get("aggregators", [])
    unhealthy = [h.get("actor", "?") for group in status.values() for h in group if not h.get("ok")]
    return (
        f"read={sum(r.get('events', 0) for r in readers)} "
        f"lag={sum(sum(r.get('lag', {}).values()) for r in readers)} "
        f"dead_lettered={sum(r.get('dead_lettered', 0) for r in readers)} "
        f"duplicates={sum(r.get('duplicates', 0) for r in readers)} "
        f"delivered={sum(d.get('delivered', 0) for d in delivery)} "
        f"live_sent={live_sent(status)} "
        f"channels_without_provider={sum(a.get('channels_without_provider', 0) for a in aggregators)} "
        f"gateways={len(status.get('gateways', []))} "
        f"unhealthy={unhealthy or 'none'}"
    )


def live_sent(status: dict[str, list[ActorHealth]]) -> int:
    """IN_APP notification versions the gateways pushed to connected users."""
    return sum(int((g.get("counters") or {}).get("live_notifications", 0)) for g in status.get("gateways", []))


def connect_ray(settings: Settings) -> None:
    """Join the cluster `ray_address` names, else start a private local runtime (tests, the quickstart).

    On a node of a `ray up` cluster the node environment sets HERALD_RAY_ADDRESS=auto (scripts/node-env.sh), so
    `herald run` under `ray exec` joins that cluster, whose new nodes then get gateways; Ray 2.60 token
    authentication comes from RAY_AUTH_MODE=token and ~/.ray/auth_token there (docs/architecture.md "Ray
    deployment").
    """
    if ray.is_initialized():
        return
    level = getattr(logging, settings.ray_log_level.upper())
    if settings.ray_address:
        address = resolve_ray_address(settings.ray_address)
        try:
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level=level)
        except (ConnectionError, AuthenticationError, RuntimeError) as exc:
            raise ClusterJoinError(join_failure_hint(address, str(exc))) from exc
    else:
        # "local" starts a private runtime even when another Ray instance runs on this machine.
        ray.init(
            address="local",
            namespace=NAMESPACE,
            num_cpus=settings.ray_num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=level,
        )


class Pipeline:
    def __init__(self, settings: Settings | None = None, *, name: str | None = None, reader_actor: Any = None) -> None:
        """`reader_actor`: the Ray actor class of the readers, `actors.factory.Reader` unless a harness (the
        benchmark's gated reader) needs its own subclass of ReaderActor."""
        self.settings = settings or load_settings()
        # External channels with a configured provider get delivery actors; the others are counted by the
        # aggregators as channels_without_provider (and named by `herald doctor`), never silently dropped.
        self.delivery_channels = configured_channels(self.settings)
        self.name = name or f"herald-{uuid.uuid4().hex[:6]}"
        self._reader_actor = Reader if reader_actor is None else reader_actor
        self.aggregators: list[Any] = []
        self.aggregator_names: list[str] = []
        self.readers: list[Any] = []
        self.delivery: list[Any] = []
        self.preferences: list[Any] = []  # the user-preferences consumer, when external channels are delivered
        self.gateways: dict[GatewaySlot, Any] = {}  # (node id, slot) -> gateway actor pinned to that node
        # The node each reader / delivery actor is pinned to, so growth goes to the nodes below their share
        # (herald/topology.py place_new) and the actors of a node that left are replaced.
        self.reader_nodes: list[str] = []
        self.delivery_nodes: list[tuple[str, str]] = []  # (channel, node) per delivery actor
        self._next_index = {"reader": 0, "delivery": 0}  # names stay unique when actors are replaced
        # Nodes known to take work (a probe task ran there) and the probes still out: growth waits for them.
        self._ready_nodes: set[str] = set()
        self._probes: dict[str, Any] = {}
        self._next_node_check = 0.0
        self._loops: dict[Any, tuple[str, Any]] = {}
        self._stop_requested = False
        self.topology: Topology | None = None
        self._generation = 0
        self._prefix = self.name

    def start(self, *, settle_group: bool = True) -> Pipeline:
        """Place the actor graph; returns once it works (with `settle_group`, once readers own all partitions)."""
        self._stop_requested = False
        self._generation += 1
        prefix = f"{self.name}-g{self._generation}"
        connect_ray(self.settings)
        asyncio.run(ensure_topics(self.settings, replication_factor=self.settings.topic_replication_factor))
        alive = alive_nodes()
        nodes = self._schedulable(alive, wait_s=30.0) or alive
        self.topology = plan_topology(
            self.settings, cpus=sum(nodes.values()), partitions=self.settings.events_partitions
        )
        log.info("starting %s with %s on %d node(s)", self.name, self.topology, len(nodes))
        self.aggregator_names = [f"{prefix}-aggregator-{i}" for i in range(self.topology.aggregators)]
        # Aggregators are spread over the nodes there are at start, softly: Ray restarts one whose node left
        # elsewhere, and their number stays (shards map onto them by shard % count).
        self.aggregators = [
            Aggregator.options(name=name, **on_node(node, soft=True)).remote(
                self.settings, i, ("IN_APP", *self.delivery_channels)
            )
            for i, (name, node) in enumerate(
                zip(self.aggregator_names, place_new(self.topology.aggregators, nodes, {}), strict=True)
            )
        ]
        self.readers, self.delivery, self.preferences = [], [], []
        self.reader_nodes, self.delivery_nodes = [], []
        self._next_index = {"reader": 0, "delivery": 0}
        self._prefix = prefix
        if self.delivery_channels:
            feed = PreferencesFeedActor.options(name=f"{prefix}-preferences").remote(self.settings)
            self.preferences.append(feed)
            self._loops[start_loop(feed)] = ("preferences", feed)
        self.reconcile_nodes()
        self.wait_ready(settle_group=settle_group)
        return self

    def wait_ready(self, timeout_s: float = 120.0, *, settle_group: bool = True) -> None:
        """Block until every actor answers, every reader polls with its share of the partitions and every
        gateway serves.

        Waiting for the consumer group to settle matters: until it has, events sit unread, and the first ones
        published after start() would see seconds of latency.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.status()
            # Every actor answers (a first call to an actor still starting would wait seconds for its process).
            pending = [h for group in status.values() for h in group if not h.get("ok")]
            assigned = [len(r.get("partitions", [])) for r in status["readers"]]
            settled = not settle_group or (sum(assigned) == self.settings.events_partitions and all(assigned))
            if not pending and settled:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"pipeline not ready after {timeout_s:g}s: {pending or status['readers']}")
            self.supervise_once(0.5)

    def reconcile_nodes(self) -> None:
        """`gateways_per_node` gateways on every alive node; more readers and delivery actors when the cluster
        grew, on the nodes below their share of CPUs (docs/architecture.md, "Ray deployment")."""
        nodes = alive_nodes()
        per_node = self.settings.gateways_per_node if self.settings.gateway_enabled else 0
        wanted_slots = gateway_slots(sorted(nodes), per_node)
        for slot in set(self.gateways) - wanted_slots:
            log.info("node %s left: dropping its gateway %d", slot.node_id[:8], slot.slot)
            self._release(self.gateways.pop(slot))
        for slot in sorted(wanted_slots - set(self.gateways), key=lambda s: (s.node_id, s.slot)):
            port = gateway_port(self.settings.gateway_port, slot.slot)
            settings = self.settings.model_copy(update={"gateway_port": port})
            gateway = Gateway.options(
                name=f"{self._prefix}-gateway-{slot.node_id[:8]}-{slot.slot}", **on_node(slot.node_id)
            ).remote(settings)
            self.gateways[slot] = gateway
            self._loops[start_loop(gateway)] = ("gateway", gateway)
        self._drop_actors_of_nodes_that_left(nodes)
        self._grow_with_cluster(self._schedulable(nodes))

    def _drop_actors_of_nodes_that_left(self, nodes: dict[str, float]) -> None:
        """Readers and delivery actors are pinned to their node, so Ray cannot restart them once it is gone:
        they are released, and _grow_with_cluster places what the smaller cluster's plan wants on the nodes
        left. Nothing is lost: a reader commits only applied offsets (its partitions move to the other readers
        of the group), and a delivery actor's pending outbox entries are claimed by another after
        delivery_reclaim_idle_s (docs/architecture.md, "Ray deployment")."""
        keep = [i for i, node in enumerate(self.reader_nodes) if node in nodes]
        for i in sorted(set(range(len(self.readers))) - set(keep)):
            log.info("node %s left: releasing its reader", self.reader_nodes[i][:8])
            self._release(self.readers[i])
        self.readers = [self.readers[i] for i in keep]
        self.reader_nodes = [self.reader_nodes[i] for i in keep]
        keep = [i for i, (_channel, node) in enumerate(self.delivery_nodes) if node in nodes]
        for i in sorted(set(range(len(self.delivery))) - set(keep)):
            log.info("node %s left: releasing its delivery actor", self.delivery_nodes[i][1][:8])
            self._release(self.delivery[i])
        self.delivery = [self.delivery[i] for i in keep]
        self.delivery_nodes = [self.delivery_nodes[i] for i in keep]

    def _release(self, actor: Any) -> None:
        self._loops = {ref: v for ref, v in self._loops.items() if v[1] is not actor}
        ray.kill(actor, no_restart=True)

    def _index(self, kind: str) -> int:
        index = self._next_index[kind]
        self._next_index[kind] = index + 1
        return index

    def _schedulable(self, nodes: dict[str, float], wait_s: float = 0.0) -> dict[str, float]:
        """The alive nodes a probe task already ran on. A node that just joined is alive before Ray schedules
        onto it: a softly placed actor would fall back to another node, so growth waits for its probe."""
        for node in nodes.keys() - self._ready_nodes - self._probes.keys():
            self._probes[node] = probe_node(node)
        self._probes = {node: ref for node, ref in self._probes.items() if node in nodes}
        if self._probes:
            refs = list(self._probes.values())
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=wait_s)
            for node, ref in list(self._probes.items()):
                if ref in done:
                    del self._probes[node]
                    try:
                        self._ready_nodes.add(ray.get(ref))
                    except Exception as exc:  # noqa: BLE001 - the node is probed again next time
                        log.info("node %s does not take work yet (%s)", node[:8], exc)
        self._ready_nodes &= nodes.keys()
        return {node: cpus for node, cpus in nodes.items() if node in self._ready_nodes}

    def _grow_with_cluster(self, nodes: dict[str, float]) -> None:
        wanted = plan_topology(self.settings, cpus=sum(nodes.values()), partitions=self.settings.events_partitions)
        for node in place_new(wanted.readers, nodes, Counter(self.reader_nodes)):
            i = self._index("reader")
            reader = self._reader_actor.options(name=f"{self._prefix}-reader-{i}", **on_node(node)).remote(
                self.settings, i, self.aggregator_names
            )
            self.readers.append(reader)
            self.reader_nodes.append(node)
            self._loops[start_loop(reader)] = ("reader", reader)
        for channel in self.delivery_channels:
            placed = Counter(n for c, n in self.delivery_nodes if c == channel)
            for node in place_new(wanted.delivery_actors, nodes, placed):
                i = self._index("delivery")
                actor = Delivery.options(name=f"{self._prefix}-delivery-{i}", **on_node(node)).remote(
                    self.settings, channel, i
                )
                self.delivery.append(actor)
                self.delivery_nodes.append((channel, node))
                self._loops[start_loop(actor)] = ("delivery", actor)

    def supervise_once(self, timeout_s: float = 1.0) -> None:
        """Restart any loop that ended with an error (its actor was restarted by Ray, the loop was not)."""
        # A node that joined is placed on as soon as its probe answers, not at the next periodic check.
        if time.monotonic() >= self._next_node_check or self._probes:
            self._next_node_check = time.monotonic() + NODE_CHECK_INTERVAL_S
            self.reconcile_nodes()
        if not self._loops:
            return
        done, _ = ray.wait(list(self._loops), num_returns=len(self._loops), timeout=timeout_s)
        for ref in done:
            entry = self._loops.pop(ref, None)
            if entry is None:  # dropped meanwhile (a node left)
                continue
            kind, actor = entry
            try:
                ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - any failure of a loop means restart it
                log.warning("%s loop failed (%s); restarting it", kind, exc)
                # Often a node left (a pinned gateway cannot be placed): look at the nodes at the next turn
                # rather than retrying the loop every turn until the periodic check.
                self._next_node_check = 0.0
                self._loops[start_loop(actor)] = (kind, actor)
                continue
            if not self._stop_requested:
                log.warning("%s loop returned without a drain; restarting it", kind)
                self._loops[start_loop(actor)] = (kind, actor)

    def supervise_in_background(self, interval_s: float = 0.5) -> BackgroundSupervisor:
        """Supervise from a thread (tests, the demo); stop() it before draining."""
        return BackgroundSupervisor(self, interval_s)

    def status(self, timeout_s: float = 10.0) -> dict[str, list[ActorHealth]]:
        """Every actor's health, asked of all actors at once under one deadline of `timeout_s`.

        An actor that is dead, restarting or does not answer in time shows as unreachable (`ok` False, `error`
        says why); one such actor delays the answer by at most `timeout_s` in all, never once per actor.
        """
        groups = {
            "readers": self.readers,
            "aggregators": self.aggregators,
            "delivery": self.delivery,
            "preferences": self.preferences,
            "gateways": list(self.gateways.values()),
        }
        asked = [
            (group, f"{group}[{i}]", actor.health.remote())
            for group, actors in groups.items()
            for i, actor in enumerate(actors)
        ]
        refs = [ref for _, _, ref in asked]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s) if refs else ([], [])
        answered = set(ready)
        result: dict[str, list[ActorHealth]] = {group: [] for group in groups}
        for group, label, ref in asked:
            if ref not in answered:
                result[group].append(unreachable(label, f"no answer within {timeout_s:g}s"))
                continue
            try:
                result[group].append(ray.get(ref))
            except Exception as exc:  # noqa: BLE001 - a status call reports, it does not fail
                result[group].append(unreachable(label, f"{type(exc).__name__}: {exc}"))
        return result

    def request_stop(self, *_: Any) -> None:
        self._stop_requested = True

    def run_forever(self, *, seconds: float | None = None) -> None:
        """Supervise until SIGTERM/SIGINT (or `seconds`), then drain."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        deadline = None if seconds is None else time.monotonic() + seconds
        next_status_log = time.monotonic() + STATUS_LOG_INTERVAL_S
        try:
            while not self._stop_requested and (deadline is None or time.monotonic() < deadline):
                self.supervise_once(1.0)
                if time.monotonic() >= next_status_log:
                    next_status_log = time.monotonic() + STATUS_LOG_INTERVAL_S
                    log.info("status: %s", summarize(self.status()))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.drain()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: draining", signum)
        self._stop_requested = True

    def drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Stop polling, let in-flight batches finish and commit, stop delivery, then release the actors."""
        self._stop_requested = True
        _tell_all("drain", [r.drain.remote() for r in self.readers], timeout_s)
        reader_loops = [ref for ref, (kind, _) in self._loops.items() if kind == "reader"]
        ray.wait(reader_loops, num_returns=len(reader_loops), timeout=timeout_s)
        draining = [*self.delivery, *self.preferences, *self.gateways.values()]
        _tell_all("drain", [a.drain.remote() for a in draining], timeout_s)
        ray.wait(list(self._loops), num_returns=len(self._loops), timeout=timeout_s)
        self._loops.clear()
        for actor in [*self.readers, *self.delivery, *self.preferences, *self.aggregators, *self.gateways.values()]:
            ray.kill(actor, no_restart=True)
        self.readers, self.delivery, self.aggregators, self.gateways = [], [], [], {}
        self.preferences, self.reader_nodes, self.delivery_nodes = [], [], []


def alive_nodes() -> dict[str, float]:
    """Node id -> CPUs of every alive node of the Ray cluster."""
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return {n["NodeID"]: float(n.get("Resources", {}).get("CPU", 0.0)) for n in nodes if n.get("Alive")}


def _tell_all(what: str, refs: list[Any], timeout_s: float) -> None:
    """Wait for every actor's answer. One that is dead or restarting (its node just left, say) holds nothing in
    flight that drain could save: a reader commits only what was applied, and its partitions' next owner resumes
    from there. It is logged and released with the others, not allowed to stop the drain."""
    deadline = time.monotonic() + timeout_s
    for ref in refs:
        try:
            ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
        except RayActorError as exc:
            log.warning("%s: an actor did not answer (%s); releasing it anyway", what, exc)


class BackgroundSupervisor:
    def __init__(self, pipeline: Pipeline, interval_s: float) -> None:
        self._pipeline = pipeline
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"{pipeline.name}-supervisor", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._pipeline.supervise_once(self._interval_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def main(seconds: float | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pipeline = Pipeline().start()
    log.info("pipeline %s running; Ctrl-C or SIGTERM drains it", pipeline.name)
    pipeline.run_forever(seconds=seconds)
    log.info("pipeline %s drained", pipeline.name)


if __name__ == "__main__":
    main()
