"""Behaviour 5: abort() stops a request before it runs, and drops a running one's result."""

from __future__ import annotations

import time

import pytest

from raypw import PromiseAbortedError, PromiseSet
from tests.integration.conftest import processed
from tests.integration.processors import CancelAware, Recorder


def test_request_aborted_before_processing_is_never_processed(make_service, log_file):
    service = make_service(Recorder, parallel_workers=1, processor_class_init_args=(str(log_file),))
    running = service.queue_request("busy:1")
    queued = service.queue_requests([f"q{i}" for i in range(5)])
    time.sleep(0.3)  # "busy" is running, the rest wait in the queue
    assert queued[2].abort() is True
    assert queued[2].is_aborted() and queued[2].done()
    with pytest.raises(PromiseAbortedError, match="aborted"):
        queued[2].get_result(timeout=1)
    PromiseSet([running, *queued]).wait_for_all(timeout=30)
    assert "q2" not in processed(log_file)
    assert sorted(processed(log_file)) == ["busy:1", "q0", "q1", "q3", "q4"]


def test_abort_right_after_queueing_never_processes(make_service, log_file):
    service = make_service(Recorder, parallel_workers=2, processor_class_init_args=(str(log_file),))
    promises = service.queue_requests(f"n{i}" for i in range(200))
    aborted = {p.request for p in promises[::2] if p.abort()}
    PromiseSet(promises).wait_for_all(timeout=60)
    assert aborted, "some aborts must land before their requests run"
    assert not aborted & set(processed(log_file))
    assert all(p.get_result()["request"] == p.request for p in promises if not p.is_aborted())


def test_aborting_a_finished_promise_returns_false(make_service):
    service = make_service(Recorder, parallel_workers=1)
    promise = service.queue_request("done")
    result = promise.get_result(timeout=30)
    assert promise.abort() is False
    assert not promise.is_aborted()
    assert promise.get_result() == result


def test_aborting_a_running_request_aborts_the_promise_at_once(make_service, log_file):
    service = make_service(Recorder, parallel_workers=1, processor_class_init_args=(str(log_file),))
    running = service.queue_request("long:2")
    while not processed(log_file):
        time.sleep(0.02)
    started = time.monotonic()
    assert running.abort() is True
    with pytest.raises(PromiseAbortedError):
        running.get_result(timeout=0.5)
    assert time.monotonic() - started < 1.0
    # The worker is still usable afterwards.
    assert service.queue_request("next").get_result(timeout=30)["request"] == "next"


def test_shared_promise_is_aborted_only_by_its_last_holder(make_service, log_file):
    service = make_service(Recorder, parallel_workers=1, processor_class_init_args=(str(log_file),))
    blocker = service.queue_request("block:0.8")
    shared = [service.queue_request("shared") for _ in range(3)]
    assert shared[0] is shared[1] is shared[2]
    assert shared[0].abort() is False
    assert shared[0].abort() is False
    assert not shared[0].is_aborted()
    assert shared[0].abort() is True
    assert shared[0].is_aborted()
    blocker.get_result(timeout=30)
    time.sleep(0.3)
    assert "shared" not in processed(log_file)


def test_shared_promise_still_completes_when_some_holders_abort(make_service):
    service = make_service(Recorder, parallel_workers=1)
    service.queue_request("block:0.5")
    a = service.queue_request("kept")
    b = service.queue_request("kept")
    assert a.abort() is False
    assert b.get_result(timeout=30)["request"] == "kept"


def test_aborting_a_running_request_lets_process_see_is_canceled(make_service, tmp_path):
    log = tmp_path / "cancel.log"
    service = make_service(CancelAware, parallel_workers=1, processor_class_init_args=(str(log),))
    promise = service.queue_request("loop")
    deadline = time.monotonic() + 60
    while not (log.exists() and log.read_text() == "running\n"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert promise.abort() is True
    while log.read_text() == "running\n":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert log.read_text() == "cancelled\n"
