"""The processor worker: one Ray actor holding one :class:`~raypw.Processor` instance.

The coordinator sends each worker batches (``run``): the one it runs and, while every worker
is busy, the next. ``run`` is a Ray streaming generator: it yields an
:class:`~raypw.protocol.OutcomeChunk` every few milliseconds of work (and after any request
that ran that long), so each result leaves the worker as soon as it is ready, not at the end
of its batch. On a second, independent channel the coordinator sends positions not to start
(``skip``): requests aborted, or taken back for an idle worker. Its answer is final: a
position it does not return as started is never processed here, and the batch's last chunk
lists it as skipped.

Every value leaves as plain data or :class:`~raypw.protocol.Pickled` bytes made here, and a
value that cannot travel fails its own request with a clear error: a request that cannot be
rebuilt here, a result that cannot be pickled, an exception that could not be rebuilt on the
other side (it then arrives as :class:`~raypw.RemoteError` with its class name and text).

The class is plain Python; :func:`remote_worker_class` makes it a Ray actor with two
concurrency groups, so ``skip`` is answered while a batch runs, and batches run one at a
time, so the processor never sees two requests at once.
"""

from __future__ import annotations

import collections
import os
import pickle
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import ray

from raypw.errors import RemoteError, TransferError
from raypw.protocol import OutcomeChunk, Pickled, WorkBatch, dump, load

__all__ = ["remote_worker_class"]

# A chunk of outcomes leaves once it holds this much work: a result waits at most about this
# long for its chunk-mates, and a worker of no-op requests sends a few hundred chunks a second.
CHUNK_SECONDS = 0.001
# How many finished batch ids a worker remembers to answer a late ``skip`` correctly. The
# coordinator keeps at most two batches in flight per worker, so a handful would do.
_RECENT_BATCHES = 64


class _Worker:
    """Runs batches of requests through one processor instance."""

    def __init__(
        self, processor_class: type, init_args: tuple[Any, ...], init_kwargs: dict[str, Any]
    ) -> None:
        self._processor = processor_class(*init_args, **init_kwargs)
        self._name = type(self._processor).__qualname__
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

    @ray.method(concurrency_group="work")
    def run(self, batch: WorkBatch) -> Iterator[OutcomeChunk]:
        """Processes a batch, streaming its outcomes; skips positions withdrawn in time."""
        batch_id = batch.batch_id
        with self._lock:
            self._current = batch_id
            self._position = -1
            skip = self._skips.setdefault(batch_id, set())
        try:
            if self._vectorised:
                yield from self._run_vectorised(batch, skip)
            else:
                yield from self._run_each(batch, skip)
        finally:
            with self._lock:
                self._skips.pop(batch_id, None)
                self._current = None
                self._finished.append(batch_id)

    def _run_each(self, batch: WorkBatch, skip: set[int]) -> Iterator[OutcomeChunk]:
        process = self._processor.process
        lock = self._lock
        clock = time.perf_counter
        positions: list[int] = []
        results: list[Any] = []
        errors: dict[int, Any] | None = None
        cut = clock()
        for position, carried in enumerate(batch.requests):
            with lock:
                self._position = position
                if position in skip:
                    continue
            result: Any = None
            error: Any = None
            try:
                request = load(carried)
            except Exception as exc:
                error = _cannot_travel("request", "be rebuilt in the worker", exc)
            else:
                try:
                    value = process(request)
                except Exception as exc:  # the user's error goes to this request only
                    error = self._error(exc, "process")
                else:
                    try:
                        result = dump(value)
                    except Exception as exc:
                        error = _cannot_travel("result", "be pickled", exc)
            if error is not None:
                if errors is None:
                    errors = {}
                errors[len(positions)] = error
            positions.append(position)
            results.append(result)
            now = clock()
            if now - cut >= CHUNK_SECONDS:
                yield OutcomeChunk(batch.batch_id, positions, results, errors, now - cut)
                positions, results, errors = [], [], None
                cut = clock()
        with lock:
            skipped = tuple(sorted(skip))
        yield OutcomeChunk(
            batch.batch_id, positions, results, errors, clock() - cut, final=True, skipped=skipped
        )

    def _run_vectorised(self, batch: WorkBatch, skip: set[int]) -> Iterator[OutcomeChunk]:
        started = time.perf_counter()
        with self._lock:
            # All requests start together: later skips are too late.
            self._position = len(batch.requests) - 1
            positions = [i for i in range(len(batch.requests)) if i not in skip]
            skipped = tuple(sorted(skip))
        results: list[Any] = [None] * len(positions)
        errors: dict[int, Any] | None = None
        try:
            values = self._processor.process_batch([load(batch.requests[i]) for i in positions])
            if len(values) != len(positions):
                raise ValueError(
                    f"process_batch returned {len(values)} results for {len(positions)} requests"
                )
        except Exception as exc:
            errors = dict.fromkeys(range(len(positions)), self._error(exc, "process_batch"))
        else:
            for index, value in enumerate(values):
                try:
                    results[index] = dump(value)
                except Exception as exc:
                    if errors is None:
                        errors = {}
                    errors[index] = _cannot_travel("result", "be pickled", exc)
        yield OutcomeChunk(
            batch.batch_id,
            positions,
            results,
            errors,
            time.perf_counter() - started,
            final=True,
            skipped=skipped,
        )

    def _error(self, exc: Exception, function_name: str) -> Pickled:
        return _remote_error(exc, f"{self._name}.{function_name}")

    @ray.method(concurrency_group="control")
    def skip(self, batch_id: int, positions: list[int]) -> list[int]:
        """Marks positions of a batch to be skipped; returns those that had already started.

        The answer is final: a position not returned is never processed by this batch, and
        its last chunk lists it as skipped.
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


def _cannot_travel(what: str, verb: str, exc: BaseException) -> Pickled:
    """The error of a request whose request or result could not travel."""
    error = TransferError(f"the {what} could not {verb}: {type(exc).__name__}: {exc}", what=what)
    return Pickled(pickle.dumps(error, protocol=5))


def _remote_error(exc: Exception, function_name: str) -> Pickled:
    """Wraps ``exc`` with its traceback, so the client re-raises it as the user's own class;
    if it could not be rebuilt there, as :class:`~raypw.RemoteError` with its text."""
    from ray.exceptions import RayTaskError

    text = traceback.format_exc()
    error = RayTaskError(  # type: ignore[no-untyped-call]
        function_name,
        text,
        exc,
        proctitle=f"raypw::{function_name}",
        pid=os.getpid(),
        ip=_node_ip(),
    )
    try:
        carried = dump(error)
        load(carried)  # an exception class whose __init__ needs other arguments fails here
        assert isinstance(carried, Pickled)
        return carried
    except Exception as problem:
        cls = type(exc)
        fallback = RemoteError(
            f"{function_name} raised {cls.__module__}.{cls.__qualname__}: {exc}\n"
            f"(the exception itself could not be sent back: {type(problem).__name__}: "
            f"{problem})\n\nRemote traceback:\n{text}",
            error_type=f"{cls.__module__}.{cls.__qualname__}",
        )
        return Pickled(pickle.dumps(fallback, protocol=5))


def _node_ip() -> str:
    try:
        return str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
    except Exception:  # outside Ray (unit tests): the address is only informative
        return "127.0.0.1"


def remote_worker_class() -> Any:
    """Returns :class:`_Worker` as a Ray actor class with its two concurrency groups."""
    remote: Any = ray.remote  # its typed overloads do not list actor-only options
    return remote(concurrency_groups={"work": 1, "control": 1})(_Worker)
