"""parallel-workers' promise semantics, on one shared service of two gated workers."""

from __future__ import annotations

import threading

import pytest

from raypw.compat import Processor, ProcessorService, Promise, PromiseSet
from tests.compat.processors import Gated, NotAProcessorSubclass, started
from tests.integration.conftest import wait_until


@pytest.fixture(scope="module")
def gates(tmp_path_factory):
    return tmp_path_factory.mktemp("gates")


@pytest.fixture(scope="module")
def service(gates):
    made = ProcessorService(Gated, parallel_workers=2, processor_class_init_args=[str(gates)])
    made.start()
    yield made
    made.stop(wait_for_finish=False)


def hold_both_workers(service, gates, name):
    """Queues two gated requests and waits until both workers run them."""
    held = [service.queue_request(f"{name}-1"), service.queue_request(f"{name}-2")]
    wait_until(lambda: {f"{name}-1", f"{name}-2"} <= set(started(gates)), "both workers are held")
    return held


def release(gates, promises):
    for promise in promises:
        (gates / promise.get_request()).touch()


def test_get_result_of_an_aborted_promise_is_none(service, gates):
    held = hold_both_workers(service, gates, "abort-queued")
    queued = service.queue_request("free-aborted")
    assert queued.abort() is None
    assert queued.get_result() is None
    assert queued.is_request_aborted() and queued.peak_result()
    release(gates, held)
    assert [p.get_result() for p in held] == [
        "abort-queued-1 processed.",
        "abort-queued-2 processed.",
    ]
    assert "free-aborted" not in started(gates)


def test_get_result_is_none_when_process_raised(service):
    promise = service.queue_request("free-boom")
    assert promise.get_result() is None
    assert promise.peak_result() and not promise.is_request_aborted()


def test_abort_of_a_running_request_returns_none_and_the_result_still_comes(service, gates):
    running = service.queue_request("abort-running")
    wait_until(lambda: "abort-running" in started(gates), "the request runs")
    assert running.abort() is None
    assert not running.is_request_aborted() and not running.peak_result()
    (gates / "abort-running").touch()
    assert running.get_result() == "abort-running processed."


def test_queue_requests_takes_the_original_keywords(service):
    now = service.queue_requests(
        ["free-a", "free-b"], completed_callback=None, consume_immediately=True
    )
    booked = service.queue_requests(["free-c", "free-d"], consume_immediately=False)
    assert [p.get_result() for p in now + booked] == [f"free-{x} processed." for x in "abcd"]
    with pytest.raises(TypeError, match="consume_immediately"):
        service.queue_requests(["free-e"], consume_immediately="yes")
    with pytest.raises(TypeError, match="completed_callback"):
        service.queue_request("free-e", completed_callback="not callable")


def test_promise_has_the_original_accessors_and_takes_attributes(service, gates):
    (gates / "accessors").touch()
    promise = service.queue_request("accessors")
    promise.tag = "mine"
    assert promise.get_request() == "accessors"
    assert promise.get_result() == "accessors processed."
    assert promise.peak_result() and not promise.is_request_aborted()
    assert service.queue_request("free-other") is not promise
    assert promise.tag == "mine"


def test_completed_callback_gets_the_same_promise_and_aborted_ones_too(service, gates):
    held = hold_both_workers(service, gates, "callbacks")
    seen: list[tuple[Promise, object]] = []
    done = threading.Event()

    def completed(promise):
        seen.append((promise, promise.get_result()))
        if len(seen) == 2:
            done.set()

    kept = service.queue_request("free-kept", completed)
    dropped = service.queue_request("free-dropped", completed)
    dropped.abort()
    release(gates, held)
    assert done.wait(60)
    assert sorted(seen, key=lambda s: str(s[1])) == [
        (dropped, None),
        (kept, "free-kept processed."),
    ]


def test_equal_requests_run_once_and_every_callback_fires(service, gates):
    """The original ran the request twice and called only the first callback: raypw's way."""
    held = hold_both_workers(service, gates, "dedup")
    calls: list[str] = []
    both = threading.Event()

    def first(promise):
        calls.append("first")
        if len(calls) == 2:
            both.set()

    def second(promise):
        calls.append("second")
        if len(calls) == 2:
            both.set()

    one = service.queue_request("free-twice", first)
    two = service.queue_request("free-twice", second)
    assert one is two
    release(gates, held)
    assert both.wait(60)
    assert sorted(calls) == ["first", "second"]
    assert started(gates).count("free-twice") == 1


def test_promise_set_yields_a_listed_duplicate_each_time(service):
    one = service.queue_request("free-dup")
    other = service.queue_request("free-single")
    listed = [one, other, one]
    yielded = list(PromiseSet(listed).select())
    assert sorted(p.get_request() for p in yielded) == ["free-dup", "free-dup", "free-single"]
    assert listed == [one, other, one]  # the caller's list is left as it was


def test_select_with_a_timeout_ends_quietly_with_what_arrived(service, gates):
    (gates / "select-done").touch()
    done = service.queue_request("select-done")
    done.get_result()
    stuck = service.queue_request("select-stuck")
    assert list(PromiseSet([done, stuck]).select(timeout=0.5)) == [done]
    (gates / "select-stuck").touch()
    assert stuck.get_result() == "select-stuck processed."


def test_wait_for_all_ignore_aborted_with_a_callback_skips_aborted(service, gates):
    """The original raised AttributeError here (a missing is_aborted): raypw's way."""
    held = hold_both_workers(service, gates, "ignore")
    aborted = service.queue_request("free-ignored")
    aborted.abort()
    kept = service.queue_request("free-reported")
    release(gates, held)
    reported: list[str] = []
    PromiseSet([*held, aborted, kept]).wait_for_all(
        completed_callback=lambda p: reported.append(p.get_request()), ignore_aborted=True
    )
    assert sorted(reported) == ["free-reported", "ignore-1", "ignore-2"]


def test_promise_set_refuses_what_is_not_a_compat_promise():
    with pytest.raises(TypeError, match="promises_list"):
        PromiseSet(["hola"])


def test_base_processor_returns_none_and_any_class_with_process_works():
    assert Processor().process("hola") is None
    service = ProcessorService(
        NotAProcessorSubclass, parallel_workers=1, processor_class_init_args=["?"]
    )
    service.start()
    try:
        assert service.queue_request("hola").get_result().startswith("hola? by ")
    finally:
        service.stop()


def test_a_class_without_process_is_refused_naming_the_argument():
    with pytest.raises(TypeError, match="processor_class"):
        ProcessorService(dict, parallel_workers=1)
    with pytest.raises(ValueError, match="parallel_workers"):
        ProcessorService(NotAProcessorSubclass, parallel_workers=0)
