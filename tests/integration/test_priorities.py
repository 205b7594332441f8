"""Priorities (issue 13, point 2): higher first among requests not started, wherever they wait."""

from __future__ import annotations

import pytest

from tests.integration.conftest import wait_until
from tests.integration.processors import Gates, gate_log


def started(gates) -> list[str]:
    return [line.split()[1] for line in gate_log(gates) if line.startswith("start")]


def test_higher_priority_requests_run_first_even_over_requests_sent_ahead_to_the_worker(
    make_service, tmp_path
):
    service = make_service(Gates, parallel_workers=1, processor_class_init_args=(str(tmp_path),))
    # With a deadline, "hold" goes through the coordinator (not the idle-pool fast path),
    # which then sends the next batch ahead to its busy worker.
    hold = service.queue_request("hold", timeout=600.0)
    wait_until(lambda: started(tmp_path) == ["hold"], "hold holds the only worker")
    lows = service.queue_requests([f"free-low{i}" for i in range(10)])
    wait_until(lambda: service.stats().running > 1, "low requests were sent ahead to the worker")
    highs = service.queue_requests([f"free-high{i}" for i in range(3)], priority=5)
    middle = service.queue_request("free-middle", priority=1)
    wait_until(
        lambda: (s := service.stats()).running == 1 and s.queued == 14,
        "the worker gave back what it held unstarted",
    )
    (tmp_path / "hold").touch()
    for promise in [hold, *lows, *highs, middle]:
        assert promise.get_result(timeout=120)[0] == promise.request
    assert started(tmp_path) == (
        ["hold"]
        + [f"free-high{i}" for i in range(3)]
        + ["free-middle"]
        + [f"free-low{i}" for i in range(10)]
    )


def test_higher_priority_requests_run_first_behind_a_fast_path_request(make_service, tmp_path):
    service = make_service(Gates, parallel_workers=1, processor_class_init_args=(str(tmp_path),))
    hold = service.queue_request("hold")  # a lone request: straight to the worker
    wait_until(lambda: started(tmp_path) == ["hold"], "hold holds the only worker")
    lows = service.queue_requests([f"free-low{i}" for i in range(10)])
    highs = service.queue_requests([f"free-high{i}" for i in range(3)], priority=5)
    middle = service.queue_request("free-middle", priority=1)
    wait_until(lambda: service.stats().queued == 14, "all of them wait behind hold")
    (tmp_path / "hold").touch()
    for promise in [hold, *lows, *highs, middle]:
        assert promise.get_result(timeout=120)[0] == promise.request
    assert service.stats().fast_path == 1
    assert started(tmp_path) == (
        ["hold"]
        + [f"free-high{i}" for i in range(3)]
        + ["free-middle"]
        + [f"free-low{i}" for i in range(10)]
    )


def test_a_bad_priority_is_refused_naming_it_and_queues_nothing(make_service, tmp_path):
    service = make_service(Gates, parallel_workers=1, processor_class_init_args=(str(tmp_path),))
    for bad in (1.5, "high", True, None):
        with pytest.raises(TypeError, match="priority"):
            service.queue_request("free-x", priority=bad)
        with pytest.raises(TypeError, match="priority"):
            service.queue_requests(["free-x"], priority=bad)
    assert service.stats().pending == 0
    assert service.queue_request("free-y", priority=-3).get_result(timeout=120)[0] == "free-y"
