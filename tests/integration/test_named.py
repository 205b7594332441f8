"""A named service shared by several clients (here, in one process; across processes and
nodes in tests/cluster/test_multinode.py)."""

from __future__ import annotations

import time

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
from tests.integration.processors import Echo, Recorder, Stamper, stamps


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
    gate.touch()
    PromiseSet(mine + theirs).wait_for_all(timeout=30)
    assert [p.get_result() for p in theirs] == ["b processed.", "c processed.", "d processed."]
    assert sorted(r for r, _, _ in stamps(log)) == ["a", "b", "c", "d"]
    other.stop()  # only detaches
    assert owner.queue_request("e").get_result(timeout=30) == "e processed."


def test_shutting_down_a_shared_service_aborts_other_clients_pending(make_service, tmp_path):
    owner = make_service(
        Stamper, parallel_workers=1, processor_class_init_args=(str(tmp_path / "l"),), name="going"
    )
    other = ProcessorService.connect("going")
    pending = other.queue_requests(f"sleep0.5#{i}" for i in range(10))
    time.sleep(0.3)
    owner.stop(wait=False)
    PromiseSet(pending).wait_for_all(timeout=30)
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


def test_a_request_joined_by_another_client_follows_it_when_taken_back(make_service):
    # "last" waits behind the 3 s request on one worker until an idle one takes it back;
    # the other client's equal request, joined meanwhile, follows it there: processed once.
    owner = make_service(Recorder, parallel_workers=3, name="follow")
    other = ProcessorService.connect("follow", processor_class=Recorder)
    started = time.time()  # the processor's clock
    owner.queue_requests(["a:0.3", "b:0.3", "c:0.3", "d:0.3", "slow:3"])
    mine = owner.queue_request("last:0.3")
    time.sleep(0.1)
    theirs = other.queue_request("last:0.3")
    assert theirs.get_result(timeout=30) == mine.get_result(timeout=30)  # the same processing
    assert mine.get_result()["finished"] - started < 2.0
    other.stop()
