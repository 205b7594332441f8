"""Driver: ``ray.shutdown()`` whose core-worker teardown takes a while, with work pending.

Run as ``python -m tests.integration.shutdown_slow_teardown``; prints one JSON line with
how the promises ended and when, against when Ray let go of its core worker.

Ray says it is shut down before it tears its core worker down, and ends the process if an
``ObjectRef`` is dropped in between (CI saw it). The teardown here is Ray's own, held open
3 s after it is done, so that a thread of raypw that lets go of its refs in that gap is
seen to, rather than caught on one run in many.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402
import ray._private.worker  # noqa: E402

from raypw import PromiseAbortedError, ServiceNotRunningError  # noqa: E402
from tests.integration.shutdown_first import start_with_a_slow_request  # noqa: E402


class HeldTeardown:
    """Ray's core worker, whose ``shutdown_driver()`` returns 3 s after it is done; every
    other call goes straight to it, and each is noted once the teardown is done."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.torn_down_at: float | None = None
        self.late_calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if self.torn_down_at is not None:
            self.late_calls.append(f"{name} from {threading.current_thread().name}")
        return getattr(self._real, name)

    def shutdown_driver(self) -> None:
        self._real.shutdown_driver()
        self.torn_down_at = time.monotonic()
        time.sleep(3.0)


def main() -> None:
    service, promises = start_with_a_slow_request(20)
    ended: list[str] = []
    ended_at: list[float] = []

    def wait_for_all() -> None:  # a thread of the user's that waits meanwhile
        for promise in promises:
            try:
                promise.get_result()
                ended.append("done")
            except PromiseAbortedError:
                ended.append("aborted")
            ended_at.append(time.monotonic())

    produced: list[Any] = []
    producing = threading.Event()
    refused: list[str] = []

    def produce() -> None:  # a thread of the user's that goes on queueing meanwhile
        i = 0
        while not producing.is_set():
            try:
                produced.append(service.queue_request(f"late{i}"))
            except ServiceNotRunningError as exc:
                refused.append(str(exc))
                return
            if i % 10 == 5:
                produced[-1].abort()  # and aborts some of them
            i += 1
            time.sleep(0.01)

    waiter = threading.Thread(target=wait_for_all)
    waiter.start()
    producer = threading.Thread(target=produce)
    producer.start()
    worker = ray._private.worker.global_worker
    held = HeldTeardown(worker.core_worker)
    worker.core_worker = held
    ray.shutdown()
    waiter.join()
    producing.set()
    producer.join()
    late = []
    for promise in produced:
        try:
            promise.get_result(timeout=30)
            late.append("done")
        except PromiseAbortedError:
            late.append("aborted")
    ray_again = ray.is_initialized()
    service.stop()
    assert held.torn_down_at is not None
    report = {
        "ended": ended,
        "ended_before_teardown": sum(at < held.torn_down_at for at in ended_at),
        "late_calls": held.late_calls,
        "queued_meanwhile": late,
        "refused": refused,
        "ray_again": ray_again,
    }
    print(json.dumps(report))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
