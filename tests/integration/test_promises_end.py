"""Every promise ends, with the right value (issue 10): each case broke that before.

Each test names the behaviour; none depends on timing: gates hold requests until the test
opens them, and waits are bounded only to fail instead of hanging.
"""

from __future__ import annotations

import time

import pytest

from raypw import PromiseSet, RemoteError, TransferError
from tests.integration.processors import (
    ArrayLike,
    Awkward,
    Echo,
    GatedLength,
    Gates,
    InterruptOnSecondHash,
    Unrebuildable,
    gate_log,
)


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_an_unpicklable_result_fails_its_promise_and_batch_mates_complete(make_service):
    service = make_service(Awkward, parallel_workers=1)
    promises = service.queue_requests(["a", "lock", "b"])
    PromiseSet(promises).wait_for_all(timeout=60)
    assert promises[0].get_result() == "a ok" and promises[2].get_result() == "b ok"
    with pytest.raises(TransferError, match="lock.*cannot pickle") as caught:
        promises[1].get_result()
    assert caught.value.request == "lock"


def test_an_exception_that_cannot_be_rebuilt_fails_with_its_class_and_text(make_service):
    service = make_service(Awkward, parallel_workers=1)
    promises = service.queue_requests(["a", "two-args", "b"])
    PromiseSet(promises).wait_for_all(timeout=60)
    with pytest.raises(RemoteError, match="TwoArgumentError: 7: cannot be rebuilt"):
        promises[1].get_result()
    assert [promises[0].get_result(), promises[2].get_result()] == ["a ok", "b ok"]


def test_an_exception_holding_an_unpicklable_attribute_fails_as_remote_error_on_both_paths(
    make_service,
):
    service = make_service(Awkward, parallel_workers=1)
    alone = service.queue_request("locked")  # a lone request on an idle pool: the fast path
    with pytest.raises(RemoteError, match="LockedError: connection lost") as caught:
        alone.get_result(timeout=60)
    assert caught.value.error_type == "tests.integration.processors.LockedError"
    promises = service.queue_requests(["a", "locked#2", "b"])
    PromiseSet(promises).wait_for_all(timeout=60)
    with pytest.raises(RemoteError, match="LockedError: connection lost"):
        promises[1].get_result()
    assert [promises[0].get_result(), promises[2].get_result()] == ["a ok", "b ok"]


def test_a_request_that_cannot_be_rebuilt_fails_alone_and_the_service_serves_on(make_service):
    service = make_service(Echo, parallel_workers=2)
    promises = service.queue_requests(["a", Unrebuildable("bad"), "b"])
    PromiseSet(promises).wait_for_all(timeout=60)
    with pytest.raises(TransferError, match="refuses to be rebuilt"):
        promises[1].get_result()
    assert [promises[0].get_result(), promises[2].get_result()] == ["a processed.", "b processed."]
    later = service.queue_requests(f"later{i}" for i in range(3000))
    PromiseSet(later).wait_for_all(timeout=60)
    assert later[-1].get_result() == "later2999 processed."
    service.stop()  # returns: nothing is stuck in flight


def test_a_request_that_raises_when_compared_is_refused_and_nothing_is_queued(make_service):
    service = make_service(Echo, parallel_workers=1)
    with pytest.raises(TypeError, match="key="):
        service.queue_requests(["first", ArrayLike([1, 2]), ArrayLike([3, 4])])
    assert service.stats().pending == 0
    assert service.queue_request("after").get_result(timeout=60) == "after processed."
    assert service.stats().processed == 1  # "first" was not processed


def test_ctrl_c_in_the_middle_of_queue_requests_queues_nothing(make_service):
    service = make_service(Echo, parallel_workers=1)
    with pytest.raises(KeyboardInterrupt):
        service.queue_requests(["one", "two", InterruptOnSecondHash(), "three"])
    assert service.stats().pending == 0
    assert service.queue_request("after").get_result(timeout=60) == "after processed."
    assert service.stats().processed == 1
    service.stop()  # the sender is not stranded


