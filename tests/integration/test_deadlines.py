"""Deadlines (issue 13, point 1): queue_request(..., timeout=) frees the worker."""

from __future__ import annotations

import math

import pytest

from raypw import PromiseSet, RequestTimeoutError
from tests.integration.conftest import processed, wait_until
from tests.integration.processors import CancelAware, Gates, Hangs, gate_log


def test_a_stuck_request_times_out_its_worker_is_replaced_and_every_other_request_completes(
    make_service, log_file
):
    # One worker, no retries: the other requests finish only if the stuck worker is replaced,
    # and only if killing it charged them nothing.
    service = make_service(
        Hangs,
        parallel_workers=1,
        processor_class_init_args=(str(log_file),),
        max_retries=0,
        request_timeout_grace=1.0,
    )
    (old_pid,) = service.worker_pids
    stuck = service.queue_request("hang", timeout=2.0)
    others = service.queue_requests([f"r{i}" for i in range(20)], timeout=300)
    with pytest.raises(TimeoutError, match=r"'hang' did not finish within its timeout") as caught:
        stuck.get_result(timeout=120)
    error = caught.value
    assert isinstance(error, RequestTimeoutError)
    assert error.request == "hang" and error.timeout == 2.0
    PromiseSet(others).wait_for_all(timeout=120)
    assert [p.get_result() for p in others] == [f"r{i} done" for i in range(20)]
    (new_pid,) = service.worker_pids
    assert new_pid not in (0, old_pid)
    stats = service.stats()
    assert stats.worker_restarts == 1 and stats.timed_out == 1 and stats.done == 20
    started = [line.split() for line in processed(log_file)]
    assert started[0] == ["start", "hang", str(old_pid)]
    assert sorted(name for _, name, pid in started[1:]) == sorted(f"r{i}" for i in range(20))
    assert {pid for _, _, pid in started[1:]} == {str(new_pid)}  # none ran on the stuck one


def test_a_request_that_sees_it_was_cancelled_returns_and_keeps_its_worker(make_service, log_file):
    service = make_service(
        CancelAware,
        parallel_workers=1,
        processor_class_init_args=(str(log_file),),
        request_timeout_grace=60.0,
    )
    (pid,) = service.worker_pids
    promise = service.queue_request("cancel me", timeout=2.0)
    with pytest.raises(RequestTimeoutError):
        promise.get_result(timeout=120)
    wait_until(lambda: processed(log_file) == ["cancelled"], "process() saw is_canceled()")
    assert service.queue_request("quick").get_result(timeout=120) == "quick"
    assert service.worker_pids == [pid]
    assert service.stats().worker_restarts == 0


def test_a_request_not_started_by_its_deadline_is_never_started(make_service, tmp_path):
    # The service's request_timeout is the default deadline; math.inf opts out of it. Equal
    # requests keep each its own deadline and are processed once.
    service = make_service(
        Gates,
        parallel_workers=1,
        processor_class_init_args=(str(tmp_path),),
        request_timeout=1.0,
    )
    hold = service.queue_request("hold", timeout=math.inf)
    wait_until(lambda: gate_log(tmp_path) == ["start hold"], "hold holds the only worker")
    late = service.queue_request("free-late")
    shared_short = service.queue_request("free-shared")
    shared_long = service.queue_request("free-shared", timeout=math.inf)
    assert shared_short is not shared_long
    for promise in (late, shared_short):
        with pytest.raises(RequestTimeoutError, match="timeout of 1 s"):
            promise.get_result(timeout=120)
    assert gate_log(tmp_path) == ["start hold"]
    (tmp_path / "hold").touch()
    assert hold.get_result(timeout=120)[0] == "hold"
    assert shared_long.get_result(timeout=120)[0] == "free-shared"
    assert service.queue_request("free-after", timeout=300).get_result(timeout=120)[0]
    assert [line for line in gate_log(tmp_path) if line.startswith("start")] == [
        "start hold",
        "start free-shared",
        "start free-after",
    ]
