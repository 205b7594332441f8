"""Behaviour 5: abort() stops a request before it runs, and drops a running one's result."""

from __future__ import annotations

import time

import pytest

from raypw import PromiseAbortedError, PromiseSet
from tests.integration.conftest import wait_until
from tests.integration.processors import CancelAware, Gates, Recorder, gate_log


def test_request_aborted_before_processing_is_never_processed(make_service, tmp_path):
    # "busy" holds the only worker until its gate opens: the rest wait behind it, unstarted.
    service = make_service(Gates, parallel_workers=1, processor_class_init_args=(str(tmp_path),))
    running = service.queue_request("busy")
    queued = service.queue_requests([f"free-q{i}" for i in range(5)])
    wait_until(lambda: "start busy" in gate_log(tmp_path), "busy has started")
    assert queued[2].abort() is True
    assert queued[2].is_aborted() and queued[2].done()
    with pytest.raises(PromiseAbortedError, match="aborted"):
        queued[2].get_result(timeout=1)
    (tmp_path / "busy").touch()
    PromiseSet([running, *queued]).wait_for_all(timeout=60)
    assert _started(tmp_path) == ["busy", "free-q0", "free-q1", "free-q3", "free-q4"]
    assert [p.get_result()[0] for p in [running, *queued] if p is not queued[2]] == [
        "busy",
        "free-q0",
        "free-q1",
        "free-q3",
        "free-q4",
    ]


def test_abort_right_after_queueing_never_processes(make_service, tmp_path):
    # Both workers are held by a gated request, so every abort lands before its request can
    # run, wherever the request is then: still on its way to the coordinator, queued there,
    # or sent ahead in a batch to a worker.
    service = make_service(Gates, parallel_workers=2, processor_class_init_args=(str(tmp_path),))
    holders = service.queue_requests(["hold1", "hold2"])
    wait_until(lambda: sorted(_started(tmp_path)) == ["hold1", "hold2"], "both workers are held")
    promises = service.queue_requests(f"free-n{i}" for i in range(200))
    aborted = {p.request for p in promises[::2] if p.abort()}
    assert aborted == {f"free-n{i}" for i in range(0, 200, 2)}
    (tmp_path / "hold1").touch()
    (tmp_path / "hold2").touch()
    PromiseSet(promises + holders).wait_for_all(timeout=60)
    assert not aborted & set(_started(tmp_path))
    assert sorted(_started(tmp_path)) == sorted(
        ["hold1", "hold2", *(f"free-n{i}" for i in range(1, 200, 2))]
    )
    assert all(p.get_result()[0] == p.request for p in promises if not p.is_aborted())


def test_aborting_a_finished_promise_returns_false(make_service):
    service = make_service(Recorder, parallel_workers=1)
    promise = service.queue_request("done")
    result = promise.get_result(timeout=30)
    assert promise.abort() is False
    assert not promise.is_aborted()
    assert promise.get_result() == result


def test_aborting_a_running_request_aborts_the_promise_at_once(make_service, tmp_path):
    # "long" runs until the test opens its gate: the promise can only end by the abort.
    service = make_service(Gates, parallel_workers=1, processor_class_init_args=(str(tmp_path),))
    running = service.queue_request("long")
    wait_until(lambda: "start long" in gate_log(tmp_path), "long has started")
    assert running.abort() is True
    assert running.done() and running.is_aborted()
    with pytest.raises(PromiseAbortedError):
        running.get_result(timeout=30)
    assert "end long" not in gate_log(tmp_path)  # aborted while it still ran
    # Its result, when it comes, is dropped; the worker is still usable afterwards.
    (tmp_path / "long").touch()
    wait_until(lambda: "end long" in gate_log(tmp_path), "long has ended")
    assert service.queue_request("free-next").get_result(timeout=60)[0] == "free-next"
    with pytest.raises(PromiseAbortedError):
        running.get_result(timeout=0)


def test_shared_promise_is_aborted_only_by_its_last_holder(make_service, tmp_path):
    service = make_service(Gates, parallel_workers=1, processor_class_init_args=(str(tmp_path),))
    blocker = service.queue_request("block")  # holds the only worker until its gate opens
    shared = [service.queue_request("free-shared") for _ in range(3)]
    assert shared[0] is shared[1] is shared[2]
    assert shared[0].abort() is False
    assert shared[0].abort() is False
    assert not shared[0].is_aborted()
    assert shared[0].abort() is True
    assert shared[0].is_aborted()
    (tmp_path / "block").touch()
    blocker.get_result(timeout=60)
    # One worker takes requests in order: once a later request is done, "free-shared"
    # would have run before it.
    assert service.queue_request("free-after").get_result(timeout=60)[0] == "free-after"
    assert _started(tmp_path) == ["block", "free-after"]


def test_shared_promise_still_completes_when_some_holders_abort(make_service, tmp_path):
    service = make_service(Gates, parallel_workers=1, processor_class_init_args=(str(tmp_path),))
    blocker = service.queue_request("block")  # "free-kept" stays pending behind it
    a = service.queue_request("free-kept")
    b = service.queue_request("free-kept")
    assert a is b
    assert a.abort() is False
    assert not b.done()
    (tmp_path / "block").touch()
    assert b.get_result(timeout=60)[0] == "free-kept"
    blocker.get_result(timeout=60)
    assert _started(tmp_path) == ["block", "free-kept"]


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


def _started(gates) -> list[str]:
    """The requests a Gates processor has started, in the order they started."""
    return [line[len("start ") :] for line in gate_log(gates) if line.startswith("start ")]
