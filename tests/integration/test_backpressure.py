"""Backpressure (issue 13, point 3): max_queued bounds what a program has pending."""

from __future__ import annotations

import threading
import weakref

import pytest

from raypw import PromiseSet, QueueFullError
from tests.integration.conftest import wait_until, waits_in
from tests.integration.processors import Echo, Gates, gate_log


def test_queue_request_waits_while_max_queued_are_pending_and_goes_in_when_one_finishes(
    make_service, tmp_path
):
    service = make_service(
        Gates, parallel_workers=1, processor_class_init_args=(str(tmp_path),), max_queued=2
    )
    first, second = service.queue_requests(["a", "b"])
    with pytest.raises(QueueFullError, match="max_queued is 2"):
        service.queue_request("free-c", block=False)
    with pytest.raises(QueueFullError, match="block_timeout"):
        service.queue_request("free-c", block_timeout=0)
    queued: list = []
    thread = threading.Thread(target=lambda: queued.append(service.queue_request("free-c")))
    thread.start()
    wait_until(lambda: waits_in(thread.ident, "queue_request"), "queue_request waits for room")
    wait_until(lambda: gate_log(tmp_path) == ["start a"], "a holds the only worker")
    assert not queued
    (tmp_path / "a").touch()
    thread.join(timeout=120)
    assert not thread.is_alive()
    (tmp_path / "b").touch()
    PromiseSet([first, second, *queued]).wait_for_all(timeout=120)
    assert [p.get_result()[0] for p in (first, second, *queued)] == ["a", "b", "free-c"]


def test_queue_requests_runs_a_generator_with_at_most_max_queued_pending(make_service):
    service = make_service(Echo, parallel_workers=2, max_queued=100)
    most = 0

    def requests():
        nonlocal most
        for i in range(1000):
            most = max(most, service._client.pending)  # promises not finished
            yield f"r{i}"

    promises = service.queue_requests(requests())
    PromiseSet(promises).wait_for_all(timeout=120)
    assert [p.get_result() for p in promises] == [f"r{i} processed." for i in range(1000)]
    assert 0 < most <= 100


def test_finished_requests_whose_callback_has_not_run_count_against_max_queued(make_service):
    # A slow completed_callback slows the producer instead of piling results up in memory.
    service = make_service(Echo, parallel_workers=2, max_queued=10)
    release = threading.Event()
    called: list[str] = []
    taken = 0

    def callback(promise) -> None:
        called.append(promise.get_result())
        release.wait()

    def requests():
        nonlocal taken
        for i in range(100):
            taken += 1
            yield f"r{i}"

    promises: list = []
    producer = threading.Thread(
        target=lambda: promises.extend(service.queue_requests(requests(), callback))
    )
    producer.start()
    try:
        wait_until(lambda: service.stats().pending == 0, "what was admitted has finished")
        wait_until(lambda: waits_in(producer.ident, "_admit"), "the producer waits for room")
        # Admitted: what waits for its callback, plus the callback running, plus the chunk
        # the producer holds (taken from the generator, not yet admitted).
        assert taken <= 10 + 1 + 2
        assert len(called) == 1
    finally:
        release.set()
    producer.join(timeout=120)
    assert not producer.is_alive()
    wait_until(lambda: len(called) == 100, "every callback ran")
    assert sorted(called) == sorted(f"r{i} processed." for i in range(100))
    assert len(promises) == 100


def test_a_callback_that_queues_requests_is_not_held_by_its_own_backlog(make_service):
    # A crawler queues what it found from completed_callback: the callbacks waiting behind it
    # must not count against its own room, or it would wait for itself.
    service = make_service(Echo, parallel_workers=2, max_queued=4)
    done = threading.Event()
    seen: list[str] = []

    def crawl(promise) -> None:
        seen.append(promise.get_result())
        depth = int(promise.request.split(":")[1])
        if depth < 30 and len(seen) < 40:
            service.queue_requests([f"left:{depth + 1}:{len(seen)}", f"right:{depth + 1}"], crawl)
        if len(seen) >= 40:
            done.set()

    service.queue_requests([f"root:{i}" for i in range(4)], crawl)
    assert done.wait(timeout=120), f"the crawl stalled after {len(seen)} results"


def test_queue_requests_without_keeping_promises_holds_only_the_pending_ones(make_service):
    # keep_promises=False is the endless-stream form: the call returns a count, and no
    # promise outlives its request and its callback, however long the generator runs.
    service = make_service(Echo, parallel_workers=2, max_queued=40)
    ended: weakref.WeakSet = weakref.WeakSet()  # promises whose callback ran, while alive
    results: list[str] = []
    most_alive = 0
    total = 1000

    def save(promise):
        ended.add(promise)
        results.append(promise.get_result())

    def requests():
        nonlocal most_alive
        for i in range(total):
            most_alive = max(most_alive, len(ended))
            yield f"r{i}"

    taken = service.queue_requests(requests(), save, keep_promises=False)
    assert taken == total
    wait_until(lambda: len(results) == total, "every callback ran")
    assert sorted(results) == sorted(f"r{i} processed." for i in range(total))
    assert most_alive <= 3 * 40  # bounded by max_queued, not by the 1,000 requests


def test_queue_requests_without_keeping_promises_needs_a_callback_and_a_bool(make_service):
    service = make_service(Echo, parallel_workers=1)
    with pytest.raises(ValueError, match="keep_promises=False needs a completed_callback"):
        service.queue_requests(["a"], keep_promises=False)
    with pytest.raises(TypeError, match="keep_promises must be True or False"):
        service.queue_requests(["a"], print, keep_promises="no")  # type: ignore[call-overload]
    assert service.stats().pending == 0  # neither call queued anything


def test_a_stream_that_fails_part_way_aborts_what_it_had_queued(make_service, tmp_path):
    # As with the promises kept: a bad request ends the call and withdraws its requests still
    # pending, so each callback sees its request done or aborted and none stays queued.
    service = make_service(
        Gates, parallel_workers=1, processor_class_init_args=(str(tmp_path),), max_queued=20
    )
    ended: list = []

    def requests():
        yield "a"  # holds the only worker until its gate file appears
        yield from (f"free-{i}" for i in range(5))
        yield threading.Lock()  # cannot be pickled

    with pytest.raises(TypeError, match="pickle"):
        service.queue_requests(requests(), ended.append, keep_promises=False)
    (tmp_path / "a").touch()
    # The requests go in chunks of max_queued // 4: "a" and free-0..3 were queued, free-4
    # came with the lock in the chunk that was refused.
    wait_until(lambda: len(ended) == 5, "every queued request's callback ran")
    assert all(p.is_aborted() for p in ended)
    assert service.stats().pending == 0
