"""Programs that vanish or freeze while a shared service holds their requests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import ray

from raypw import PromiseSet
from raypw.cli import named_services
from tests.integration.conftest import processed
from tests.integration.processors import Recorder

ROOT = Path(__file__).resolve().parents[2]


def _driver(code: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "RAY_AUTH_MODE": "token",
    }
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def _clients(name: str) -> int:
    return next(s["clients"] for s in named_services() if s["name"] == name)


def _wait_for(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_killed_programs_requests_are_withdrawn(make_service, log_file):
    service = make_service(
        Recorder,
        parallel_workers=1,
        processor_class_init_args=(str(log_file),),
        name="vanishing",
        client_timeout=2.0,
    )
    # 50 x 0.5 s: 25 s of work, against the 2 s after which a silent client is forgotten.
    program = _driver(
        """
        import os, signal
        from raypw import ProcessorService
        service = ProcessorService.connect("vanishing")
        promises = service.queue_requests([f"gone{i}:0.5" for i in range(50)])
        promises[0].get_result(timeout=60)
        print("queued", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    assert program.stdout.readline().strip() == "queued"
    program.wait(timeout=60)
    assert program.returncode == -signal.SIGKILL
    assert _wait_for(lambda: _clients("vanishing") == 1, timeout=60)  # only this test's own
    assert service.stats().queued == 0
    # The only worker runs batches in order: once a request queued after the withdrawal is
    # done, whatever of the program's work was still under way has ended, and what follows
    # shows whether anything it left behind still starts.
    assert service.queue_request("still-serving").get_result(timeout=60)["request"] == (
        "still-serving"
    )
    before = processed(log_file)
    assert before[-1] == "still-serving"
    assert len([line for line in before if line.startswith("gone")]) < 50
    assert service.queue_request("still-serving-2").get_result(timeout=60)["request"] == (
        "still-serving-2"
    )
    assert processed(log_file) == [*before, "still-serving-2"]  # nothing withdrawn started


def test_a_frozen_program_is_forgotten_then_sends_its_requests_again(make_service):
    make_service(Recorder, parallel_workers=1, name="freezing", client_timeout=2.0)
    program = _driver(
        """
        from raypw import ProcessorService, PromiseSet
        service = ProcessorService.connect("freezing")
        promises = service.queue_requests([f"cold{i}:0.2" for i in range(40)])
        promises[0].get_result(timeout=60)
        print("queued", flush=True)
        PromiseSet(promises).wait_for_all(timeout=120)
        print("done", sorted(p.get_result()["request"] for p in promises) == sorted(
            f"cold{i}:0.2" for i in range(40)), flush=True)
        """
    )
    try:
        assert program.stdout.readline().strip() == "queued"
        program.send_signal(signal.SIGSTOP)
        assert _wait_for(lambda: _clients("freezing") == 1)  # forgotten while frozen
        program.send_signal(signal.SIGCONT)
        out, err = program.communicate(timeout=120)
    finally:
        program.kill()
    assert program.returncode == 0, err[-3000:]
    assert "done True" in out
    assert "had forgotten this program" in err


def test_a_client_that_polls_is_never_forgotten(make_service):
    service = make_service(Recorder, parallel_workers=1, name="steady", client_timeout=1.0)
    promises = service.queue_requests([f"steady{i}:0.1" for i in range(40)])
    PromiseSet(promises).wait_for_all(timeout=60)  # 4 s: four timeouts' worth
    assert all(p.get_result()["request"] == p.request for p in promises)
    assert _clients("steady") == 1
