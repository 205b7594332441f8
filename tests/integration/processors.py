"""Processors used by the integration tests (imported by the worker actors)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from raypw import Processor


class Recorder(Processor):
    """Sleeps as asked, logs each request it processes, and says who processed it.

    Requests are strings ``"name"`` or ``"name:seconds"``, or dicts with ``"name"`` and
    optional ``"seconds"``; the name ``"fail"`` raises ValueError, ``"exit"`` calls
    ``sys.exit(3)`` and ``"interrupt"`` raises KeyboardInterrupt. With a ``gate`` path, each
    request, once logged, waits until that file exists.
    """

    instances_built = 0

    def __init__(self, log_path: str | None = None, tag: str = "", gate: str | None = None) -> None:
        self.log_path = Path(log_path) if log_path else None
        self.tag = tag
        self.gate = Path(gate) if gate else None
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
        deadline = time.monotonic() + 120
        while self.gate is not None and not self.gate.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the gate never opened")
            time.sleep(0.005)
        if seconds:
            time.sleep(float(seconds))
        if name == "fail":
            raise ValueError(f"cannot process {request}")
        if name == "exit":
            sys.exit(3)
        if name == "interrupt":
            raise KeyboardInterrupt(f"interrupted in {request}")
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


class ExitingConstructor(Processor):
    """A processor whose constructor calls ``sys.exit()``."""

    def __init__(self) -> None:
        sys.exit("model file missing")

    def process(self, request):  # pragma: no cover - never built
        return request


class BreaksWhenFlagged(Processor):
    """Builds while the file ``flag`` does not exist; once it does, its constructor raises."""

    def __init__(self, flag: str) -> None:
        if Path(flag).exists():
            raise RuntimeError("model file not found")

    def process(self, request):
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


class TwoArgumentError(Exception):
    """An exception that cannot be rebuilt from its args (pickle calls it with one)."""

    def __init__(self, code, text):
        super().__init__(f"{code}: {text}")


class LockedError(Exception):
    """An exception holding an unpicklable attribute (as a database error holds its
    connection)."""

    def __init__(self, text):
        super().__init__(text)
        self.connection = threading.Lock()


class Awkward(Processor):
    """``"lock"`` returns an unpicklable object; ``"two-args"`` raises TwoArgumentError;
    ``"locked"`` raises LockedError; ``"open:<path>"`` opens the file."""

    def process(self, request):
        if request == "lock":
            return threading.Lock()
        if request == "two-args":
            raise TwoArgumentError(7, "cannot be rebuilt")
        if request.startswith("locked"):  # "locked#2": an equal failure, not a duplicate
            raise LockedError("connection lost")
        if request.startswith("open:"):
            with open(request[5:]):
                pass
        return f"{request} ok"


def _refuse_rebuild(name):
    raise RuntimeError(f"{name} refuses to be rebuilt")


class Unrebuildable:
    """Pickles fine; unpickling it raises (as a class whose __setstate__ fails)."""

    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return (_refuse_rebuild, (self.name,))


class ArrayLike:
    """Hashes fine, but comparing two raises, as a dataclass holding a numpy array does."""

    def __init__(self, values):
        self.values = values

    def __hash__(self):
        return 1

    def __eq__(self, other):
        raise ValueError("The truth value of an array with more than one element is ambiguous")


class InterruptOnSecondHash:
    """Its second hash() raises KeyboardInterrupt: Ctrl-C in the middle of queue_requests."""

    def __init__(self):
        self.hashes = 0

    def __hash__(self):
        self.hashes += 1
        if self.hashes == 2:
            raise KeyboardInterrupt
        return 7

    def __getstate__(self):
        return {"hashes": 0}


class Gates(Processor):
    """Request ``name`` logs ``start name``, waits until the file ``gates/name`` exists, then
    logs ``end name`` and returns ``(name, pid)``. Names starting with ``free`` do not wait."""

    def __init__(self, gates: str) -> None:
        self.gates = Path(gates)

    def process(self, request):
        log = self.gates / "log"
        with log.open("a") as out:
            out.write(f"start {request}\n")
        deadline = time.monotonic() + 120
        while not str(request).startswith("free") and not (self.gates / str(request)).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {request} never opened")
            time.sleep(0.005)
        with log.open("a") as out:
            out.write(f"end {request}\n")
        return (request, os.getpid())


def gate_log(gates) -> list[str]:
    path = Path(gates) / "log"
    return path.read_text().splitlines() if path.exists() else []


class CancelAware(Processor):
    """Runs until Ray says its task was cancelled, then returns; logs what it saw. Requests
    starting with ``quick`` are returned at once."""

    def __init__(self, log_path: str) -> None:
        self.log_path = Path(log_path)

    def process(self, request):
        import ray

        if str(request).startswith("quick"):
            return request

        context = ray.get_runtime_context()
        self.log_path.write_text("running\n")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if context.is_canceled():
                self.log_path.write_text("cancelled\n")
                return "stopped"
            time.sleep(0.01)
        self.log_path.write_text("never cancelled\n")
        return "timed out"


class WaitsForFile(Processor):
    """Returns each request, a file path, once that file exists."""

    def process(self, request):
        while not Path(request).exists():
            time.sleep(0.01)
        return request


class GatedLength(Processor):
    """Returns the request's length once the gate file exists."""

    def __init__(self, gate: str) -> None:
        self.gate = Path(gate)

    def process(self, request):
        deadline = time.monotonic() + 120
        while not self.gate.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the gate never opened")
            time.sleep(0.005)
        return len(request)


class Hangs(Processor):
    """``"hang"`` never returns, and ignores ``is_canceled()``; any other request returns at
    once. Logs ``start <request> <pid>`` for each request it begins."""

    def __init__(self, log_path: str) -> None:
        self.log_path = Path(log_path)

    def process(self, request):
        with self.log_path.open("a") as log:
            log.write(f"start {request} {os.getpid()}\n")
        while request == "hang":
            time.sleep(0.01)
        return f"{request} done"
