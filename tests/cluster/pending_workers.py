"""Driver for the pending-workers test: an autoscaled pool grows past what the nodes hold.

A 1-node Ray cluster on loopback whose head has one ``accel``; each worker needs one. The
autoscaler grows the pool to 3 for a burst, and the 2 new workers wait to be placed: that
waiting demand, which Ray's own autoscaler reads, is what adds a node on a real cluster
(``cluster.yaml``). Here a node with 2 ``accel`` is added by hand, and the waiting workers
start on it. Then a second service grows past the 3 ``accel`` and is stopped while 2 of its
workers still wait; a third is left so, Ray and the cluster are shut down, and then it is
stopped.

Run as ``python -m tests.cluster.pending_workers``; prints one JSON line with what happened.
A hang dumps every thread's stack to stderr and exits (the test shows it).
"""

from __future__ import annotations

import dataclasses
import faulthandler
import json
import os
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402
from ray.autoscaler.v2.sdk import get_cluster_status  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from raypw import AutoscaleConfig, ProcessorService, PromiseSet  # noqa: E402
from tests.cluster.node_loss import WhereAmI  # noqa: E402

# Past this, the driver is taken as hung: every thread's stack goes to stderr and it exits.
HANG_SECONDS = 170.0
# How long a condition Ray has to bring about may take on the busy 2-core machine.
CONDITION_SECONDS = 60.0


def wait_until(condition: Callable[[], Any], what: str) -> Any:
    """Polls ``condition`` until it returns something true; returns that.

    Raises:
        TimeoutError: naming ``what``, after ``CONDITION_SECONDS``.
    """
    deadline = time.monotonic() + CONDITION_SECONDS
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.1)


def pending_accel(gcs_address: str) -> int:
    """Actors and tasks waiting for an ``accel``, as Ray's autoscaler sees the demand."""
    status = get_cluster_status(gcs_address)
    return sum(
        request.count
        for demand in status.resource_demands.ray_task_actor_demand
        for request in demand.bundles_by_count
        if "accel" in request.bundle
    )


def autoscaled(max_workers: int) -> ProcessorService[Any, Any]:
    """A service of WhereAmI from 1 to ``max_workers`` workers, each holding one accel."""
    return ProcessorService(
        WhereAmI,
        autoscale=AutoscaleConfig(
            min_workers=1,
            max_workers=max_workers,
            target_wait_seconds=0.2,
            check_seconds=0.1,
            idle_seconds=600,  # never shrinks during the test
        ),
        worker={"num_cpus": 0.5, "resources": {"accel": 1.0}},
    )


def waiting_state(service: ProcessorService[Any, Any], gcs_address: str, grown: int) -> Any:
    """What shows the pool at ``grown`` workers with exactly 2 of them waiting for a place;
    None until then."""
    stats = service.stats()
    pids = service.worker_pids
    if stats.workers != grown or pids.count(0) != 2:
        return None
    demand = pending_accel(gcs_address)
    if demand != 2:
        return None
    return {
        "workers": stats.workers,
        "workers_alive": stats.workers_alive,
        "workers_up": stats.workers_up,
        "workers_started": sum(1 for pid in pids if pid),
        "workers_waiting": pids.count(0),
        "ray_pending_accel": demand,
        "processed": stats.processed,
    }


def main() -> None:
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    began = time.monotonic()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "resources": {"accel": 1},
            "node_ip_address": "127.0.0.1",
            "include_dashboard": False,
        },
    )
    ray.init(address=cluster.address)
    report: dict[str, Any] = {}
    third: ProcessorService[Any, Any] | None = None
    try:
        gcs = cluster.address
        head = ray.get_runtime_context().get_node_id()
        service = autoscaled(max_workers=3).start()
        promises = service.queue_requests(f"r{i}" for i in range(300))
        report["waiting"] = wait_until(
            lambda: waiting_state(service, gcs, grown=3), "2 of 3 workers waiting for accel"
        )
        report["nodes_before"] = sorted({p.get_result()[1] for p in promises if p.done()})
        adding = time.monotonic()
        added = cluster.add_node(num_cpus=2, resources={"accel": 2}, node_ip_address="127.0.0.1")
        report["add_node_seconds"] = time.monotonic() - adding
        wait_until(lambda: 0 not in service.worker_pids, "the waiting workers to start")
        report["placed_seconds"] = time.monotonic() - adding
        wait_until(lambda: pending_accel(gcs) == 0, "Ray's accel demand to go")
        after = service.queue_requests(f"a{i}" for i in range(60))
        PromiseSet(promises + after).wait_for_all(timeout=120)
        results = [p.get_result() for p in promises]
        after_results = [p.get_result() for p in after]
        report.update(
            head=head,
            added=added.node_id,
            requests=len(results) + len(after_results),
            correct=sum(r == f"r{i}" for i, (r, _) in enumerate(results))
            + sum(r == f"a{i}" for i, (r, _) in enumerate(after_results)),
            nodes_used=sorted({n for _, n in results + after_results}),
            stats=dataclasses.asdict(service.stats()),
        )
        service.stop()

        # A second pool grows to 5 on the 3 accel there are: 2 workers never get a node.
        second = autoscaled(max_workers=5).start()
        pending = second.queue_requests(f"s{i}" for i in range(300))
        report["second_waiting"] = wait_until(
            lambda: waiting_state(second, gcs, grown=5), "2 of 5 workers waiting for accel"
        )
        stopping = time.monotonic()
        second.stop(wait=False)
        report["stop_seconds"] = time.monotonic() - stopping
        report["second_aborted"] = sum(1 for p in pending if p.is_aborted())
        report["second_done"] = sum(1 for p in pending if p.done() and not p.is_aborted())
        # Its waiting workers were ended with it, not left for Ray to place some day.
        wait_until(lambda: pending_accel(gcs) == 0, "the second pool's waiting workers to go")
        report["ray_pending_accel_after_stop"] = pending_accel(gcs)

        # A third grows the same way and is left running: Ray is shut down under it, then it
        # is stopped. Its pending promises are aborted, not waited for in vain, and no new
        # local Ray is started to reach the coordinator.
        third = autoscaled(max_workers=5)
        third.start()
        left = third.queue_requests(f"t{i}" for i in range(300))
        report["third_waiting"] = wait_until(
            lambda: waiting_state(third, gcs, grown=5), "2 of 5 workers waiting for accel"
        )
    finally:
        ending = time.monotonic()
        ray.shutdown()
        report["ray_shutdown_seconds"] = time.monotonic() - ending
        ending = time.monotonic()
        cluster.shutdown()
        report["cluster_shutdown_seconds"] = time.monotonic() - ending
    assert third is not None
    stopping = time.monotonic()
    third.stop()
    report["stop_after_shutdown_seconds"] = time.monotonic() - stopping
    report["third_aborted"] = sum(1 for p in left if p.is_aborted())
    report["third_settled"] = sum(1 for p in left if p.done())
    report["ray_started_again"] = ray.is_initialized()
    report["total_seconds"] = time.monotonic() - began
    faulthandler.cancel_dump_traceback_later()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
