"""A two-node Ray cluster on this machine, for the cluster tests (run as a script).

Starts a head node and one worker node with Ray's own cluster utilities, prints
the address once both are up (then the worker node's id on a line of its own), and
shuts both down when stdin closes. A line
`remove` on stdin first removes the worker node (its raylet and workers killed,
as when a machine is lost), and `removed` is printed once it is gone.
"""
from __future__ import annotations

import sys

from ray.cluster_utils import Cluster


def main() -> None:
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        worker = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        print(cluster.address, flush=True)
        print(worker.node_id, flush=True)
        for line in sys.stdin:          # until the test closes our stdin
            if line.strip() == "remove" and worker is not None:
                cluster.remove_node(worker, allow_graceful=False)
                worker = None
                print("removed", flush=True)
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
