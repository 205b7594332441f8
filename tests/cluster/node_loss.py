"""Driver for the node-loss test: a 2-node Ray cluster on loopback, one node removed mid-run.

Run as ``python -m tests.cluster.node_loss``; prints one JSON line with what happened.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from raypw import Processor, ProcessorService, PromiseSet  # noqa: E402


class WhereAmI(Processor):
    """Says which node processed the request."""

    def process(self, request):
        time.sleep(0.05)
        return request, ray.get_runtime_context().get_node_id()


def main() -> None:
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "node_ip_address": "127.0.0.1", "include_dashboard": False},
    )
    doomed = cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    try:
        doomed_id = doomed.node_id
        service = ProcessorService(WhereAmI, parallel_workers=4, worker={"num_cpus": 0.5}).start()
        promises = service.queue_requests(f"r{i}" for i in range(400))
        seen: set[str] = set()
        for promise in PromiseSet(promises).select(timeout=60):
            seen.add(promise.get_result()[1])
            if len(seen) == 2:
                break
        cluster.remove_node(doomed)
        removed_at = time.monotonic()
        PromiseSet(promises).wait_for_all(timeout=120)
        results = [p.get_result() for p in promises]
        after = service.queue_requests(f"after{i}" for i in range(20))
        after_nodes = {p.get_result(timeout=60)[1] for p in after}
        stats = dataclasses.asdict(service.stats())
        service.stop()
        print(
            json.dumps(
                {
                    "requests": len(results),
                    "correct": sum(r == f"r{i}" for i, (r, _) in enumerate(results)),
                    "nodes_used": sorted({n for _, n in results}),
                    "doomed": doomed_id,
                    "after_nodes": sorted(after_nodes),
                    "recovery_seconds": time.monotonic() - removed_at,
                    "stats": stats,
                }
            )
        )
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
