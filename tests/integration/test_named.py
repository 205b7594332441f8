"""A named service shared by several clients (here, in one process; across processes and
nodes in tests/cluster/test_multinode.py)."""

from __future__ import annotations

import pydantic
import pytest

from raypw import (
    ProcessorService,
    PromiseAbortedError,
    PromiseSet,
    ServiceNotFoundError,
    ServiceNotRunningError,
    ServiceStartError,
)
from tests.integration.conftest import wait_until
from tests.integration.processors import Echo, Gates, Recorder, Stamper, gate_log, stamps


def test_connect_to_a_name_nobody_runs_is_a_clear_lookup_error():
    with pytest.raises(ServiceNotFoundError, match="no raypw service named 'nobody'") as caught:
        ProcessorService.connect("nobody")
    assert isinstance(caught.value, LookupError)


def test_connect_with_another_processor_class_is_refused(make_service):
    make_service(Echo, parallel_workers=1, name="echoes")
    with pytest.raises(TypeError, match="runs tests.integration.processors.Echo"):
        ProcessorService.connect("echoes", processor_class=Recorder)


def test_starting_a_name_that_runs_already_is_refused(make_service):
    make_service(Echo, parallel_workers=1, name="twice")
    with pytest.raises(ServiceStartError, match="already runs.*connect"):
        ProcessorService(Echo, parallel_workers=1, name="twice").start()
    attached = ProcessorService.connect("twice", processor_class=Echo)
    assert attached.queue_request("still one").get_result(timeout=30) == "still one processed."
    attached.stop()


def test_clients_of_a_named_service_share_work_and_dedup(make_service, tmp_path):
    log, gate = tmp_path / "log", tmp_path / "gate"
    owner = make_service(
        Stamper, parallel_workers=2, processor_class_init_args=(str(log), str(gate)), name="shared"
    )
    other = ProcessorService.connect("shared", processor_class=Stamper)
    assert other.config.parallel_workers == 2
    mine = owner.queue_requests(["a", "b", "c"])
    theirs = other.queue_requests(["b", "c", "d"])
    # Their "b" and "c" join mine at the coordinator, asynchronously: open the gate once
    # they have, or mine could finish first and theirs run again.
    wait_until(lambda: owner.stats().deduplicated == 2, "their b and c joined mine")
    gate.touch()
    PromiseSet(mine + theirs).wait_for_all(timeout=30)
    assert [p.get_result() for p in theirs] == ["b processed.", "c processed.", "d processed."]
    assert sorted(r for r, _, _ in stamps(log)) == ["a", "b", "c", "d"]
    other.stop()  # only detaches
    assert owner.queue_request("e").get_result(timeout=30) == "e processed."


def test_shutting_down_a_shared_service_aborts_other_clients_pending(make_service, tmp_path):
    owner = make_service(
        Gates, parallel_workers=1, processor_class_init_args=(str(tmp_path),), name="going"
    )
    other = ProcessorService.connect("going")
    pending = other.queue_requests(f"held{i}" for i in range(10))  # none can finish
    wait_until(lambda: gate_log(tmp_path), "the other client's work has reached the worker")
    owner.stop(wait=False)
    PromiseSet(pending).wait_for_all(timeout=60)
    assert all(p.is_aborted() for p in pending)
    with pytest.raises(PromiseAbortedError):
        pending[-1].get_result()
    with pytest.raises(ServiceNotRunningError, match="stopped"):
        other.queue_request("late")
    other.stop()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"detached": True}, "detached"), ({"name": "has space"}, "name"), ({"name": ""}, "name")],
)
def test_bad_name_settings_fail_at_construction(kwargs, field):
    with pytest.raises(pydantic.ValidationError, match=field):
        ProcessorService(Echo, parallel_workers=1, **kwargs)


def test_a_request_joined_by_another_client_follows_it_when_taken_back(make_service, tmp_path):
    # Both workers are held by a gated request, so "free-x" and "free-y" are each sent ahead
    # to wait behind one of them, and the other client joins both there. Then only "hold1"
    # is let go: its worker runs what waits behind it, and then can only get the other one
    # by taking it back from the worker still held by "hold2". The joined request follows
    # it: both clients get the one result, processed once, by hold1's worker.
    owner = make_service(
        Gates, parallel_workers=2, processor_class_init_args=(str(tmp_path),), name="follow"
    )
    other = ProcessorService.connect("follow", processor_class=Gates)
    holders = owner.queue_requests(["hold1", "hold2"])
    wait_until(lambda: sorted(gate_log(tmp_path)) == ["start hold1", "start hold2"], "both held")
    mine = owner.queue_requests(["free-x", "free-y"])
    theirs = other.queue_requests(["free-x", "free-y"])
    wait_until(lambda: owner.stats().deduplicated == 2, "the other client joined both")
    (tmp_path / "hold1").touch()
    _, hold1_pid = holders[0].get_result(timeout=60)
    for my, their in zip(mine, theirs, strict=True):
        assert their.get_result(timeout=60) == my.get_result(timeout=60) == (my.request, hold1_pid)
    assert "end hold2" not in gate_log(tmp_path)  # hold2 held its worker all along
    started = [line for line in gate_log(tmp_path) if line.startswith("start free-")]
    assert sorted(started) == ["start free-x", "start free-y"]  # each processed once
    (tmp_path / "hold2").touch()
    assert holders[1].get_result(timeout=60)[1] != hold1_pid
    other.stop()
