"""A two-node Ray cluster on this machine, for the cluster test (run as a script).

Starts a head node and one worker node with Ray's own cluster utilities, prints
the address once both are up, and shuts both down when stdin closes.
"""
from __future__ import annotations

import sys

from ray.cluster_utils import Cluster


def main() -> None:
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        print(cluster.address, flush=True)
        sys.stdin.read()            # until the test closes our stdin
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
