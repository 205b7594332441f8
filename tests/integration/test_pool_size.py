"""A pool that changes size and workers that are replaced (issue 13, points 4 and 6)."""

from __future__ import annotations

from collections import Counter

import pytest

from raypw import ProcessorService, ServiceNotRunningError, ServiceStartError
from tests.integration.conftest import processed, wait_until
from tests.integration.processors import BreaksWhenFlagged, Gates, Recorder, gate_log


def started(gates) -> list[str]:
    return [line.split()[1] for line in gate_log(gates) if line.startswith("start")]


def test_resize_grows_at_once_and_the_new_workers_take_queued_work(make_service, tmp_path):
    service = make_service(Gates, parallel_workers=1, processor_class_init_args=(str(tmp_path),))
    (old,) = service.worker_pids
    hold = service.queue_request("hold")
    wait_until(lambda: started(tmp_path) == ["hold"], "hold holds the only worker")
    frees = service.queue_requests([f"free{i}" for i in range(20)])

    assert service.resize(3) == 3
    stats = service.stats()
    assert (stats.workers, stats.workers_alive) == (3, 3)
    assert len(service.worker_pids) == 3 and 0 not in service.worker_pids

    # The old worker is still held: the new ones did all of this.
    assert [p.get_result(timeout=120)[0] for p in frees] == [f"free{i}" for i in range(20)]
    assert not hold.done()
    assert {p.get_result()[1] for p in frees} <= set(service.worker_pids) - {old}
    (tmp_path / "hold").touch()
    assert hold.get_result(timeout=120) == ("hold", old)


def test_resize_shrinks_idle_workers_first_and_loses_no_started_request(make_service, tmp_path):
    service = make_service(Gates, parallel_workers=3, processor_class_init_args=(str(tmp_path),))
    before = set(service.worker_pids)
    holds = [service.queue_request("hold1"), service.queue_request("hold2")]
    wait_until(lambda: sorted(started(tmp_path)) == ["hold1", "hold2"], "two workers are held")

    assert service.resize(1) == 1
    assert service.stats().workers == 1
    # The idle worker goes at once; the two busy ones finish what they started first.
    wait_until(lambda: len(service.worker_pids) == 2, "the idle worker retired")
    assert not any(promise.done() for promise in holds)
    frees = service.queue_requests([f"free{i}" for i in range(10)])

    (tmp_path / "hold1").touch()
    (tmp_path / "hold2").touch()
    busy = {promise.get_result(timeout=120)[1] for promise in holds}
    assert [promise.get_result(timeout=120)[0] for promise in holds] == ["hold1", "hold2"]
    assert [promise.get_result(timeout=120)[0] for promise in frees] == [
        f"free{i}" for i in range(10)
    ]
    wait_until(lambda: len(service.worker_pids) == 1, "the pool is down to one worker")
    (survivor,) = service.worker_pids
    assert survivor in busy and survivor in before
    assert {p.get_result()[1] for p in frees} == {survivor}
    stats = service.stats()
    assert (stats.workers, stats.workers_alive, stats.processed) == (1, 1, 12)


def test_resize_back_up_reuses_the_retired_slots(make_service, log_file):
    service = make_service(Recorder, parallel_workers=2, processor_class_init_args=(str(log_file),))
    assert service.resize(1) == 1
    wait_until(lambda: len(service.worker_pids) == 1, "one worker retired")
    assert service.resize(4) == 4
    assert len(service.worker_pids) == 4
    promises = service.queue_requests([f"r{i}:0.01" for i in range(200)])
    assert [p.get_result(timeout=120)["request"] for p in promises] == [
        f"r{i}:0.01" for i in range(200)
    ]
    assert sorted(processed(log_file)) == sorted(f"r{i}:0.01" for i in range(200))
    assert service.stats().workers == 4


def test_resize_refuses_a_bad_size_naming_the_argument(make_service, log_file):
    service = make_service(Recorder, parallel_workers=2, processor_class_init_args=(str(log_file),))
    for bad, error in ((0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="parallel_workers"):
            service.resize(bad)
    assert service.stats().workers == 2
    assert service.queue_request("a").get_result(timeout=120)["request"] == "a"


def test_resize_outside_start_and_stop_raises_service_not_running(make_service, log_file):
    args = (str(log_file),)
    with pytest.raises(ServiceNotRunningError, match="start"):
        ProcessorService(Recorder, parallel_workers=1, processor_class_init_args=args).resize(2)
    service = make_service(Recorder, parallel_workers=1, processor_class_init_args=args)
    service.stop()
    with pytest.raises(ServiceNotRunningError, match="not running"):
        service.resize(2)


def test_resize_with_a_constructor_that_fails_keeps_the_pool_working(make_service, tmp_path):
    flag = tmp_path / "break"
    service = make_service(
        BreaksWhenFlagged, parallel_workers=1, processor_class_init_args=(str(flag),)
    )
    flag.touch()  # from now on a new processor's constructor raises
    with pytest.raises(ServiceStartError, match="model file not found"):
        service.resize(2)
    assert service.stats().workers == 1
    assert service.queue_request("a").get_result(timeout=120) == "a"


def test_recycling_replaces_a_worker_after_max_requests_without_losing_or_repeating_one(
    make_service, log_file
):
    service = make_service(
        Recorder,
        parallel_workers=1,
        processor_class_init_args=(str(log_file),),
        max_requests_per_worker=5,
    )
    requests = [f"r{i}" for i in range(23)]
    results = [p.get_result(timeout=120) for p in service.queue_requests(requests)]
    assert [r["request"] for r in results] == requests
    assert sorted(processed(log_file)) == sorted(requests)  # each processed once
    per_worker = Counter(r["pid"] for r in results)
    assert sorted(per_worker.values()) == [3, 5, 5, 5, 5]
    # Every worker process built one processor: a fresh process, not a rebuilt instance.
    assert {r["built"] for r in results} == {1}
    wait_until(lambda: service.stats().worker_recycles == 4, "four workers were replaced")
    assert service.worker_pids == [pid for pid, count in per_worker.items() if count == 3]


def test_recycling_on_a_wide_pool_never_lets_a_worker_pass_the_limit(make_service, log_file):
    service = make_service(
        Recorder,
        parallel_workers=2,
        processor_class_init_args=(str(log_file),),
        max_requests_per_worker=7,
    )
    requests = [f"r{i}:0.002" for i in range(40)]
    results = [p.get_result(timeout=120) for p in service.queue_requests(requests)]
    assert [r["request"] for r in results] == requests
    assert sorted(processed(log_file)) == sorted(requests)
    assert max(Counter(r["pid"] for r in results).values()) <= 7


def test_max_requests_per_worker_is_validated_naming_it():
    from raypw import ProcessorService

    for bad in (0, 1.5, True, "5"):
        with pytest.raises(ValueError, match="max_requests_per_worker"):
            ProcessorService(Recorder, parallel_workers=1, max_requests_per_worker=bad)
