"""``ray.shutdown()`` before ``stop()``: every promise still ends, and Ray is not restarted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ray_shutdown_before_stop_aborts_every_pending_promise_and_stop_returns():
    # Its own program: ray.shutdown() would end the Ray the other tests share.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=str(ROOT), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    result = subprocess.run(
        [sys.executable, "-m", "tests.integration.shutdown_first"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    ended = report["ended"]
    assert len(ended) == 51
    # The slow request was running when Ray went: it cannot have finished.
    assert ended[0] == "aborted: 'slow:120' was aborted: Ray was shut down in this program"
    assert all(
        e == "done" or e.endswith("was aborted: Ray was shut down in this program") for e in ended
    )
    assert not report["ray_again"]  # stop() did not start a new local Ray to reach the old one
