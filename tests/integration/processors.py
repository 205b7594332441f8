"""Processors used by the integration tests (imported by the worker actors)."""

from __future__ import annotations

import os
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