def test_a_hung_request_at_the_head_of_a_batch_holds_nothing_behind_it(make_service, tmp_path):
    service = make_service(Gates, parallel_workers=2, processor_class_init_args=(str(tmp_path),))
    warm = service.queue_requests(f"free-warm{i}" for i in range(5000))  # batches grow big
    PromiseSet(warm).wait_for_all(timeout=120)
    hung = service.queue_request("hang")
    behind = service.queue_requests(f"free{i}" for i in range(4000))
    PromiseSet(behind).wait_for_all(timeout=120)  # while "hang" still waits for its gate
    assert not hung.done()
    assert behind[-1].get_result()[0] == "free3999"
    (tmp_path / "hang").touch()
    assert hung.get_result(timeout=60)[0] == "hang"


def test_results_of_a_batch_arrive_before_the_batch_ends(make_service, tmp_path):
    service = make_service(Gates, parallel_workers=1, processor_class_init_args=(str(tmp_path),))
    warm = service.queue_requests(f"free-warm{i}" for i in range(2000))
    PromiseSet(warm).wait_for_all(timeout=120)
    promises = service.queue_requests(["free-a", "free-b", "free-c", "slow", "free-d"])
    PromiseSet(promises[:3]).wait_for_all(timeout=60)  # while "slow" holds the batch
    assert not promises[3].done()
    (tmp_path / "slow").touch()
    PromiseSet(promises).wait_for_all(timeout=60)


def test_slow_requests_after_a_warm_up_run_two_by_two(make_service, tmp_path):
    service = make_service(Gates, parallel_workers=2, processor_class_init_args=(str(tmp_path),))
    assert service.queue_request("free-warm-up").get_result(timeout=60)[0] == "free-warm-up"
    first, second, third, fourth = service.queue_requests(["s1", "s2", "s3", "s4"])
    wait_until(lambda: {"start s1", "start s2"} <= set(gate_log(tmp_path)))
    (tmp_path / "s1").touch()
    (tmp_path / "s2").touch()
    PromiseSet([first, second]).wait_for_all(timeout=60)  # while s3 and s4 are gated
    # s3 and s4 then run side by side, one per worker.
    wait_until(lambda: {"start s3", "start s4"} <= set(gate_log(tmp_path)))
    assert not third.done() and not fourth.done()
    (tmp_path / "s3").touch()
    (tmp_path / "s4").touch()
    PromiseSet([third, fourth]).wait_for_all(timeout=60)
    assert first.get_result()[1] != second.get_result()[1]
    assert third.get_result()[1] != fourth.get_result()[1]


def test_large_requests_flow_at_the_pace_of_the_workers_not_all_at_once(make_service, tmp_path):
    import ray

    gate = tmp_path / "gate"
    service = make_service(GatedLength, parallel_workers=1, processor_class_init_args=(str(gate),))
    size = 8 * 1024 * 1024
    promises = service.queue_requests(bytes([i]) * size for i in range(20))
    coordinator = service._coordinator

    def held() -> int:
        shared = ray.get(coordinator.stats.remote())
        return shared["queued"] + shared["running"]

    wait_until(lambda: held() > 0)
    assert held() <= 8  # 64 MiB in flight at most, not all 160 MiB
    gate.touch()
    PromiseSet(promises).wait_for_all(timeout=120)
    assert [p.get_result() for p in promises] == [size] * 20


def test_results_of_a_running_batch_are_not_held_by_the_batch_sent_behind_it(
    make_service, tmp_path
):
    service = make_service(
        Gates,
        parallel_workers=1,
        processor_class_init_args=(str(tmp_path),),
        batching={"max_batch_size": 4},
    )
    warm = service.queue_requests(f"free-warm{i}" for i in range(200))
    PromiseSet(warm).wait_for_all(timeout=120)
    running = service.queue_requests(["free-a", "free-b", "free-c", "slow"])
    behind = service.queue_requests(f"free-behind{i}" for i in range(8))
    PromiseSet(running[:3]).wait_for_all(timeout=60)  # while "slow" holds the worker
    assert not running[3].done() and not any(p.done() for p in behind)
    (tmp_path / "slow").touch()
    PromiseSet(running + behind).wait_for_all(timeout=60)
