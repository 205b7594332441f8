"""Driver: ``ray.shutdown()`` while a service still has work, then ``stop()``.

Run as ``python -m tests.integration.shutdown_first``; prints one JSON line with how each
promise ended and whether Ray was started again.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import faulthandler  # noqa: E402

import ray  # noqa: E402

from raypw import ProcessorService, PromiseAbortedError  # noqa: E402
from tests.integration.processors import Recorder  # noqa: E402


def start_with_a_slow_request(others: int) -> tuple[ProcessorService[str, Any], list[Any]]:
    """Starts Ray of its own and a one-worker service, queues a slow request and ``others``
    behind it, and returns once the slow one has started."""
    faulthandler.dump_traceback_later(150, exit=True)  # a hang shows where, then fails
    ray.init(address="local", include_dashboard=False, num_cpus=2)  # its own, never a neighbour
    log = Path(tempfile.mkdtemp()) / "log"
    service = ProcessorService(Recorder, parallel_workers=1, processor_class_init_args=(str(log),))
    service.start()
    promises = service.queue_requests(["slow:120", *(f"r{i}" for i in range(others))])
    while not log.exists():  # the slow request has started
        time.sleep(0.05)
    return service, promises


def main() -> None:
    service, promises = start_with_a_slow_request(50)
    ray.shutdown()
    ended = []
    for promise in promises:
        try:
            promise.get_result()
            ended.append("done")
        except PromiseAbortedError as exc:
            ended.append(f"aborted: {exc}")
    service.stop()
    print(json.dumps({"ended": ended, "ray_again": ray.is_initialized()}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
