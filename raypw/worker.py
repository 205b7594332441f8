"""The processor worker: one Ray actor holding one :class:`~raypw.Processor` instance.

The coordinator sends each worker batches (``run``): the one it runs and, while every worker
is busy, the next. Outcomes leave while the batch runs: the coordinator keeps one
``outcomes(batch_id)`` call waiting on the worker, which answers with an
:class:`~raypw.protocol.OutcomeChunk` of what was produced, at once after a quiet spell and
at most every ``chunk_seconds`` (1 ms on a small pool) under a stream of cheap requests. So
each result leaves as soon as it is ready, never waits for a slow request behind it, and
``process()`` still runs on the Ray task's own thread (where
``ray.get_runtime_context().is_canceled()`` works). A Ray streaming generator would yield
only from that thread, so it could not let a chunk leave while ``process()`` runs.

On a third channel the coordinator sends positions not to start (``skip``): requests aborted,
or taken back for an idle worker. Its answer is final: a position it does not return as
started is never processed here, and the batch's last chunk lists it as skipped.

Each call names the process it is meant for (``process_id``): Ray restarts a dead worker
under the same handle, and a call sent to the process that died can reach the new one. The
new process refuses it (``run`` does nothing, ``outcomes`` and ``skip`` answer None), so
the coordinator learns of the death instead of taking the new process's silence about a
batch it never saw for "not started".

Every value leaves as plain data or :class:`~raypw.protocol.Pickled` bytes made here, and a
value that cannot travel fails its own request with a clear error: a request that cannot be
rebuilt here, a result that cannot be pickled, an exception that could not be rebuilt on the
other side (it then arrives as :class:`~raypw.RemoteError` with its class name and text).

The class is plain Python; :func:`remote_worker_class` makes it a Ray actor with three
concurrency groups: batches run one at a time on one thread ("work"), so the processor never
sees two requests at once, while outcomes ("outcomes", a thread per batch held) and skips
("control") are answered beside it. ``direct`` (the idle-pool fast path: one request a client
sends here itself) runs on the "work" thread too.
"""

from __future__ import annotations

import collections
import os
import pickle
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import ray

from raypw.errors import RemoteError, TransferError
from raypw.protocol import DirectOutcome, OutcomeChunk, Pickled, WorkBatch, dump, load

__all__ = ["remote_worker_class"]

# Threads answering outcomes() calls: one per batch a worker may hold (the scheduler's
# PIPELINE_DEPTH), and one spare.
OUTCOME_THREADS = 3
# How many finished batch ids a worker remembers to answer a late ``skip`` correctly. The
# coordinator keeps at most two batches in flight per worker, so a handful would do.
_RECENT_BATCHES = 64


class _Outbox:
    """The outcomes of one batch, from the thread running it to the one handing them out.

    ``run`` adds each outcome as it is produced; ``outcomes`` takes what has gathered: at
    once after a quiet spell, else once ``chunk_seconds`` passed since the last chunk. So a
    result never waits for a slow request after it, and cheap requests travel by hundreds
    per chunk.
    """

    def __init__(self, batch_id: int) -> None:
        self.batch_id = batch_id
        self._cond = threading.Condition(threading.Lock())
        self._positions: list[int] = []
        self._results: list[Any] = []
        self._errors: dict[int, Any] | None = None
        self._seconds = 0.0
        self._finished = False
        self._skipped: tuple[int, ...] = ()
        self._failure: BaseException | None = None
        self._last_chunk = 0.0

    def add(self, position: int, result: Any, error: Any, seconds: float) -> None:
        """Adds one outcome (the thread running the batch)."""
        with self._cond:
            if error is not None:
                if self._errors is None:
                    self._errors = {}
                self._errors[len(self._positions)] = error
            self._positions.append(position)
            self._results.append(result)
            self._seconds += seconds
            if len(self._positions) == 1:
                self._cond.notify()

    def finish(self, skipped: tuple[int, ...], failure: BaseException | None = None) -> None:
        """The batch is over; ``failure``: what ended it early (a bug of raypw's)."""
        with self._cond:
            self._finished = True
            self._skipped = skipped
            self._failure = failure
            self._cond.notify()

    def take(self, chunk_seconds: float) -> OutcomeChunk:
        """Waits for outcomes and returns them as one chunk, at most every ``chunk_seconds``.

        Raises:
            Exception: whatever ended the batch early.
        """
        cond = self._cond
        with cond:
            while not self._positions and not self._finished:
                cond.wait()
            wait = chunk_seconds - (time.perf_counter() - self._last_chunk)
            if not self._finished and wait > 0:
                cond.wait_for(lambda: self._finished, wait)  # let a few more gather
            failure = self._failure
            if failure is not None:
                if isinstance(failure, Exception):
                    raise failure
                raise RuntimeError(f"the batch ended the worker: {failure!r}")
            chunk = OutcomeChunk(
                self.batch_id,
                self._positions,
                self._results,
                self._errors,
                self._seconds,
                final=self._finished,
                skipped=self._skipped if self._finished else (),
            )
            self._positions, self._results, self._errors, self._seconds = [], [], None, 0.0
        self._last_chunk = time.perf_counter()
        return chunk


