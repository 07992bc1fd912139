"""The Ray cluster of the ray engine's tests: a head and a second node on 127.0.0.1 (one CPU each), started once
per test session by the first test that asks for it and stopped at the end. In-process runs use it through
``ray.init``; command-line runs in a subprocess find it through ``RAY_ADDRESS``."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="the ray engine's tests need Ray Data (pip install 'ray[data]')")
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "object_store_memory": 300 << 20},
    )
    cluster.add_node(num_cpus=1, object_store_memory=300 << 20)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    previous = os.environ.get("RAY_ADDRESS")
    os.environ["RAY_ADDRESS"] = cluster.address
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("RAY_ADDRESS", None)
        else:
            os.environ["RAY_ADDRESS"] = previous
        ray.shutdown()
        cluster.shutdown()
