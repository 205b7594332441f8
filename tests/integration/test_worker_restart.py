"""A call meant for a worker's process that reaches the process Ray restarted in its place.

Ray restarts a dead worker under the same actor handle, so a call sent for the dead process
can run in the new one. The new process never saw that batch: it must not answer "not
started" to a skip (the coordinator would run a request that did start a second time,
uncounted against its retries), must not wait for the batch's outcomes (they never come),
and must not run a batch meant for the dead process.
"""

from __future__ import annotations

import os
import signal
import time

import ray

from raypw.protocol import WorkBatch
from raypw.worker import remote_worker_class
from tests.integration.processors import Stamper, stamps


def restarted_worker(log: str) -> tuple[object, int, int]:
    """A worker actor killed once and restarted: (actor, dead pid, new pid)."""
    actor = (
        remote_worker_class()
        .options(max_restarts=1, max_task_retries=0, num_cpus=0)
        .remote(Stamper, (log,), {})
    )
    old = ray.get(actor.ready.remote(), timeout=60)
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            new = ray.get(actor.ready.remote(), timeout=10)
        except ray.exceptions.RayActorError:
            time.sleep(0.1)  # restarting
            continue
        if new != old:
            return actor, old, new
    raise AssertionError("Ray did not restart the worker")


def test_the_new_process_refuses_calls_meant_for_the_dead_one(tmp_path):
    log = str(tmp_path / "log")
    actor, old, new = restarted_worker(log)
    batch = WorkBatch(7, ["a", "b"])

    assert ray.get(actor.skip.remote(7, [0, 1], old), timeout=30) is None
    assert ray.get(actor.outcomes.remote(7, 0.001, old), timeout=30) is None
    ray.get(actor.run.remote(batch, old), timeout=30)
    assert stamps(log) == []

    # Calls naming the process that answers are served as before.
    ray.get(actor.run.remote(batch, new), timeout=30)
    chunk = ray.get(actor.outcomes.remote(7, 0.001, new), timeout=30)
    while not chunk.final:
        chunk = ray.get(actor.outcomes.remote(7, 0.001, new), timeout=30)
    assert [request for request, _, _ in stamps(log)] == ["a", "b"]
    assert ray.get(actor.skip.remote(7, [1], new), timeout=30) == [1]  # it ran
    ray.kill(actor, no_restart=True)
