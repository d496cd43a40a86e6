"""A node joins and is removed while events and connected clients flow: the new node serves within 30 s
(its gateway, its share of readers and delivery actors), the removed node's actors are re-placed and its
clients reconnect elsewhere, and nothing is lost or shown twice (reference model, devices, webhooks)."""

from __future__ import annotations

import json

import pytest

from tests.support.scripts import run_script

pytestmark = [pytest.mark.integration, pytest.mark.ray]

SERVE_WITHIN_S = 30.0


@pytest.mark.timeout(400)
def test_a_node_joins_and_leaves_under_load() -> None:
    # Its own process: a multi-raylet cluster cannot share a driver with the session's Ray runtime.
    done = run_script("tests/integration/cluster_scenario.py", timeout_s=360)
    assert done.returncode == 0, done.stderr[-6000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=1))  # the timings, for whoever runs it with -s

    # Placement: 2 CPUs, then 2 + 8 (herald/topology.py defaults: half a reader per CPU, a quarter delivery
    # actor per CPU); the growth goes to the node that joined, in proportion to its CPUs.
    assert report["before"] == {"gateways": 1, "readers": 2}
    joined = report["joined"]
    assert (joined["gateways"], joined["gateway_nodes"], len(set(joined["ports"]))) == (2, 2, 2)
    assert (joined["readers"], joined["readers_on_new_node"]) == (5, 3)
    assert (joined["delivery"], joined["delivery_on_new_node"]) == (2, 1)
    assert joined["devices_on_new_node"] == 12

    timings = report["after_join_s"]
    assert timings["serving"] <= SERVE_WITHIN_S, timings
    assert timings["first_delivered"] <= SERVE_WITHIN_S, timings

    # The node goes: its gateway, readers and delivery actors are released, the head's readers own every
    # partition again (the plan of 2 CPUs: 2 readers, 1 delivery actor), and the clients that were on the
    # node reconnect to the head's gateway with `since`.
    left = report["left"]
    assert (left["gateways"], left["readers"], left["delivery"]) == (1, 2, 1)
    assert left["readers_released"] == 3
    assert left["devices_reconnected"] >= 12

    checked = report["checked"]
    assert checked["events"] > 1000
    assert checked["device_notifications"] > 0
    assert checked["shown_twice"] == {}
    assert checked["webhooks_expected"] > 0
    assert checked["webhooks_missing"] == 0