class _Worker:
    """Runs batches of requests through one processor instance.

    ``run`` (the Ray task, on the "work" thread) processes a batch and fills its outbox;
    ``outcomes`` (on the "outcomes" thread) hands out what gathered there, so a chunk leaves
    while a slow request is still running. ``process()`` runs on the Ray task's own thread,
    so ``ray.get_runtime_context().is_canceled()`` works inside it.
    """

    def __init__(
        self, processor_class: type, init_args: tuple[Any, ...], init_kwargs: dict[str, Any]
    ) -> None:
        try:
            self._processor = processor_class(*init_args, **init_kwargs)
        except Exception:
            raise
        except BaseException as exc:  # sys.exit("model file missing") in the constructor
            # Ray takes a BaseException here for the process ending, and restarts it (a crash
            # dump each time) only to see it end again; as an error, start() names it.
            raise RuntimeError(
                f"{processor_class.__qualname__}() raised {type(exc).__name__}: {exc}"
            ) from None
        self._name = type(self._processor).__qualname__
        # Whether the class overrides process_batch (vectorised) or we call process per item.
        self._vectorised = _overrides_process_batch(processor_class)
        self._lock = threading.Lock()
        self._current: int | None = None  # batch id running now
        self._position = -1  # position in the current batch that started last
        self._skips: dict[int, set[int]] = {}  # batch id -> positions to skip
        self._finished: collections.deque[int] = collections.deque(maxlen=_RECENT_BATCHES)
        self._outboxes: dict[int, _Outbox] = {}  # batch id -> its outcomes not yet taken
        # The fast path: the request ids of the direct() calls that began lately (the one
        # running now too), and those to skip when their call comes.
        self._direct_began: collections.deque[int] = collections.deque(maxlen=_RECENT_BATCHES)
        self._direct_skips: set[int] = set()

    @ray.method(concurrency_group="control")
    def ready(self) -> int:
        """Answers once the processor is built; returns this worker's process id."""
        return os.getpid()

    @ray.method(concurrency_group="work")
    def run(self, batch: WorkBatch, process_id: int | None = None) -> None:
        """Processes a batch into its outbox; skips positions withdrawn in time.

        Args:
            batch: The requests.
            process_id: The process the batch was sent to; another one does nothing. None:
                any (a direct call).
        """
        if not _meant_for_me(process_id):
            return
        batch_id = batch.batch_id
        with self._lock:
            self._current = batch_id
            self._position = -1
            skip = self._skips.setdefault(batch_id, set())
            outbox = self._outbox(batch_id)
        failure: BaseException | None = None
        try:
            if self._vectorised:
                self._run_vectorised(batch, skip, outbox)
            else:
                self._run_each(batch, skip, outbox)
        except BaseException as exc:  # raypw's own failure (process() errors end at _process_one)
            failure = exc
            raise
        finally:
            with self._lock:
                self._skips.pop(batch_id, None)
                self._current = None
                self._finished.append(batch_id)
                skipped = tuple(sorted(skip))
            outbox.finish(skipped, failure)

    @ray.method(concurrency_group="outcomes")
    def outcomes(
        self, batch_id: int, chunk_seconds: float = 0.001, process_id: int | None = None
    ) -> OutcomeChunk | None:
        """Waits for outcomes of a batch and returns them, at most every ``chunk_seconds``;
        the last chunk says ``final``. None: this is not process ``process_id`` (the one
        the batch went to died)."""
        if not _meant_for_me(process_id):
            return None
        with self._lock:
            outbox = self._outbox(batch_id)
        chunk = outbox.take(chunk_seconds)
        if chunk.final:
            with self._lock:
                self._outboxes.pop(batch_id, None)
        return chunk

    def _outbox(self, batch_id: int) -> _Outbox:
        """The batch's outbox, made by whichever of ``run`` and ``outcomes`` comes first.
        Call with the lock held."""
        outbox = self._outboxes.get(batch_id)
        if outbox is None:
            outbox = self._outboxes[batch_id] = _Outbox(batch_id)
        return outbox

    def _run_each(self, batch: WorkBatch, skip: set[int], outbox: _Outbox) -> None:
        process = self._processor.process
        lock = self._lock
        clock = time.perf_counter
        add = outbox.add
        for position, carried in enumerate(batch.requests):
            with lock:
                self._position = position
                if position in skip:
                    continue
            started = clock()
            result, error = self._process_one(process, carried)
            add(position, result, error, clock() - started)

    def _process_one(
        self, process: Callable[[Any], Any], carried: Any, name: str = "process"
    ) -> tuple[Any, Any]:
        """Runs one carried request through ``process`` (named ``name`` in its errors);
        returns (result, error), each as it travels (one of them None)."""
        try:
            request = load(carried)
        except Exception as exc:
            return None, _cannot_travel("request", "be rebuilt in the worker", exc)
        try:
            value = process(request)
        except BaseException as exc:  # the user's error (sys.exit() too) is this request's only
            return None, self._error(exc, name)
        try:
            return dump(value), None
        except Exception as exc:
            return None, _cannot_travel("result", "be pickled", exc)

    @ray.method(concurrency_group="work")
    def direct(self, carried: Any, request_id: int = 0) -> DirectOutcome | None:
        """Processes one request a client sent here itself (the idle-pool fast path), on
        the thread that runs batches, so it never runs beside one. None: it was withdrawn
        (:meth:`skip_direct`) before it began."""
        with self._lock:
            if request_id in self._direct_skips:
                self._direct_skips.discard(request_id)
                return None
            self._direct_began.append(request_id)
        started = time.perf_counter()
        if self._vectorised:
            result, error = self._process_one(self._process_alone, carried, "process_batch")
        else:
            result, error = self._process_one(self._processor.process, carried)
        return DirectOutcome(result, error, time.perf_counter() - started)

    @ray.method(concurrency_group="control")
    def skip_direct(self, request_id: int) -> bool:
        """Withdraws a fast-path request unless it began: returns whether it was (then its
        :meth:`direct` call, sent before this one, returns None without running it).

        The client asks this instead of ``ray.cancel`` on a call not begun yet: Ray 2.60
        cancels such a call out of the actor's ordered queue, and every later call from that
        client to this worker then waits 30 s for its sequence number, and fails.
        """
        with self._lock:
            if request_id in self._direct_began:
                return False
            self._direct_skips.add(request_id)
            return True

    def _process_alone(self, request: Any) -> Any:
        """``process_batch`` of one request, as ``process``."""
        values = self._processor.process_batch([request])
        if len(values) != 1:
            raise ValueError(f"process_batch returned {len(values)} results for 1 request")
        return values[0]

    def _run_vectorised(self, batch: WorkBatch, skip: set[int], outbox: _Outbox) -> None:
        started = time.perf_counter()
        with self._lock:
            # All requests start together: later skips are too late.
            self._position = len(batch.requests) - 1
            positions = [i for i in range(len(batch.requests)) if i not in skip]
        try:
            values = self._processor.process_batch([load(batch.requests[i]) for i in positions])
            if len(values) != len(positions):
                raise ValueError(
                    f"process_batch returned {len(values)} results for {len(positions)} requests"
                )
        except BaseException as exc:  # sys.exit() too: these requests' error, not the worker's
            error = self._error(exc, "process_batch")
            for position in positions:
                outbox.add(position, None, error, 0.0)
            return
        each = (time.perf_counter() - started) / max(len(positions), 1)
        for position, value in zip(positions, values, strict=True):
            try:
                outbox.add(position, dump(value), None, each)
            except Exception as exc:
                outbox.add(position, None, _cannot_travel("result", "be pickled", exc), each)

    def _error(self, exc: BaseException, function_name: str) -> Pickled:
        return _remote_error(exc, f"{self._name}.{function_name}")

    @ray.method(concurrency_group="control")
    def skip(
        self, batch_id: int, positions: list[int], process_id: int | None = None
    ) -> list[int] | None:
        """Marks positions of a batch to be skipped; returns those that had already started.

        The answer is final: a position not returned is never processed by this batch, and
        its last chunk lists it as skipped. None: this is not process ``process_id`` (the
        one the batch went to died, and what it started is unknown).
        """
        if not _meant_for_me(process_id):
            return None
        with self._lock:
            if batch_id in self._finished:
                return list(positions)
            if batch_id == self._current:
                skip = self._skips[batch_id]
                # At or before the current position: started, unless skipped already.
                late = [p for p in positions if p <= self._position and p not in skip]
                skip.update(p for p in positions if p > self._position)
                return late
            # The batch has not arrived yet: it will skip them when it does.
            self._skips.setdefault(batch_id, set()).update(positions)
            return []


