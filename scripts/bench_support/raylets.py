"""The Ray runtime a drain side runs on: the usual in-process one (1 raylet), or a `ray.cluster_utils.Cluster` of
several raylets on this machine splitting its CPUs, so the drain shows what spreading the pipeline over nodes
costs (actor calls between raylets, one more raylet and object store) where no extra CPU comes with the node."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import ray
from ray.cluster_utils import Cluster

from actors.factory import NAMESPACE

T = TypeVar("T")


@contextmanager
def raylet_runtime(raylets: int, cpus: int | None) -> Iterator[None]:
    """Within the block Ray runs with `raylets` raylets; 1 leaves it to the pipeline (`connect_ray`)."""
    if ray.is_initialized():
        ray.shutdown()
    if raylets <= 1:
        try:
            yield
        finally:
            ray.shutdown()
        return
    per_node = max(1, (cpus or os.cpu_count() or 2) // raylets)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": per_node})
    try:
        for _ in range(raylets - 1):
            cluster.add_node(num_cpus=per_node)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
        yield
    finally:
        ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]


def on_raylets(raylets: int, cpus: int | None, side: Callable[[], T]) -> T:
    with raylet_runtime(raylets, cpus):
        return side()
