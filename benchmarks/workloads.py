"""The work every system runs: one stateful object per worker process, one call per request.

Module-level functions and classes, so every pool can pickle them by reference.
"""

from __future__ import annotations

import os
import time
from typing import Any

from raypw import Processor

# W7's mixed costs: every MIXED_EVERY-th request (index % MIXED_EVERY == MIXED_EVERY - 1)
# sleeps MIXED_SLOW seconds, every other one MIXED_FAST.
MIXED_EVERY = 100
MIXED_SLOW = 0.5
MIXED_FAST = 0.001


class State:
    """The per-worker state every system keeps: built once per worker process."""

    def __init__(self, kind: str, arg: Any = None) -> None:
        self.kind = kind
        self.arg = arg
        self.calls = 0
        self.log = open(arg, "ab", buffering=0) if kind == "dedup" else None  # noqa: SIM115

    def handle(self, request: Any) -> Any:
        self.calls += 1
        kind = self.kind
        if kind == "noop":
            return request + " processed."
        if kind == "sleep":
            time.sleep(self.arg)
            return f"{request} processed."
        if kind == "dedup":
            assert self.log is not None
            self.log.write(b".")  # one byte per process() call, counted by the harness
            time.sleep(0.001)
            return request
        if kind == "busy":
            return busy(self.arg)
        if kind == "mixed":
            slow = request % MIXED_EVERY == MIXED_EVERY - 1
            time.sleep(MIXED_SLOW if slow else MIXED_FAST)
            # Wall clock, comparable across processes on one machine: the caller subtracts it
            # from the time it got the result to measure how late results are delivered.
            return request, time.time()
        raise ValueError(kind)


def mixed_seconds(n: int) -> float:
    """Total work in requests ``range(n)`` of kind ``mixed``."""
    slow = n // MIXED_EVERY
    return slow * MIXED_SLOW + (n - slow) * MIXED_FAST


def busy(iterations: int) -> int:
    """Pure-Python CPU work."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def calibrate_busy(seconds: float = 0.005) -> int:
    """Iterations of :func:`busy` that take ``seconds`` on this machine (median of 5)."""
    iterations = 20_000
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        busy(iterations)
        samples.append(time.perf_counter() - started)
    per_iteration = sorted(samples)[2] / iterations
    return max(1, int(seconds / per_iteration))


class BenchProcessor(Processor):
    """raypw's processor around :class:`State`."""

    def __init__(self, kind: str, arg: Any = None) -> None:
        self.state = State(kind, arg)

    def process(self, request: Any) -> Any:
        return self.state.handle(request)


# -- process pools: the state lives in a module global set by the pool's initializer --------

_state: State | None = None


def init_state(kind: str, arg: Any = None) -> None:
    global _state
    _state = State(kind, arg)


def call_state(request: Any) -> Any:
    assert _state is not None
    return _state.handle(request)


def pid(_: Any = None) -> int:
    return os.getpid()


def mpire_call(worker_state: dict[str, Any], request: Any) -> Any:
    state = worker_state.get("state")
    if state is None:
        state = worker_state["state"] = State(*worker_state["args"])
    return state.handle(request)