def _meant_for_me(process_id: int | None) -> bool:
    """Whether a call naming ``process_id`` is for this process (None: for any)."""
    return process_id is None or process_id == os.getpid()


def _overrides_process_batch(processor_class: type) -> bool:
    from raypw.processor import Processor

    return getattr(processor_class, "process_batch", None) is not Processor.process_batch


def _cannot_travel(what: str, verb: str, exc: BaseException) -> Pickled:
    """The error of a request whose request or result could not travel."""
    error = TransferError(f"the {what} could not {verb}: {type(exc).__name__}: {exc}", what=what)
    return Pickled(pickle.dumps(error, protocol=5))


def _remote_error(exc: BaseException, function_name: str) -> Pickled:
    """Wraps ``exc`` with its traceback, so the client re-raises it as the user's own class;
    if it could not be rebuilt there, as :class:`~raypw.RemoteError` with its text.

    A BaseException that is not an Exception (``sys.exit()``, ``KeyboardInterrupt``) always
    travels as a :class:`~raypw.RemoteError`: the worker goes on (as in
    ``concurrent.futures``), and the caller's ``get_result()`` raises an Exception, which
    cannot end the caller's program.
    """
    from ray.exceptions import RayTaskError

    text = traceback.format_exc()
    if not isinstance(exc, Exception):
        return _as_remote_error(exc, function_name, "the request failed; the worker goes on", text)
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
        # An exception class whose __init__ needs other arguments fails here.
        rebuilt = load(carried)
        assert isinstance(carried, Pickled)
    except Exception as problem:
        why = f"the exception itself could not be sent back: {type(problem).__name__}: {problem}"
        return _as_remote_error(exc, function_name, why, text)
    cause = getattr(rebuilt, "cause", None)
    if type(cause) is not type(exc):
        # Ray pickled it without its cause (an attribute of the exception cannot be pickled:
        # a lock, a connection) and would hand over a bare RayTaskError instead.
        why = f"the exception itself could not be sent back: {cause}"
        return _as_remote_error(exc, function_name, why, text)
    return carried


def _as_remote_error(exc: BaseException, function_name: str, why: str, text: str) -> Pickled:
    """``exc`` as a :class:`~raypw.RemoteError` with its class name, text, ``why`` it came
    as one, and the remote traceback ``text``."""
    cls = type(exc)
    error_type = f"{cls.__module__}.{cls.__qualname__}"
    error = RemoteError(
        f"{function_name} raised {error_type}: {exc}\n({why})\n\nRemote traceback:\n{text}",
        error_type=error_type,
    )
    return Pickled(pickle.dumps(error, protocol=5))


def _node_ip() -> str:
    try:
        return str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
    except Exception:  # outside Ray (unit tests): the address is only informative
        return "127.0.0.1"


def remote_worker_class() -> Any:
    """Returns :class:`_Worker` as a Ray actor class with its three concurrency groups."""
    remote: Any = ray.remote  # its typed overloads do not list actor-only options
    # One outcomes() call waits per batch the worker holds (the one it runs, the one behind):
    # with one thread, the call of the batch behind would block the running one's.
    groups = {"work": 1, "control": 1, "outcomes": OUTCOME_THREADS}
    return remote(concurrency_groups=groups)(_Worker)
