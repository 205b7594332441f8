"""``ray.shutdown()`` before ``stop()``: every promise still ends, and Ray is not restarted."""

from __future__ import annotations

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
