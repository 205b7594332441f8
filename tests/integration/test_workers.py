"""Behaviour 1: N worker actors, one processor each, competing for the queue."""

from __future__ import annotations

from raypw import PromiseSet
from tests.integration.conftest import processed, wait_until
from tests.integration.processors import Gates, Recorder, gate_log


def test_each_worker_builds_one_processor_with_init_args(make_service, tmp_path):
    log, gate = tmp_path / "log", tmp_path / "gate"
    service = make_service(
        Recorder,
        parallel_workers=2,
        processor_class_init_args={"tag": "model-v1", "log_path": str(log), "gate": str(gate)},
    )
    promises = service.queue_requests(f"r{i}" for i in range(8))
    # Two requests started while the gate holds every request: one on each worker.
    wait_until(lambda: len(processed(log)) == 2, "both workers run a request")
    gate.touch()
    results = [p.get_result(timeout=60) for p in promises]
    assert {r["tag"] for r in results} == {"model-v1"}
    assert {r["pid"] for r in results} == set(service.worker_pids)
    assert len(set(service.worker_pids)) == 2
    # Each worker process built its processor exactly once, however many requests it served.
    assert {r["built"] for r in results} == {1}


def test_positional_init_args(make_service):
    service = make_service(Recorder, parallel_workers=1, processor_class_init_args=(None, "pos"))
    assert service.queue_request("x").get_result(timeout=30)["tag"] == "pos"


def test_example_resolves_two_by_two(make_service, tmp_path):
    # The README's example, with gates in place of sleep(5): two requests run at once, one on
    # each worker; the next two start only as those two end, and also run side by side.
    service = make_service(Gates, parallel_workers=2, processor_class_init_args=(str(tmp_path),))
    promises = service.queue_requests(f"hola{i}" for i in range(4))
    wait_until(lambda: len(_started(tmp_path)) == 2, "two requests run")
    first = _started(tmp_path)
    for name in first:
        (tmp_path / name).touch()
    arrived = PromiseSet(promises).select(timeout=120)
    first_two = [next(arrived), next(arrived)]
    assert sorted(p.request for p in first_two) == sorted(first)
    wait_until(lambda: len(_started(tmp_path)) == 4, "the other two run")
    second = _started(tmp_path)[2:]
    for name in second:
        (tmp_path / name).touch()
    last_two = list(arrived)
    assert sorted(p.request for p in last_two) == sorted(second)
    assert sorted(first + second) == [f"hola{i}" for i in range(4)]
    # Each pair ran on both workers at once; never more than two ran at a time.
    pids = set(service.worker_pids)
    assert {p.get_result()[1] for p in first_two} == pids == {p.get_result()[1] for p in last_two}
    assert _most_running_at_once(tmp_path) == 2


def test_idle_worker_never_waits_while_another_holds_queued_work(make_service, tmp_path):
    service = make_service(Gates, parallel_workers=2, processor_class_init_args=(str(tmp_path),))
    slow = service.queue_request("slow")  # holds its worker until the test opens its gate
    fast = service.queue_requests(f"free-fast{i}" for i in range(10))
    # The fast ones all run on the other worker, done while the slow one still runs.
    fast_results = [p.get_result(timeout=60) for p in fast]
    assert not slow.done() and "end slow" not in gate_log(tmp_path)
    (tmp_path / "slow").touch()
    _, slow_pid = slow.get_result(timeout=60)
    assert {pid for _, pid in fast_results} == set(service.worker_pids) - {slow_pid}


def test_an_idle_worker_takes_back_a_batch_waiting_behind_a_slow_one(make_service, tmp_path):
    # Both workers busy with a gated request, so "free-x" and "free-y" are each sent ahead
    # behind one of them. Only hold1 is let go: its worker runs what waits behind it, then
    # can only get the other one by taking it back from the worker hold2 still holds.
    service = make_service(Gates, parallel_workers=2, processor_class_init_args=(str(tmp_path),))
    holders = service.queue_requests(["hold1", "hold2"])
    wait_until(lambda: sorted(_started(tmp_path)) == ["hold1", "hold2"], "both workers held")
    waiting = service.queue_requests(["free-x", "free-y"])
    (tmp_path / "hold1").touch()
    _, hold1_pid = holders[0].get_result(timeout=60)
    assert [p.get_result(timeout=60) for p in waiting] == [
        ("free-x", hold1_pid),
        ("free-y", hold1_pid),
    ]
    assert "end hold2" not in gate_log(tmp_path)
    (tmp_path / "hold2").touch()
    assert holders[1].get_result(timeout=60)[1] != hold1_pid


def _started(gates) -> list[str]:
    """The requests a Gates processor has started, in the order they started."""
    return [line[len("start ") :] for line in gate_log(gates) if line.startswith("start ")]


def _most_running_at_once(gates) -> int:
    """The most requests that were ever between their start and end lines in the log."""
    running = most = 0
    for line in gate_log(gates):
        running += 1 if line.startswith("start ") else -1
        most = max(most, running)
    return most
