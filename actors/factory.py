"""Every Ray option of every Herald actor, in one place: restarts, CPUs, concurrency groups, placement."""

from __future__ import annotations

from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.aggregator import AggregatorActor
from actors.delivery import DeliveryActor
from actors.gateway import GatewayActor
from actors.preferences import PreferencesActor
from actors.reader import ReaderActor

NAMESPACE = "herald"
# Loops that never return run in a group of their own so health and drain calls still get through.
LOOP_GROUP = "loop"

# Ray's type stubs know only the options common to tasks and actors, not concurrency_groups or max_concurrency.
_actor: Any = ray.remote

_RESTARTING: dict[str, Any] = {"max_restarts": -1, "max_task_retries": 0, "num_cpus": 0}

Reader = _actor(concurrency_groups={LOOP_GROUP: 1}, **_RESTARTING)(ReaderActor)
Aggregator = _actor(max_concurrency=16, **_RESTARTING)(AggregatorActor)
Gateway = _actor(concurrency_groups={LOOP_GROUP: 1}, **_RESTARTING)(GatewayActor)
Delivery = _actor(concurrency_groups={LOOP_GROUP: 1}, **_RESTARTING)(DeliveryActor)
PreferencesFeedActor = _actor(concurrency_groups={LOOP_GROUP: 1}, **_RESTARTING)(PreferencesActor)


def on_node(node_id: str, *, soft: bool = False) -> dict[str, Any]:
    """Place an actor on one node. Hard (gateways, readers, delivery actors): it lives and dies with the node,
    and the supervisor replaces it when nodes change. Soft (aggregators): it starts there, and when the node is
    gone Ray restarts it on another one (docs/architecture.md, "Ray deployment")."""
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node_id, soft=soft)}


def _node_of_this_worker() -> str:
    return str(ray.get_runtime_context().get_node_id())


# A task pinned to a node that has just joined answers once that node takes work. Until then a softly placed
# actor may be scheduled elsewhere, as if the node did not exist (soft node affinity falls back).
_probe: Any = ray.remote(num_cpus=0, max_retries=0)(_node_of_this_worker)


def probe_node(node_id: str) -> Any:
    """A reference that resolves to `node_id` once a task ran on that node."""
    return _probe.options(**on_node(node_id)).remote()


def start_loop(actor: Any) -> Any:
    """Start an actor's long-running `run` in its loop concurrency group."""
    return actor.run.options(concurrency_group=LOOP_GROUP).remote()
