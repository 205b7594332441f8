"""One real local Ray for the whole integration session, shared by every test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from raypw import ProcessorService


@pytest.fixture(scope="session", autouse=True)
def ray_session() -> Iterator[None]:
    if ray.is_initialized():  # tests/compat reuses this fixture: one Ray for the session
        yield
        return
    root = str(Path(__file__).resolve().parents[2])
    # Workers import the test processors by module name, like a user's own package.
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    ray.init(
        address="local",
        # Four logical CPUs on the 2-core machine: Ray keeps that many worker processes warm,
        # so each test's service starts ~0.8 s sooner (2.0-2.7 s -> 1.4-1.75 s, measured).
        # Actors need one to be placed and hold none while they run, so nothing else changes.
        num_cpus=4,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    yield
    ray.shutdown()


@pytest.fixture
def make_service() -> Iterator:
    """Builds and starts services; stops whatever the test left running."""
    made: list[ProcessorService] = []

    def make(*args, **kwargs) -> ProcessorService:
        service = ProcessorService(*args, **kwargs)
        made.append(service)
        return service.start()

    yield make
    for service in made:
        service.stop(wait=False)


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    """A file the test processors append one line per processed request to."""
    return tmp_path / "processed.log"


def processed(log_file: Path) -> list[str]:
    """Lines written by processors: one per request actually processed."""
    if not log_file.exists():
        return []
    return log_file.read_text().splitlines()


def wait_until(condition, what: str, timeout: float = 60.0) -> None:
    """Polls ``condition`` until it holds; fails naming ``what`` after ``timeout`` s.

    The timeout only turns a hang into a failure: the test waits on the event itself.
    """
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.01)


def waits_in(thread_id: int, function: str) -> bool:
    """True while the thread ``thread_id`` is blocked in a ``wait`` called from ``function``
    (read off its stack): e.g. inside ``wait_for_all`` or ``stop``."""
    import sys

    frame = sys._current_frames().get(thread_id)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return bool(names) and names[0] == "wait" and function in names


def alive_raypw_actors(timeout: float = 10.0) -> list[str]:
    """Class names of raypw actors still alive, after giving kills ``timeout`` s to land."""
    import time

    from ray._private import state  # the GCS view; the public state API needs the dashboard

    deadline = time.monotonic() + timeout
    while True:
        alive = [
            info["ActorClassName"]
            for info in state.actors().values()
            if info["State"] != "DEAD" and info["ActorClassName"] in ("_Worker", "Coordinator")
        ]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)
