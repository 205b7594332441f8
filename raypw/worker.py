"""The processor worker: one Ray actor holding one :class:`~raypw.Processor` instance.

The coordinator sends each worker batches of requests (``process_batch``): the one it runs
and, while every worker is busy, the next, so the worker starts it the moment the first ends.
On a second, independent channel it sends the positions of requests to skip (``skip``):
requests aborted, or taken back for an idle worker before they started. A batch call returns
two objects: a small report the coordinator awaits to schedule the next batch, and the
outcomes, which the clients fetch straight from the object store without passing through the
coordinator. Both name the positions skipped, so neither settles a request that moved.

The class is plain Python; :func:`remote_worker_class` makes it a Ray actor with two
concurrency groups, so ``skip`` is answered while a batch runs, and batches run one at a
time, so the processor never sees two requests at once.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import traceback
from typing import Any

import ray

__all__ = ["BatchOutcome", "BatchReport", "remote_worker_class"]

# A batch's outcomes: the result per position (None where it failed or was skipped), the
# errors by position (a RayTaskError carrying the remote traceback) or None if none failed,
# and the positions skipped (aborted, or moved to another batch) or None if none was.
BatchOutcome = tuple[list[Any], "dict[int, Any] | None", "list[int] | None"]
# What the coordinator needs from a finished batch: seconds spent processing, and the
# positions skipped (every other position was processed).
BatchReport = tuple[float, list[int]]
# Results and errors, as the processing loops return them before the skips are added.
_Outcome = tuple[list[Any], "dict[int, Any] | None"]

# How many finished batch ids a worker remembers to answer a late ``skip`` correctly. The
# coordinator keeps at most two batches in flight per worker, so a handful would do.
_RECENT_BATCHES = 64


class _Worker:
    """Runs batches of requests through one processor instance."""

    def __init__(
        self, processor_class: type, init_args: tuple[Any, ...], init_kwargs: dict[str, Any]
    ) -> None:
        self._processor = processor_class(*init_args, **init_kwargs)
        # Whether the class overrides process_batch (vectorised) or we call process per item.
        self._vectorised = _overrides_process_batch(processor_class)
        self._lock = threading.Lock()
        self._current: int | None = None  # batch id running now
        self._position = -1  # position in the current batch that started last
        self._skips: dict[int, set[int]] = {}  # batch id -> positions to skip
        self._finished: collections.deque[int] = collections.deque(maxlen=_RECENT_BATCHES)

    @ray.method(concurrency_group="control")
    def ready(self) -> int:
        """Answers once the processor is built; returns this worker's process id."""
        return os.getpid()

    @ray.method(concurrency_group="work", num_returns=2)
    def process_batch(self, batch_id: int, requests: list[Any]) -> tuple[BatchReport, BatchOutcome]:
        """Processes a batch, skipping positions withdrawn before they started."""
        started = time.perf_counter()
        with self._lock:
            self._current = batch_id
            self._position = -1
            skip = self._skips.pop(batch_id, None)
            if skip is None:
                skip = self._skips[batch_id] = set()
            else:
                self._skips[batch_id] = skip
        try:
            if self._vectorised:
                outcome = self._run_vectorised(batch_id, requests, skip)
            else:
                outcome = self._run_each(requests, skip)
        finally:
            with self._lock:
                self._skips.pop(batch_id, None)
                self._current = None
                self._finished.append(batch_id)
        skipped = sorted(skip)
        results, errors = outcome
        return (time.perf_counter() - started, skipped), (results, errors, skipped or None)

    def _run_each(self, requests: list[Any], skip: set[int]) -> _Outcome:
        process = self._processor.process
        lock = self._lock
        results: list[Any] = [None] * len(requests)
        errors: dict[int, Any] | None = None
        for position, request in enumerate(requests):
            with lock:
                self._position = position
                if position in skip:
                    continue
            try:
                results[position] = process(request)
            except Exception as exc:  # the user's error goes to this request's promise only
                if errors is None:
                    errors = {}
                errors[position] = self._error(exc, "process")
        return results, errors

    def _run_vectorised(self, batch_id: int, requests: list[Any], skip: set[int]) -> _Outcome:
        with self._lock:
            # All requests start together: later skips are too late.
            self._position = len(requests) - 1
            positions = [i for i in range(len(requests)) if i not in skip]
        results: list[Any] = [None] * len(requests)
        try:
            values = self._processor.process_batch([requests[i] for i in positions])
            if len(values) != len(positions):
                raise ValueError(
                    f"process_batch returned {len(values)} results for {len(positions)} requests"
                )
        except Exception as exc:
            error = self._error(exc, "process_batch")
            return results, dict.fromkeys(positions, error)
        for position, value in zip(positions, values, strict=True):
            results[position] = value
        return results, None

    def _error(self, exc: Exception, function_name: str) -> Any:
        return _remote_error(exc, f"{type(self._processor).__qualname__}.{function_name}")

    @ray.method(concurrency_group="control")
    def skip(self, batch_id: int, positions: list[int]) -> list[int]:
        """Marks positions of a batch to be skipped; returns those that had already started.

        The answer is final: a position not returned is never processed by this batch, and
        its report and outcomes list it as skipped.
        """
        with self._lock:
            if batch_id in self._finished:
                return list(positions)
            if batch_id == self._current:
                late = [p for p in positions if p <= self._position]
                self._skips[batch_id].update(p for p in positions if p > self._position)
                return late
            # The batch has not arrived yet: it will skip them when it does.
            self._skips.setdefault(batch_id, set()).update(positions)
            return []


def _overrides_process_batch(processor_class: type) -> bool:
    from raypw.processor import Processor

    return getattr(processor_class, "process_batch", None) is not Processor.process_batch


def _remote_error(exc: Exception, function_name: str) -> Any:
    """Wraps ``exc`` with its traceback so the client re-raises it as the user's class."""
    from ray.exceptions import RayTaskError

    return RayTaskError(  # type: ignore[no-untyped-call]
        function_name,
        traceback.format_exc(),
        exc,
        proctitle=f"raypw::{function_name}",
        pid=os.getpid(),
        ip=_node_ip(),
    )


def _node_ip() -> str:
    try:
        return str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
    except Exception:  # outside Ray (unit tests): the address is only informative
        return "127.0.0.1"


def remote_worker_class() -> Any:
    """Returns :class:`_Worker` as a Ray actor class with its two concurrency groups."""
    remote: Any = ray.remote  # its typed overloads do not list actor-only options
    return remote(concurrency_groups={"work": 1, "control": 1})(_Worker)
