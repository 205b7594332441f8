"""Behaviour 1: N worker actors, one processor each, competing for the queue."""

from __future__ import annotations

import time

from raypw import PromiseSet
from tests.integration.processors import Recorder


def test_each_worker_builds_one_processor_with_init_args(make_service):
    service = make_service(
        Recorder, parallel_workers=2, processor_class_init_args={"tag": "model-v1"}
    )
    results = [
        p.get_result(timeout=30) for p in service.queue_requests(f"r{i}:0.2" for i in range(8))
    ]
    assert {r["tag"] for r in results} == {"model-v1"}
    assert len({r["pid"] for r in results}) == 2
    assert len(set(service.worker_pids)) == 2
    # Each worker process built its processor exactly once, however many requests it served.
    assert {r["built"] for r in results} == {1}


def test_positional_init_args(make_service):
    service = make_service(Recorder, parallel_workers=1, processor_class_init_args=(None, "pos"))
    assert service.queue_request("x").get_result(timeout=30)["tag"] == "pos"


def test_example_resolves_two_by_two(make_service):
    service = make_service(Recorder, parallel_workers=2)
    started = time.monotonic()
    promises = [service.queue_request(f"hola{i}:1.5") for i in range(4)]
    finished = []
    for promise in PromiseSet(promises).select(timeout=30):
        promise.get_result()
        finished.append(time.monotonic() - started)
    assert finished[0] > 1.3 and finished[1] < 2.4, finished
    assert finished[2] > 2.8 and finished[3] < 3.9, finished


def test_idle_worker_never_waits_while_another_holds_queued_work(make_service):
    service = make_service(Recorder, parallel_workers=2)
    slow = service.queue_request("slow:3")
    fast = service.queue_requests(f"fast{i}:0.1" for i in range(10))
    fast_results = [p.get_result(timeout=30) for p in fast]
    slow_result = slow.get_result(timeout=30)
    # The fast ones all ran on the other worker and were done long before the slow one.
    assert {r["pid"] for r in fast_results} == set(service.worker_pids) - {slow_result["pid"]}
    assert max(r["finished"] for r in fast_results) < slow_result["finished"] - 1.0


def test_an_idle_worker_takes_back_a_batch_waiting_behind_a_slow_one(make_service):
    # Three workers busy, so the last request is sent ahead behind one of them. Whichever
    # worker is then stuck on the 3 s request, the first one idle takes the waiting one back.
    service = make_service(Recorder, parallel_workers=3)
    started = time.time()  # the processor's clock
    promises = service.queue_requests(["a:0.3", "b:0.3", "c:0.3", "d:0.3"])
    slow = service.queue_request("slow:3")
    last = service.queue_request("last:0.3")
    [p.get_result(timeout=30) for p in promises]
    assert last.get_result(timeout=30)["finished"] - started < 2.0
    assert slow.get_result(timeout=30)["finished"] - started > 3.0
