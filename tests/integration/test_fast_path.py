"""The idle-pool fast path: a lone request goes straight to a worker, and ends like any other.

A service's only client sends a request itself to a worker the coordinator leased to it when
nothing else of its own is pending and the request has no deadline: one Ray call there and
its reply back, instead of a hop through the coordinator each way. Whatever happens to it
(an error, an unpicklable result, an abort, its worker's death) ends it as the usual way
would; what the fast path cannot do for it, the usual way does.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from raypw import (
    Processor,
    PromiseAbortedError,
    RemoteError,
    TransferError,
    WorkerDiedError,
)
from tests.integration.conftest import wait_until
from tests.integration.processors import (
    Awkward,
    Echo,
    Gates,
    Stamper,
    gate_log,
    stamps,
)


class Vectorised(Processor):
    """Overrides process_batch only: the fast path calls it with one request."""

    def process_batch(self, requests):
        return [f"{r} in a batch of {len(requests)}" for r in requests]


def test_a_lone_request_on_an_idle_pool_goes_straight_to_a_worker(make_service):
    service = make_service(Echo, parallel_workers=2)
    done: list[str] = []
    finished = threading.Event()

    def callback(promise):
        done.append(promise.get_result())
        finished.set()

    for i in range(5):
        assert service.queue_request(f"r{i}", completed_callback=callback).get_result() == (
            f"r{i} processed."
        )
    assert finished.wait(60)
    wait_until(lambda: len(done) == 5, "every callback ran")
    stats = service.stats()
    assert stats.fast_path == 5
    assert stats.processed == 5 and stats.done == 5 and stats.pending == 0


def test_requests_queued_while_one_is_pending_take_the_usual_way(make_service, tmp_path):
    service = make_service(Gates, processor_class_init_args=(str(tmp_path),), parallel_workers=2)
    first = service.queue_request("a")
    wait_until(lambda: "start a" in gate_log(tmp_path), "the lone request started")
    others = [service.queue_request(f"free{i}") for i in range(20)]
    assert [p.get_result(timeout=60)[0] for p in others] == [f"free{i}" for i in range(20)]
    assert first.done() is False
    (tmp_path / "a").touch()
    assert first.get_result(timeout=60)[0] == "a"
    assert service.stats().fast_path == 1


def test_an_equal_request_joins_the_pending_fast_path_promise(make_service, tmp_path):
    service = make_service(Gates, processor_class_init_args=(str(tmp_path),), parallel_workers=2)
    first = service.queue_request("same")
    second = service.queue_request("same")
    assert second is first
    (tmp_path / "same").touch()
    assert first.get_result(timeout=60)[0] == "same"
    assert gate_log(tmp_path).count("start same") == 1
    assert service.stats().deduplicated == 1


def test_fast_path_errors_are_the_usual_ones(make_service):
    service = make_service(Awkward, parallel_workers=1)
    with pytest.raises(RemoteError) as remote:  # a class that cannot be rebuilt here
        service.queue_request("two-args").get_result(timeout=60)
    assert remote.value.error_type.endswith("TwoArgumentError")
    with pytest.raises(TransferError) as caught:
        service.queue_request("lock").get_result(timeout=60)
    assert caught.value.what == "result"
    assert service.queue_request("fine").get_result(timeout=60) == "fine ok"
    stats = service.stats()
    assert stats.fast_path == 3 and stats.failed == 2 and stats.processed == 3


def test_a_vectorised_processor_gets_its_lone_request_as_a_batch_of_one(make_service):
    service = make_service(Vectorised, parallel_workers=1)
    assert service.queue_request("x").get_result(timeout=60) == "x in a batch of 1"
    assert service.stats().fast_path == 1


@pytest.mark.parametrize("max_retries", [1, 0])
def test_a_fast_path_request_whose_worker_dies_is_retried_with_the_death_counted(
    make_service, tmp_path, max_retries
):
    """With no retries left after that death, it fails at once, never run again."""
    log = str(tmp_path / "stamps")
    service = make_service(
        Stamper, processor_class_init_args=(log,), parallel_workers=1, max_retries=max_retries
    )
    with pytest.raises(WorkerDiedError) as caught:
        service.queue_request("poison").get_result(timeout=120)
    assert caught.value.attempts == max_retries + 1
    assert [row[0] for row in stamps(log)].count("poison") == max_retries + 1
    assert service.queue_request("after").get_result(timeout=60) == "after processed."


def test_aborting_a_fast_path_request_ends_its_promise(make_service, tmp_path):
    service = make_service(Gates, processor_class_init_args=(str(tmp_path),), parallel_workers=1)
    promise = service.queue_request("held")
    wait_until(lambda: "start held" in gate_log(tmp_path), "the request started")
    assert promise.abort() is True
    with pytest.raises(PromiseAbortedError):
        promise.get_result(timeout=10)
    (tmp_path / "held").touch()
    assert service.queue_request("free-next").get_result(timeout=60)[0] == "free-next"
    assert service.stats().aborted == 1


def test_stop_waits_for_a_running_fast_path_request(make_service, tmp_path):
    service = make_service(Gates, processor_class_init_args=(str(tmp_path),), parallel_workers=1)
    promise = service.queue_request("last")
    wait_until(lambda: "start last" in gate_log(tmp_path), "the request started")
    stopper = threading.Thread(target=service.stop)
    stopper.start()
    (tmp_path / "last").touch()
    stopper.join(60)
    assert not stopper.is_alive()
    assert promise.get_result(timeout=1)[0] == "last"


@pytest.mark.parametrize(
    ("options", "queue_options"),
    [
        ({}, {"timeout": 30.0}),
        ({"request_timeout": 30.0}, {}),
        ({"cache": True}, {}),
        ({"max_requests_per_worker": 100}, {}),
        ({"name": "raypw-test-fast-path-named"}, {}),
    ],
    ids=["deadline", "service-deadline", "cache", "recycling", "named"],
)
def test_requests_the_coordinator_must_see_never_take_the_fast_path(
    make_service, options, queue_options
):
    service = make_service(Echo, parallel_workers=1, **options)
    assert service.queue_request("x", **queue_options).get_result(timeout=60) == "x processed."
    assert service.stats().fast_path == 0


def test_a_blocked_fast_path_request_leaves_the_other_worker_to_the_rest(make_service, tmp_path):
    """While the lone request holds its worker, later requests go through the coordinator
    and are not stuck behind it."""
    service = make_service(Gates, processor_class_init_args=(str(tmp_path),), parallel_workers=2)
    held = service.queue_request("slow")
    wait_until(lambda: "start slow" in gate_log(tmp_path), "the lone request started")
    rest = service.queue_requests([f"free{i}" for i in range(200)])
    assert sorted(p.get_result(timeout=60)[0] for p in rest) == sorted(
        f"free{i}" for i in range(200)
    )
    Path(tmp_path / "slow").touch()
    assert held.get_result(timeout=60)[0] == "slow"


def test_an_equal_request_of_a_higher_priority_joins_a_running_fast_path_request_once(
    make_service, tmp_path
):
    service = make_service(Gates, processor_class_init_args=(str(tmp_path),), parallel_workers=2)
    first = service.queue_request("same")
    wait_until(lambda: "start same" in gate_log(tmp_path), "the lone request started")
    assert service.queue_request("same", priority=5) is first
    # Had the raised request gone to the coordinator too, it would run before these.
    others = [service.queue_request(f"free{i}") for i in range(4)]
    assert [p.get_result(timeout=60)[0] for p in others] == [f"free{i}" for i in range(4)]
    (tmp_path / "same").touch()
    assert first.get_result(timeout=60)[0] == "same"
    assert gate_log(tmp_path).count("start same") == 1
    assert service.stats().processed == 5


def test_a_lease_to_a_slot_refilled_after_a_shrink_charges_no_death(make_service, tmp_path):
    service = make_service(
        Gates, processor_class_init_args=(str(tmp_path),), parallel_workers=2, max_retries=0
    )
    lone = service.queue_request("lone")
    wait_until(lambda: "start lone" in gate_log(tmp_path), "the lone request started")
    burst = service.queue_requests([f"b{i}" for i in range(4)])  # the other worker's
    wait_until(lambda: "start b0" in gate_log(tmp_path), "the burst started")
    service.resize(1)  # retires the leased worker once its request ends: the other is busier
    for name in ["lone", *(f"b{i}" for i in range(4))]:
        (tmp_path / name).touch()
    leased_pid = lone.get_result(timeout=60)[1]
    assert [p.get_result(timeout=60)[0] for p in burst] == [f"b{i}" for i in range(4)]
    wait_until(lambda: len(service.worker_pids) == 1, "the pool shrank")
    assert leased_pid not in service.worker_pids  # the leased worker is the one that left
    service.resize(2)  # a new worker in the leased slot
    wait_until(lambda: all(service.worker_pids) and len(service.worker_pids) == 2, "it grew")
    (tmp_path / "after").touch()
    assert service.queue_request("after").get_result(timeout=60)[0] == "after"
    assert service.stats().worker_restarts == 0


def test_aborts_right_after_the_send_leave_the_next_lone_request_prompt(make_service):
    service = make_service(Echo, parallel_workers=1, max_retries=0)
    for i in range(30):
        service.queue_request(f"a{i}").abort()
        wait_until(lambda: service.stats().running == 0, "the aborted request ended")
        # Slow only if a cancelled call left a gap in Ray's queue for the worker (30 s).
        assert service.queue_request(f"b{i}").get_result(timeout=20) == f"b{i} processed."
    assert service.stats().worker_restarts == 0


def test_a_fast_path_request_under_a_dying_coordinator_is_run_again_uncharged(
    make_service, tmp_path
):
    import ray

    service = make_service(
        Gates, processor_class_init_args=(str(tmp_path),), parallel_workers=1, max_retries=0
    )
    (worker,) = service.worker_pids
    held = service.queue_request("held")
    wait_until(lambda: "start held" in gate_log(tmp_path), "the request started")
    ray.kill(service._coordinator)  # its workers die with it
    wait_until(lambda: not _alive(worker), "the worker died with its coordinator")
    (tmp_path / "held").touch()
    assert held.get_result(timeout=120)[0] == "held"  # as the usual way: handed back, rerun
    assert service.queue_request("free-after").get_result(timeout=60)[0] == "free-after"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
