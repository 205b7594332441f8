"""Processors used by the integration tests (imported by the worker actors)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from raypw import Processor


class Recorder(Processor):
    """Sleeps as asked, logs each request it processes, and says who processed it.

    Requests are strings ``"name"`` or ``"name:seconds"``, or dicts with ``"name"`` and
    optional ``"seconds"``; the name ``"fail"`` raises ValueError.
    """

    instances_built = 0

    def __init__(self, log_path: str | None = None, tag: str = "") -> None:
        self.log_path = Path(log_path) if log_path else None
        self.tag = tag
        self.pid = os.getpid()
        type(self).instances_built += 1
        self.built = type(self).instances_built

    def process(self, request):
        if isinstance(request, dict):
            name, seconds = request["name"], str(request.get("seconds", ""))
        else:
            name, _, seconds = str(request).partition(":")
        started = time.time()
        if self.log_path is not None:
            with self.log_path.open("a") as log:
                log.write(f"{request}\n")
        if seconds:
            time.sleep(float(seconds))
        if name == "fail":
            raise ValueError(f"cannot process {request}")
        return {
            "request": request,
            "pid": self.pid,
            "built": self.built,
            "tag": self.tag,
            "started": started,
            "finished": time.time(),
        }


class Echo(Processor):
    """Returns the request with a suffix: the no-op workload."""

    def process(self, request):
        return f"{request} processed."


class BrokenConstructor(Processor):
    """A processor whose constructor always raises."""

    def __init__(self) -> None:
        raise RuntimeError("model file not found")

    def process(self, request):  # pragma: no cover - never built
        return request


class Stamper(Processor):
    """Appends ``request start-time pid`` per processed request; "poison" kills its worker.

    With a ``gate`` path, every request waits until that file exists before it is processed.
    With ``fail_init_if``, the constructor raises while that file exists.
    """

    def __init__(
        self, log_path: str, gate: str | None = None, fail_init_if: str | None = None
    ) -> None:
        if fail_init_if and Path(fail_init_if).exists():
            raise RuntimeError("cannot build the processor now")
        self.log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives with the worker
        self.gate = Path(gate) if gate else None

    def process(self, request):
        while self.gate is not None and not self.gate.exists():
            time.sleep(0.01)
        self.log.write(f"{request} {time.time()!r} {os.getpid()}\n")
        if request == "poison":
            os.kill(os.getpid(), signal.SIGKILL)
        if isinstance(request, str) and request.startswith("sleep"):
            time.sleep(float(request[5:].split("#")[0]))
        if isinstance(request, bytes):
            return request[::-1]
        return f"{request} processed."


def stamps(log_path) -> list[tuple[str, float, int]]:
    """The (request, start time, pid) lines a Stamper wrote."""
    path = Path(log_path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        request, started, pid = line.rsplit(" ", 2)
        rows.append((request, float(started), int(pid)))
    return rows


class WaitsForFile(Processor):
    """Returns each request, a file path, once that file exists."""

    def process(self, request):
        while not Path(request).exists():
            time.sleep(0.01)
        return request
