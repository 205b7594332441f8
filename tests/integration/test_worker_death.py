"""Every promise ends: a dead worker fails its requests clearly instead of hanging them.

(Restarting workers and retrying their requests is issue #4; this is the floor.)
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from raypw import PromiseSet, WorkerDiedError
from tests.integration.processors import Recorder


def test_killed_workers_fail_their_and_the_queued_requests(make_service):
    service = make_service(Recorder, parallel_workers=1)
    running = service.queue_request("victim:5")
    queued = service.queue_requests(["after1", "after2"])
    pid = service.worker_pids[0]
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    PromiseSet([running, *queued]).wait_for_all(timeout=30)
    for promise in (running, *queued):
        with pytest.raises(WorkerDiedError):
            promise.get_result(timeout=0)
    late = service.queue_request("too late")
    with pytest.raises(WorkerDiedError, match="every worker"):
        late.get_result(timeout=30)
