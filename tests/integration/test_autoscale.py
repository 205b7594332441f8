"""Autoscale (issue 13, point 5): the pool grows while work waits and shrinks when idle."""

from __future__ import annotations

from raypw.config import AutoscaleConfig
from tests.integration.conftest import processed, wait_until
from tests.integration.processors import Recorder


def test_autoscale_grows_while_work_waits_and_shrinks_to_min_when_idle(make_service, log_file):
    service = make_service(
        Recorder,
        processor_class_init_args=(str(log_file),),
        autoscale=AutoscaleConfig(
            min_workers=1,
            max_workers=3,
            target_wait_seconds=0.2,
            idle_seconds=1.0,
            check_seconds=0.1,
        ),
    )
    assert service.stats().workers == 1
    requests = [f"r{i}:0.02" for i in range(600)]  # 12 s of work for one worker
    promises = service.queue_requests(requests)
    wait_until(lambda: len(service.worker_pids) == 3, "the pool grew to max_workers", timeout=120)
    assert service.stats().pending > 0  # it grew while the work waited, not after
    results = [p.get_result(timeout=120) for p in promises]
    assert [r["request"] for r in results] == requests
    assert len({r["pid"] for r in results}) == 3  # the added workers took work
    assert sorted(processed(log_file)) == sorted(requests)
    wait_until(lambda: service.stats().workers == 1, "the idle pool shrank to min_workers")
    assert len(service.worker_pids) == 1
    # A new burst grows it again.
    more = service.queue_requests([f"s{i}:0.02" for i in range(600)])
    wait_until(lambda: service.stats().workers == 3, "the pool grew again", timeout=120)
    assert all(p.get_result(timeout=120)["request"] == f"s{i}:0.02" for i, p in enumerate(more))
