"""How many actors of each kind the pipeline runs, and on which node each new one goes (docs/architecture.md,
"Ray deployment": sizes and placement). Pure arithmetic on CPU counts, so the rules are unit-tested without Ray.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


class ScalingSettings(Protocol):
    """The settings the rules read (herald.config.Settings has them all)."""

    @property
    def readers(self) -> int | None: ...
    @property
    def aggregators(self) -> int | None: ...
    @property
    def delivery_actors(self) -> int | None: ...
    @property
    def readers_per_cpu(self) -> float: ...
    @property
    def min_readers(self) -> int: ...
    @property
    def aggregators_per_cpu(self) -> float: ...
    @property
    def min_aggregators(self) -> int: ...
    @property
    def delivery_actors_per_cpu(self) -> float: ...
    @property
    def min_delivery_actors(self) -> int: ...


@dataclass(frozen=True)
class Topology:
    """Actor counts for the whole cluster; `delivery_actors` is per outbox channel with a provider."""

    readers: int
    aggregators: int
    delivery_actors: int


def _per_cpu(explicit: int | None, per_cpu: float, minimum: int, cpus: float) -> int:
    if explicit is not None:
        return explicit
    return max(minimum, math.floor(cpus * per_cpu + 1e-9))


def plan_topology(settings: ScalingSettings, *, cpus: float, partitions: int) -> Topology:
    """Sizes from the explicit settings, else from the cluster's CPUs by the per-CPU rules.

    Readers never outnumber partitions: a reader without a partition would only hold a consumer group seat.
    """
    return Topology(
        readers=min(partitions, _per_cpu(settings.readers, settings.readers_per_cpu, settings.min_readers, cpus)),
        aggregators=_per_cpu(settings.aggregators, settings.aggregators_per_cpu, settings.min_aggregators, cpus),
        delivery_actors=_per_cpu(
            settings.delivery_actors, settings.delivery_actors_per_cpu, settings.min_delivery_actors, cpus
        ),
    )


def place_new(wanted: int, node_cpus: Mapping[str, float], placed: Mapping[str, int]) -> list[str]:
    """The nodes of the actors to add so that `wanted` actors of one kind run, spread in proportion to CPUs.

    `node_cpus`: the nodes that take work and their CPUs. `placed`: how many actors of this kind run per node;
    those of a node not in `node_cpus` count towards `wanted` but towards no node's share. Each new actor goes
    to the node furthest below its share `wanted * cpus / total` (ties: the node with more CPUs, then the
    smaller id), so a node that joins gets the growth.
    Never removes anything: returns [] when `wanted` actors or more already run.
    """
    missing = wanted - sum(placed.values())
    total_cpus = sum(node_cpus.values())
    if missing <= 0 or not node_cpus:
        return []
    counts = {node: placed.get(node, 0) for node in node_cpus}
    chosen: list[str] = []
    for _ in range(missing):

        def deficit(node: str) -> tuple[float, float, str]:
            share = wanted * node_cpus[node] / total_cpus if total_cpus > 0 else wanted / len(node_cpus)
            # min() on the negated deficit and CPUs, then the id: deterministic for a given cluster.
            return (-(share - counts[node]), -node_cpus[node], node)

        node = min(node_cpus, key=deficit)
        counts[node] += 1
        chosen.append(node)
    return chosen


@dataclass(frozen=True)
class GatewaySlot:
    """One gateway place: `slot` 0..gateways_per_node-1 on node `node_id`."""

    node_id: str
    slot: int


def gateway_slots(alive_nodes: list[str], gateways_per_node: int) -> set[GatewaySlot]:
    """Every gateway the alive nodes should run."""
    return {GatewaySlot(node, slot) for node in alive_nodes for slot in range(gateways_per_node)}


def gateway_port(base_port: int, slot: int) -> int:
    """The port of a node's `slot`-th gateway: consecutive ports from `base_port`, or any free port (0)."""
    return 0 if base_port == 0 else base_port + slot
