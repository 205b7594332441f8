"""Behaviour 3: select() yields each promise once, in the order results arrive."""

from __future__ import annotations

import pytest

from raypw import PromiseSet, ResultTimeoutError
from tests.integration.processors import Recorder


def test_select_yields_in_completion_order(make_service):
    service = make_service(Recorder, parallel_workers=3)
    promises = service.queue_requests(["a:1.6", "b:0.2", "c:0.9"])
    order = [p.request for p in PromiseSet(promises).select(timeout=30)]
    assert order == ["b:0.2", "c:0.9", "a:1.6"]


def test_select_order_matches_finish_times_over_many(make_service):
    service = make_service(Recorder, parallel_workers=2)
    # Requests of 50 ms or more go one per batch, so each result arrives on its own.
    promises = service.queue_requests(f"r{i}:{0.05 + (i * 7) % 5 / 20}" for i in range(20))
    yielded = list(PromiseSet(promises).select(timeout=60))
    assert sorted(map(id, yielded)) == sorted(map(id, promises))
    finished = [p.get_result()["finished"] for p in yielded]
    # Two workers may finish within a millisecond of each other: allow that much slack.
    assert all(a <= b + 0.05 for a, b in zip(finished[:-1], finished[1:], strict=True)), finished


def test_select_yields_a_shared_promise_once(make_service):
    service = make_service(Recorder, parallel_workers=1)
    a = service.queue_request("x")
    b = service.queue_request("x")
    c = service.queue_request("y")
    assert list(PromiseSet([a, b, c, a]).select(timeout=30)) in ([a, c], [c, a])


def test_select_yields_finished_promises_first_in_their_order(make_service):
    service = make_service(Recorder, parallel_workers=1)
    first, second = service.queue_requests(["p1", "p2"])
    second.get_result(timeout=30)
    first.get_result(timeout=30)
    late = service.queue_request("p3:0.3")
    assert list(PromiseSet([late, second, first]).select(timeout=30)) == [first, second, late]


def test_select_timeout_says_how_many_are_unfinished(make_service):
    service = make_service(Recorder, parallel_workers=2)
    promises = service.queue_requests(["quick", "slow1:3", "slow2:3"])
    seen = []
    with pytest.raises(TimeoutError, match=r"2 \(of 3\) promises unfinished") as caught:
        for promise in PromiseSet(promises).select(timeout=1.0):
            seen.append(promise)
    assert isinstance(caught.value, ResultTimeoutError)
    assert seen == [promises[0]]
    # They keep running: a later wait gets them.
    assert promises[1].get_result(timeout=30)["request"] == "slow1:3"
