"""Separate driver programs for the multi-node tests (each run as its own process)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import ray

from raypw import ProcessorService, PromiseSet
from tests.cluster.node_loss import WhereAmI
from tests.integration.processors import Stamper


def spread() -> None:
    """Starts 4 workers; prints the nodes they ran on and the cluster's alive nodes."""
    with ProcessorService(WhereAmI, parallel_workers=4, worker={"num_cpus": 0.5}) as service:
        nodes = {p.get_result(timeout=120)[1] for p in service.queue_requests(range(60))}
    alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    print(json.dumps({"worker_nodes": sorted(nodes), "alive": sorted(alive)}))


def owner(folder: str, detached: str) -> None:
    """Starts the named service 'thumbs', queues v0..v99 while the gate is shut."""
    path = Path(folder)
    service = ProcessorService(
        Stamper,
        parallel_workers=4,
        processor_class_init_args=(str(path / "log"), str(path / "gate")),
        name="thumbs",
        detached=detached == "detached",
    ).start()
    promises = service.queue_requests(f"v{i}" for i in range(100))
    (path / "owner-queued").touch()
    if detached == "detached":
        return  # exit without stop(): the service must outlive this program
    PromiseSet(promises).wait_for_all(timeout=120)
    (path / "owner-results.json").write_text(json.dumps([p.get_result() for p in promises]))
    while not (path / "client-done").exists():
        time.sleep(0.05)
    service.stop()


def client(folder: str, shutdown: str) -> None:
    """Attaches to 'thumbs', queues v50..v149, opens the gate, waits for its results."""
    path = Path(folder)
    service = ProcessorService.connect("thumbs", processor_class=Stamper)
    promises = service.queue_requests(f"v{i}" for i in range(50, 150))
    # v50..v99 join the owner's at the coordinator, asynchronously: open the gate only once
    # all 50 have, or some of the owner's could finish first and be processed again.
    deadline = time.monotonic() + 120
    while service.stats().deduplicated < 50:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {service.stats().deduplicated} of 50 requests joined")
        time.sleep(0.05)
    (path / "gate").touch()
    PromiseSet(promises).wait_for_all(timeout=120)
    (path / "client-results.json").write_text(json.dumps([p.get_result() for p in promises]))
    (path / "client-done").touch()
    service.stop(shutdown=shutdown == "shutdown")


if __name__ == "__main__":
    ray.init()  # RAY_ADDRESS names the cluster
    {"spread": spread, "owner": owner, "client": client}[sys.argv[1]](*sys.argv[2:])
