"""Behaviour 8: queue_request from several threads at once."""

from __future__ import annotations

import threading
from collections import defaultdict

from raypw import PromiseSet
from tests.integration.conftest import processed
from tests.integration.processors import Recorder


def test_queue_request_from_many_threads_shares_promises_and_counts_add_up(make_service, tmp_path):
    log, gate = tmp_path / "log", tmp_path / "gate"
    service = make_service(
        Recorder,
        parallel_workers=2,
        processor_class_init_args={"log_path": str(log), "gate": str(gate)},
    )
    # Every request waits for the gate, which opens only once the threads have queued, so
    # every value is still pending when its duplicates arrive: each distinct value must be
    # processed exactly once.
    per_thread = 2000
    distinct = 500
    results: dict[int, list] = {}
    barrier = threading.Barrier(8)

    def queue_many(thread: int) -> None:
        barrier.wait()
        results[thread] = [
            service.queue_request(f"v{(thread * 131 + i) % distinct}") for i in range(per_thread)
        ]

    threads = [threading.Thread(target=queue_many, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gate.touch()
    by_value = defaultdict(set)
    for promises in results.values():
        for promise in promises:
            by_value[promise.request].add(id(promise))
    assert len(by_value) == distinct
    assert all(len(ids) == 1 for ids in by_value.values())
    all_promises = [p for promises in results.values() for p in promises]
    PromiseSet(all_promises).wait_for_all(timeout=60)
    assert sum(1 for p in all_promises if p.get_result()["request"] == p.request) == 8 * per_thread
    lines = processed(log)
    assert len(lines) == distinct
    assert len(set(lines)) == distinct
