"""What a user sees of a running service: stats(), reprs and Jupyter's HTML views."""

from __future__ import annotations

from raypw import PromiseSet, ServiceStats
from tests.integration.processors import Recorder


def test_stats_count_this_programs_promises_and_the_services_work(make_service):
    service = make_service(Recorder, parallel_workers=2)
    blocker = service.queue_request("blocker:1")
    promises = service.queue_requests(["a", "b", "a", "fail", "slow:30"])
    promises[-1].abort()
    PromiseSet(promises[:4]).wait_for_all(timeout=60)
    blocker.get_result(timeout=60)
    stats = service.stats()
    assert isinstance(stats, ServiceStats)
    assert (stats.done, stats.failed, stats.aborted, stats.pending) == (3, 1, 1, 0)
    assert stats.deduplicated == 1  # the second "a"
    assert stats.processed >= 4 and stats.queued == 0 and stats.running == 0
    assert stats.workers == stats.workers_alive == stats.workers_up == 2
    assert stats.throughput > 0


def test_reprs_say_what_the_service_and_promises_are(make_service):
    service = make_service(Recorder, parallel_workers=1, name="shown")
    assert repr(service) == "<ProcessorService Recorder workers=1 running name='shown' pending=0>"
    page = service._repr_html_()
    assert "running" in page and "<table>" in page and "workers_alive" in page
    promise = service.queue_request("x")
    promise.get_result(timeout=60)
    assert repr(promise).startswith("<Promise done request='x' result={")
    service.stop()
    assert repr(service) == "<ProcessorService Recorder workers=1 stopped name='shown'>"
    assert "<table>" not in service._repr_html_()
