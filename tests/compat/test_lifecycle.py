"""parallel-workers' service lifecycle and status calls, each on a real Ray service."""

from __future__ import annotations

import threading

import pytest

from raypw.compat import SERVICE_RUNNING, SERVICE_STOPPED, ProcessorService, PromiseSet
from tests.compat.processors import Gated, started
from tests.integration.conftest import wait_until


@pytest.fixture
def gated(tmp_path):
    made: list[ProcessorService] = []

    def make(workers: int = 1) -> ProcessorService:
        service = ProcessorService(
            Gated, parallel_workers=workers, processor_class_init_args=[str(tmp_path)]
        )
        made.append(service)
        return service

    yield make
    for service in made:
        service.terminate()


def test_requests_queued_before_start_run_once_started(gated, tmp_path):
    service = gated()
    assert service.get_status() == SERVICE_STOPPED
    early = service.queue_requests(["free-1", "free-2"])
    twice = service.queue_request("free-1")
    assert twice is early[0]
    called = []
    dropped = service.queue_request("free-dropped", called.append)
    dropped.abort()  # before start(): it never runs, and its callback hears of it
    assert dropped.get_result() is None and dropped.is_request_aborted()
    assert called == [dropped]
    assert service.get_queue_remaining() == 2
    assert not early[0].peak_result()
    with pytest.raises(TypeError, match="unhashable"):
        service.queue_request(["a", "list"])
    service.start()
    assert [p.get_result() for p in early] == ["free-1 processed.", "free-2 processed."]
    assert started(tmp_path) == ["free-1", "free-2"]


class Holder:
    """A request that can be made unpicklable after it was queued."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.held: object = None


def test_a_request_that_cannot_be_pickled_is_refused_while_stopped_and_strands_nothing(
    gated, tmp_path, caplog
):
    service = gated()
    with pytest.raises(TypeError, match="cannot be pickled"):
        service.queue_request(threading.Lock())
    good = service.queue_request("free-good")
    spoiled_request = Holder("spoiled")
    spoiled = service.queue_request(spoiled_request)
    spoiled_request.held = threading.Lock()  # unpicklable by the time start() sends it
    service.start()
    assert good.get_result(timeout=60) == "free-good processed."
    assert spoiled.get_result(timeout=60) is None and spoiled.is_request_aborted()
    assert "was refused" in caplog.text and "cannot be pickled" in caplog.text
    assert started(tmp_path) == ["free-good"]


def test_start_twice_does_nothing_and_start_after_stop_restarts(gated, tmp_path):
    service = gated()
    service.start()
    service.start()
    assert service.get_status() == SERVICE_RUNNING
    assert service.queue_request("free-first").get_result() == "free-first processed."
    service.stop(wait_for_finish=True)
    service.stop()
    assert service.get_status() == SERVICE_STOPPED
    while_stopped = service.queue_request("free-while-stopped")
    service.start()
    assert service.get_status() == SERVICE_RUNNING
    assert while_stopped.get_result() == "free-while-stopped processed."
    assert service.queue_request("free-second").get_result() == "free-second processed."


def test_stop_waits_for_queued_requests_by_default(gated, tmp_path):
    service = gated()
    service.start()
    promises = service.queue_requests(["free-a", "free-b", "free-c"])
    service.stop(wait_for_finish=True)
    assert all(p.peak_result() for p in promises)
    assert [p.get_result() for p in promises] == [f"free-{x} processed." for x in "abc"]


def test_status_counts_workers_and_queue_and_terminate_aborts(gated, tmp_path):
    service = gated(workers=2)
    assert service.total_workers == 2
    service.start()
    assert service.get_processes_free() == 2 and service.get_workers_processing_count() == 0
    running = service.queue_requests(["hold-1", "hold-2"])
    wait_until(lambda: sorted(started(tmp_path)) == ["hold-1", "hold-2"], "both workers run")
    queued = service.queue_requests([f"free-{i}" for i in range(6)])
    assert service.get_workers_processing_count() == 2 and service.get_processes_free() == 0
    assert service.get_queue_remaining() >= 2  # some may sit in a worker's next batch
    service.terminate()
    assert service.get_status() == SERVICE_STOPPED
    assert [p.get_result() for p in running + queued] == [None] * 8
    assert all(p.is_request_aborted() for p in running + queued)
    PromiseSet(running + queued).wait_for_all()  # nothing is left pending
