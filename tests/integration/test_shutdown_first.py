"""``ray.shutdown()`` before ``stop()``: every promise still ends, and Ray is not restarted."""

from __future__ import annotations

import threading
import time

import ray

from tests.integration.conftest import processed
from tests.integration.processors import Recorder
from tests.programs import run_program


def test_ray_shutdown_before_stop_aborts_every_pending_promise_and_stop_returns():
    # Its own program: ray.shutdown() would end the Ray the other tests share.
    report, _ = run_program("tests.integration.shutdown_first", timeout=240)
    ended = report["ended"]
    assert len(ended) == 51
    # The slow request was running when Ray went: it cannot have finished.
    assert ended[0] == "aborted: 'slow:120' was aborted: Ray was shut down in this program"
    assert all(
        e == "done" or e.endswith("was aborted: Ray was shut down in this program") for e in ended
    )
    assert not report["ray_again"]  # stop() did not start a new local Ray to reach the old one


def test_the_collector_calls_no_ray_api_while_it_waits_for_news(
    make_service, tmp_path, monkeypatch
):
    # Ray's core worker ends the whole process when a thread calls into it while
    # ray.shutdown() runs in another (CI saw the program above die so). The collector woke
    # every second in ray.wait(), freeing the refs it returned: a call at any moment.
    calls: list[str] = []
    for name in ("wait", "get"):
        real = getattr(ray, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            if threading.current_thread().name == "raypw-collector":
                calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(ray, name, spy)
    log, gate = tmp_path / "log", tmp_path / "gate"
    service = make_service(
        Recorder, parallel_workers=1, processor_class_init_args=(str(log), "", str(gate))
    )
    promises = service.queue_requests(["a", "b"])
    while not processed(log):
        time.sleep(0.05)
    time.sleep(1.5)  # the old collector woke in ray.wait() every second while it ran
    gate.touch()
    assert [p.get_result(timeout=60)["request"] for p in promises] == ["a", "b"]
    assert calls == []


def test_raypw_lets_go_of_its_refs_only_after_ray_tore_its_core_worker_down():
    # Ray ends the whole process when an ObjectRef is dropped after its core worker was torn
    # down and before ray.shutdown() lets go of it (CI saw the program above die so): the
    # collector, woken by the teardown, aborted its promises and dropped its poll's ref.
    # A thread of the program goes on queueing (and aborting some) meanwhile: raypw calls
    # no Ray API then, which would reach the torn-down core worker or start Ray again.
    report, _ = run_program("tests.integration.shutdown_slow_teardown", timeout=240)
    assert report["late_calls"] == []
    assert report["ended_before_teardown"] == 0
    assert len(report["ended"]) == 21
    assert report["ended"][0] == "aborted"
    assert report["queued_meanwhile"] and set(report["queued_meanwhile"]) == {"aborted"}
    assert report["refused"] == ["the service is not running: Ray was shut down in this program"]
    assert report["ray_again"] is False
