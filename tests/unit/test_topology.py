"""The per-node rules: how many actors of each kind, and which node each new one goes to."""

from __future__ import annotations

from collections import Counter

import pytest

from herald.config import load_settings
from herald.errors import ConfigError
from herald.topology import GatewaySlot, Topology, gateway_port, gateway_slots, place_new, plan_topology


def test_defaults_are_half_a_reader_and_aggregator_and_a_quarter_delivery_actor_per_cpu() -> None:
    settings = load_settings(readers=None, aggregators=None, delivery_actors=None)
    assert plan_topology(settings, cpus=2, partitions=12) == Topology(readers=2, aggregators=2, delivery_actors=1)
    assert plan_topology(settings, cpus=10, partitions=12) == Topology(readers=5, aggregators=5, delivery_actors=2)
    assert plan_topology(settings, cpus=64, partitions=12).readers == 12  # never more readers than partitions
    assert plan_topology(settings, cpus=0, partitions=12) == Topology(readers=2, aggregators=2, delivery_actors=1)


def test_per_cpu_rules_and_minimums_are_settings() -> None:
    settings = load_settings(
        readers=None,
        aggregators=None,
        delivery_actors=None,
        readers_per_cpu=1.0,
        min_readers=3,
        aggregators_per_cpu=0.25,
        min_aggregators=1,
        delivery_actors_per_cpu=1.5,
        min_delivery_actors=2,
    )
    assert plan_topology(settings, cpus=2, partitions=12) == Topology(readers=3, aggregators=1, delivery_actors=3)
    assert plan_topology(settings, cpus=8, partitions=6) == Topology(readers=6, aggregators=2, delivery_actors=12)


def test_explicit_counts_win_but_readers_stay_within_partitions() -> None:
    fixed = load_settings(readers=30, aggregators=5, delivery_actors=2)
    assert plan_topology(fixed, cpus=2, partitions=12) == Topology(readers=12, aggregators=5, delivery_actors=2)


@pytest.mark.parametrize(
    "bad", [{"readers_per_cpu": 0}, {"min_readers": 0}, {"gateways_per_node": -1}, {"delivery_actors_per_cpu": -1}]
)
def test_bad_rules_are_refused_naming_the_setting(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        load_settings(**bad)


def test_a_joining_node_gets_the_growth_in_proportion_to_its_cpus() -> None:
    # Two readers on a 2-CPU head; an 8-CPU node joins and the cluster wants 5: all 3 new ones go there.
    assert place_new(5, {"head": 2, "new": 8}, {"head": 2}) == ["new", "new", "new"]
    # From nothing, 5 over 2 + 8 CPUs: 1 and 4.
    assert Counter(place_new(5, {"head": 2, "new": 8}, {})) == Counter({"head": 1, "new": 4})
    # Equal nodes share evenly, ties broken by id.
    assert place_new(4, {"b": 4, "a": 4}, {}) == ["a", "b", "a", "b"]


def test_actors_of_a_node_not_taking_work_count_towards_the_total_only() -> None:
    # 5 readers run, 3 of them on a node not (yet) taking work: the plan for 2 + 2 CPUs is 2, so nothing is
    # added (place_new never removes).
    assert place_new(2, {"head": 2, "other": 2}, {"head": 2, "elsewhere": 3}) == []
    # A new node joins a cluster that wants more than runs: the growth goes to it.
    assert place_new(7, {"head": 2, "new": 12}, {"head": 2, "elsewhere": 3}) == ["new", "new"]


def test_a_cluster_without_cpus_spreads_evenly_and_no_nodes_places_nothing() -> None:
    assert Counter(place_new(4, {"a": 0, "b": 0}, {})) == Counter({"a": 2, "b": 2})
    assert place_new(3, {}, {}) == []


def test_gateways_per_node_take_consecutive_ports() -> None:
    assert gateway_slots(["n1", "n2"], 2) == {
        GatewaySlot("n1", 0),
        GatewaySlot("n1", 1),
        GatewaySlot("n2", 0),
        GatewaySlot("n2", 1),
    }
    assert gateway_slots(["n1"], 0) == set()
    assert [gateway_port(8080, slot) for slot in range(3)] == [8080, 8081, 8082]
    assert gateway_port(0, 2) == 0  # any free port, whatever the slot
