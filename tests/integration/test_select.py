"""Behaviour 3: select() yields each promise once, in the order results arrive."""

from __future__ import annotations

import random

import pytest

from raypw import PromiseSet, ResultTimeoutError
from tests.integration.conftest import wait_until
from tests.integration.processors import Gates, Recorder, gate_log


def test_select_yields_in_completion_order(make_service, tmp_path):
    # Each request runs until its gate opens; the gates open in the order b, c, a, each once
    # select() has yielded the one before. A select() that waited in list order would hang.
    service = make_service(Gates, parallel_workers=3, processor_class_init_args=(str(tmp_path),))
    promises = service.queue_requests(["a", "b", "c"])
    arrived = PromiseSet(promises).select(timeout=60)
    order = []
    for name in ["b", "c", "a"]:
        (tmp_path / name).touch()
        order.append(next(arrived).request)
    assert order == ["b", "c", "a"]
    assert list(arrived) == []


def test_select_order_matches_completion_order_over_many(make_service, tmp_path):
    # Twenty requests on two workers, each running until its gate opens. Again and again one
    # of the two running requests, picked at random, is let go, and select() must yield
    # exactly that one next: the yielded order is the order of completion, not of the list.
    service = make_service(Gates, parallel_workers=2, processor_class_init_args=(str(tmp_path),))
    names = [f"r{i:02}" for i in range(20)]
    promises = service.queue_requests(names)
    arrived = PromiseSet(promises).select(timeout=120)
    pick = random.Random(3)
    released: list[str] = []
    for left in range(len(names), 0, -1):
        wait_until(lambda left=left: len(_running(tmp_path)) == min(2, left), "two running")
        name = pick.choice(sorted(_running(tmp_path)))
        (tmp_path / name).touch()
        released.append(name)
        assert next(arrived).request == name
    assert list(arrived) == []
    assert sorted(released) == names and released != names


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


def test_select_timeout_says_how_many_are_unfinished(make_service, tmp_path):
    service = make_service(Gates, parallel_workers=2, processor_class_init_args=(str(tmp_path),))
    promises = service.queue_requests(["free-quick", "slow1", "slow2"])  # slow ones: gated
    promises[0].get_result(timeout=60)
    seen = []
    with pytest.raises(TimeoutError, match=r"2 \(of 3\) promises unfinished") as caught:
        for promise in PromiseSet(promises).select(timeout=0.5):
            seen.append(promise)
    assert isinstance(caught.value, ResultTimeoutError)
    assert seen == [promises[0]]
    # They keep running: a later wait gets them.
    (tmp_path / "slow1").touch()
    assert promises[1].get_result(timeout=60)[0] == "slow1"
    (tmp_path / "slow2").touch()


def _running(gates) -> set[str]:
    """Requests a Gates processor has started and not yet ended."""
    running: set[str] = set()
    for line in gate_log(gates):
        event, name = line.split(" ", 1)
        if event == "start":
            running.add(name)
        else:
            running.discard(name)
    return running
