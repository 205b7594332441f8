"""Processors written as parallel-workers programs write them (imported by the workers)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from raypw.compat import Processor


class Gated(Processor):
    """Request ``name`` logs ``start name``, waits until the file ``gates/name`` exists, and
    returns ``"name processed."``. Names starting with ``free`` do not wait; a name holding
    ``boom`` raises."""

    def __init__(self, gates: str) -> None:
        self.gates = Path(gates)

    def process(self, request):
        with (self.gates / "log").open("a") as log:
            log.write(f"start {request}\n")
        deadline = time.monotonic() + 120
        while not request.startswith("free") and not (self.gates / request).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {request} never opened")
            time.sleep(0.005)
        if "boom" in request:
            raise ValueError(f"cannot process {request}")
        return f"{request} processed."


class NotAProcessorSubclass:
    """Any class with process() will do, as in parallel-workers."""

    def __init__(self, suffix: str = "!") -> None:
        self.suffix = suffix

    def process(self, request):
        return f"{request}{self.suffix} by {os.getpid()}"


def started(gates) -> list[str]:
    """Requests a Gated processor began, in order."""
    path = Path(gates) / "log"
    if not path.exists():
        return []
    return [line.split(" ", 1)[1] for line in path.read_text().splitlines()]
