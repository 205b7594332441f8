"""Joins this machine to a Ray cluster as a second node, on loopback, then exits.

``ray start --address=127.0.0.1:P`` cannot do this here: with
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (Ray on loopback) it refuses to add a node, and without it,
it rewrites 127.0.0.1 to the machine's interface address. This does what ``ray start`` does
for a joining node, through the same ``Node`` class, with the node's address pinned to
127.0.0.1. Like ``ray start``, it leaves the node's daemons running when it exits.

Usage: python -m tests.cluster.join_node 127.0.0.1:PORT NUM_CPUS '{"resource": 1}'
"""

from __future__ import annotations

import json
import os
import sys

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

from ray._private.node import Node  # noqa: E402
from ray._private.parameter import RayParams  # noqa: E402


def main() -> None:
    address, cpus, resources = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    params = RayParams(
        node_ip_address="127.0.0.1",
        gcs_address=address,
        num_cpus=cpus,
        resources=resources,
        node_manager_port=0,
        include_log_monitor=True,
    )
    params.dashboard_agent_listen_port = None
    node = Node(params, head=False, shutdown_at_exit=False, spawn_reaper=False)
    print(f"joined {address} as node {node.node_id}", flush=True)


if __name__ == "__main__":
    main()
