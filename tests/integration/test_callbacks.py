"""Behaviour 4: callbacks, in the caller's thread or from a background thread."""

from __future__ import annotations

import logging
import threading

import pytest

from raypw import PromiseSet
from tests.integration.processors import Gates, Recorder, WaitsForFile


def test_wait_for_all_calls_back_in_callers_thread_in_arrival_order(make_service, tmp_path):
    # Each request runs until its gate opens: b's is open from the start, and each callback
    # opens the next one's (c after b, a after c). A wait in list order would never end.
    service = make_service(Gates, parallel_workers=3, processor_class_init_args=(str(tmp_path),))
    promises = service.queue_requests(["a", "b", "c"])
    after = {"b": "c", "c": "a"}
    calls = []

    def on_done(promise):
        calls.append((promise.request, threading.get_ident()))
        if promise.request in after:
            (tmp_path / after[promise.request]).touch()

    (tmp_path / "b").touch()
    PromiseSet(promises + [promises[0]]).wait_for_all(timeout=60, completed_callback=on_done)
    assert calls == [(r, threading.get_ident()) for r in ["b", "c", "a"]]


def test_queue_request_callback_runs_in_background_thread_once_each(make_service):
    service = make_service(Recorder, parallel_workers=2)
    calls = []
    all_called = threading.Event()

    def on_done(promise):
        calls.append((promise.request, threading.get_ident(), promise.done()))
        if len(calls) == 5:
            all_called.set()

    promises = [service.queue_request(f"r{i}", on_done) for i in range(5)]
    assert all_called.wait(30)
    PromiseSet(promises).wait_for_all(timeout=30)
    assert sorted(c[0] for c in calls) == [f"r{i}" for i in range(5)]
    assert all(c[1] != threading.get_ident() and c[2] for c in calls)


def test_callback_runs_as_soon_as_its_request_finishes(make_service, tmp_path):
    service = make_service(Gates, parallel_workers=2, processor_class_init_args=(str(tmp_path),))
    quick_called = threading.Event()
    slow = service.queue_request("slow")  # runs until its gate opens
    service.queue_request("free-quick", lambda p: quick_called.set())
    # Nobody waits on anything: the callback comes by itself, while "slow" still runs.
    assert quick_called.wait(60)
    assert not slow.done()
    (tmp_path / "slow").touch()
    assert slow.get_result(timeout=60)[0] == "slow"


def test_failing_callback_is_logged_and_others_still_run(make_service, caplog):
    service = make_service(Recorder, parallel_workers=2)
    caplog.set_level(logging.ERROR, logger="raypw")
    good = []
    done = threading.Event()

    def bad(promise):
        raise RuntimeError("callback bug")

    def fine(promise):
        good.append(promise.request)
        if len(good) == 3:
            done.set()

    promises = [service.queue_request(f"x{i}", bad) for i in range(3)]
    promises += [service.queue_request(f"y{i}", fine) for i in range(3)]
    assert done.wait(30)
    single_thread = []

    def bad_then_record(promise):
        single_thread.append(promise.request)
        raise ValueError("boom")

    PromiseSet(promises).wait_for_all(timeout=30, completed_callback=bad_then_record)
    assert len(single_thread) == 6
    assert "callback bug" in caplog.text and "boom" in caplog.text
    assert (
        service.queue_request("still serving").get_result(timeout=30)["request"] == "still serving"
    )


def test_a_blocking_future_callback_does_not_hold_up_other_results(make_service, tmp_path):
    # A future's done-callback is user code: blocking in it (here on another promise's
    # result) may delay other callbacks, never the delivery of results.
    service = make_service(WaitsForFile, parallel_workers=2)
    first_gate, second_gate = tmp_path / "first", tmp_path / "second"
    first, second = service.queue_requests([str(first_gate), str(second_gate)])
    blocking, unblocked = threading.Event(), threading.Event()
    seen = []

    def wait_for_second(future):
        blocking.set()
        seen.append(second.get_result(timeout=60))
        unblocked.set()

    first.future().add_done_callback(wait_for_second)
    first_gate.touch()
    assert blocking.wait(30)
    second_gate.touch()
    assert second.get_result(timeout=30) == str(second_gate)
    assert service.queue_request(str(first_gate)).get_result(timeout=30) == str(first_gate)
    assert unblocked.wait(30) and seen == [str(second_gate)]


def test_a_callback_that_is_not_callable_is_refused_and_nothing_is_queued(make_service):
    service = make_service(Recorder, parallel_workers=1)
    with pytest.raises(TypeError, match="completed_callback"):
        service.queue_request("one", completed_callback="print")
    with pytest.raises(TypeError, match="completed_callback"):
        service.queue_requests(["two", "three"], completed_callback=42)
    assert service.stats().pending == 0
    assert service.queue_request("one").get_result(timeout=30)["request"] == "one"
