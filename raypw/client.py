"""The driver's half of a service: promises, local dedup, and three daemon threads.

::

    queue_request() --> [wait for room: max_queued] --> local dedup (key -> pending Promise)
                    --> outbox
      sender thread:    outbox --> Coordinator.submit(Submit)   (batched, bounded in count
                                                                 and bytes in flight; each
                                                                 with its seconds left)
                        fails requests whose deadline passes while still in the outbox
      collector thread: waits on the pending poll's future (Ray's thread completes it: no
                        Ray call while idle, so a ray.shutdown() elsewhere cannot race one)
                        news --> Outcomes: settle those promises at once
                                 Failed / TimedOut: fail those promises
                                 Closed / Forgotten: close, or connect again
      callback thread:  runs completed_callbacks and future() done-callbacks, so no user code
                        ever runs on the thread that delivers results

Outcomes come inline in the poll's reply, a few milliseconds of work at a time, straight as
the workers stream them to the Coordinator; the per-request cost on the driver stays at a few
microseconds.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import functools
import itertools
import logging
import operator
import queue
import threading
import time
import types
import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping
from concurrent import futures
from concurrent.futures import Future
from typing import Any, Literal, cast, overload

from raypw.backlog import Backlog
from raypw.deadlines import EARLIEST, OVER_LIMIT, DeadlineRuns
from raypw.errors import (
    QueueFullError,
    RemoteError,
    RequestTimeoutError,
    ServiceNotRunningError,
    TransferError,
    WorkerDiedError,
)
from raypw.fast_path import FastPath
from raypw.promise import (
    ABORTED,
    DONE,
    FAILED,
    PENDING,
    STATE_LOCK,
    Notes,
    Promise,
    settle,
)
from raypw.protocol import (
    PLAIN_TYPES,
    Abort,
    Closed,
    DirectOutcome,
    Failed,
    Forgotten,
    Lease,
    News,
    Outcomes,
    Pickled,
    Submit,
    TimedOut,
    dump,
    dump_request,
)

__all__ = ["Client"]

logger = logging.getLogger("raypw")

Callback = Callable[[Promise[Any]], object]

# Most requests one submit() call carries: large enough to amortise a Ray call, small enough
# to keep each message a few MB and let the coordinator start on the first part early.
_SUBMIT_CHUNK = 8192
# The client sends the coordinator only so many requests ahead of the results: enough to keep
# every worker busy, while the rest waits here, where abort() is instant and memory is not held
# twice. At least MIN_WINDOW, and WINDOW_PER_WORKER for each worker: a wide pool holds more in
# flight (two batches a worker, batches that grow with the width), and a window that let the
# coordinator's queue run dry cut its batches to one or two requests. Measured, 32 workers x
# 20,000 sleeps of 10 ms on 2 cores: efficiency 0.50 with 1,024, 0.82 with 4,096, 8,192 and
# 16,384 alike.
MIN_WINDOW = 1024
WINDOW_PER_WORKER = 256
# The window grows to WINDOW_CHUNKS times the largest chunk of outcomes seen (at most
# MAX_WINDOW) and never shrinks: the small batches at the end of a run must not starve the
# next one.
WINDOW_CHUNKS = 64
MAX_WINDOW = 1 << 17
# The client sends more once at most this share of the window is out: one submit() per
# half window instead of one per finished batch, while the coordinator still holds plenty.
_REFILL_SHARE = 0.5
# Bytes of requests in flight to the coordinator at most (beyond one request): large requests
# then flow at the pace the workers take them, not all at once.
MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024
# Seconds an abort() waits for the coordinator's confirmation before it gives up waiting.
_ABORT_TIMEOUT = 30.0
# A call that failed oddly waits this long for a ray.shutdown() under way to finish.
_SHUTDOWN_GRACE = 5.0
_RAY_SHUT_DOWN = "Ray was shut down in this program"
# How long a client that saw ray.shutdown() begin waits for Ray's teardown to end.
_TEARDOWN_WAIT = 30.0
# The pending tables are rebuilt smaller only past this many entries (see _shrink_tables).
_SHRINK_FROM = 1 << 16
# Refs of fast-path reports sent are kept (for stats() to wait on) up to this many before
# those that arrived are dropped.
_REPORTS_KEPT = 16
# With max_queued, queue_requests takes requests from its iterable this many at a time, and
# at most a quarter of max_queued, so the next chunk goes in while three quarters are still
# pending (the workers never run dry between chunks); memory holds one chunk beyond what is
# pending, whatever the iterable.
_ADMIT_CHUNK = 1024
_ADMIT_SHARE = 4
# The runs of unsent requests' deadlines are compacted (sent ones dropped) past twice the
# pending requests (as counted at the last compaction), and at least this many runs.
_MIN_DEADLINE_HEAP = 4096
_TIMEOUT_OF = operator.attrgetter("_timeout")
_DEADLINE_OF = operator.attrgetter("_deadline")
# The promises a request with a deadline may join: none (read only).
_NO_KEYS: Mapping[Hashable, Any] = types.MappingProxyType({})


class Client:
    """One program's connection to a Coordinator.

    Args:
        coordinator: The Coordinator's actor handle.
        key: Function mapping a request to its dedup key, or None to use the request.
        replace_coordinator: Called with the error when the coordinator died; returns a new,
            started coordinator, or raises if there is none.
        workers: The pool's width, which sets how many requests go ahead of the results.
        max_queued: Promises pending at most (and finished ones whose callback has not run);
            queueing more waits for room. None: no limit.
        direct: Whether a lone request (nothing else pending here, no deadline) may go
            straight to a worker the coordinator leased to this client, the idle-pool fast
            path: for a service whose only client this is, and with nothing at the
            coordinator (a cache, recycling) that must see each request first.
    """

    def __init__(
        self,
        coordinator: Any,
        key: Callable[[Any], Hashable] | None = None,
        replace_coordinator: Callable[[BaseException], Any] | None = None,
        workers: int = 1,
        max_queued: int | None = None,
        direct: bool = False,
    ) -> None:
        self._coordinator = coordinator
        self._max_queued = max_queued
        self._replace_coordinator = replace_coordinator
        self._key = key
        self.client_id = uuid.uuid4().hex
        self._fast = FastPath(self.client_id, direct)
        self._report_lock = threading.Lock()  # one sender of fast-path reports at a time
        self._reports: list[Any] = []  # refs of the reports sent, not known to have arrived
        self._ids = itertools.count(1)
        self._by_key: dict[Hashable, Promise[Any]] = {}
        self._by_id: dict[int, Promise[Any]] = {}
        self._tables_high = 0  # the most pending since the two tables were last rebuilt
        self._outbox: Backlog[Promise[Any]] = Backlog()
        # (deadline, first id, count) of runs of consecutive request ids sharing a deadline
        # (one queue() call's), while they may still be in the outbox: one whose deadline
        # passes before it is sent fails here, and is never sent.
        self._unsent_deadlines = DeadlineRuns(_MIN_DEADLINE_HEAP)
        # Whether Ray was up when the client was made (it is, but for a unit test's fake
        # coordinator): only then does Ray going mean ray.shutdown() ran here.
        self._on_ray = _ray_connected()
        self._submits = 0  # submits sent; each promise notes the one that carried it
        self._sent = 0  # promises sent to the coordinator and not finished
        self._sent_bytes = 0  # their requests' size
        self._window = max(MIN_WINDOW, WINDOW_PER_WORKER * workers)
        self._epoch = 0  # this client's registration with the coordinator
        self.deduplicated = 0  # requests that joined a pending equal one here
        self.settled = [0, 0, 0, 0]  # promises finished, by state (see raypw.promise)
        self.timed_out = 0  # promises failed with RequestTimeoutError
        self._open = False  # taking requests
        self._stopped = False  # threads should end
        self._broken: BaseException | None = None
        self._outbox_ready = threading.Condition(STATE_LOCK)
        self._idle = threading.Condition(STATE_LOCK)
        self._room = threading.Condition(STATE_LOCK)  # fewer than max_queued pending
        self._send_lock = threading.Lock()
        # The sender's last submits (at most two in flight): a hand-over waits for them, as
        # the coordinator, an async actor, may run a later call from here before them.
        self._recent_submits: collections.deque[Any] = collections.deque(maxlen=2)
        self._callbacks: queue.SimpleQueue[tuple[Callback, Promise[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []
        self._callback_thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Registers with the coordinator and starts the client's threads."""
        import ray

        self._epoch = ray.get(self._coordinator.connect.remote(self.client_id))
        if self._fast.allowed:
            self._fast.lease = ray.get(self._coordinator.lease.remote())
        with STATE_LOCK:
            self._open = True
            self._stopped = False
        for name, target in (
            ("raypw-sender", self._send_loop),
            ("raypw-collector", self._collect_loop),
            ("raypw-callbacks", self._callback_loop),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            if target == self._callback_loop:
                self._callback_thread = thread
            thread.start()
            self._threads.append(thread)

    def close(
        self, wait: bool = True, timeout: float | None = None, hand_over: bool = False
    ) -> None:
        """Stops taking requests; waits for pending ones (``wait``) or aborts them; ends the
        client's threads.

        Pending promises still unfinished when ``timeout`` runs out are aborted. Safe to call
        again, from any thread, also while another call waits or after one was interrupted:
        each call ends whatever is left, including the threads of a client that already
        stopped taking requests because the service ended.

        Args:
            wait: Wait for pending promises first.
            timeout: Seconds to wait at most.
            hand_over: Leave the pending requests with the coordinator, which still processes
                them (and drops their results), instead of withdrawing them. Used when a
                program exits while a detached service holds its work.
        """
        import ray

        with STATE_LOCK:
            self._open = False
            self._room.notify_all()  # blocked queue_request() calls raise now
            if wait:
                self._idle.wait_for(lambda: not self._by_id, timeout)
            self._stopped = True
            self._outbox_ready.notify_all()
            # Else the coordinator is gone; and with Ray shut down in this program (by
            # ray.shutdown() before stop(), or at exit), a call to it would start a new local
            # Ray just to send it (Ray's auto-init).
            connected = self._broken is None and ray.is_initialized()
        if hand_over and connected:
            self._hand_over()
        notes = Notes()
        with STATE_LOCK:
            for promise in list(self._by_id.values()):
                self._forget(promise)
                settle(promise, ABORTED, "the service was stopped", notes)
            self._outbox.clear()
        self._deliver(notes)
        if connected:
            leave = self._coordinator.leave if hand_over else self._coordinator.disconnect
            try:
                ray.get(leave.remote(self.client_id), timeout=10)
            except Exception:  # the coordinator may be gone already
                logger.debug("disconnect failed", exc_info=True)
        if self._threads:
            self._callbacks.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=10)
        self._threads = []

    def _hand_over(self) -> None:
        """Submits whatever is still in the outbox, past the window, and waits for it and
        for the sender's last submits, so that all of it is queued before the ``leave``."""
        import ray

        with self._send_lock:  # the sender has stopped, or stops before its next submit
            sent = list(self._recent_submits)
            with STATE_LOCK:
                unsent = {
                    id(p): p for p in self._outbox if p._state == PENDING and not p._sent_in
                }  # once each: one raised to a higher priority is there twice
                taken = list(unsent.values())
                self._outbox.clear()
            try:
                refs = sent
                for start in range(0, len(taken), _SUBMIT_CHUNK):
                    part = taken[start : start + _SUBMIT_CHUNK]
                    with STATE_LOCK:
                        self._submits += 1
                        seq = self._submits
                        for promise in part:
                            promise._sent_in = seq
                        self._sent += len(part)
                    refs.append(self._submit(part, seq))
                ray.get(refs, timeout=30)
            except Exception:
                logger.warning("could not hand %d request(s) to the service", len(taken))

    def _submit(self, promises: list[Promise[Any]], seq: int) -> Any:
        """Sends requests to the coordinator; returns the submit's ref. Call with the send
        lock held."""
        requests = []
        keys: list[Any] | None = None if self._key is None else []
        timeouts: list[float | None] | None = None
        priorities: list[int] | None = None
        for promise in promises:
            carried = promise._carried
            if carried is None:  # sent before (handed back): pickle it again
                carried = dump(promise.request)
            requests.append(carried)
            promise._carried = None
            if keys is not None:
                keys.append(dump(promise._key))
            if promise._timeout is not None and timeouts is None:
                timeouts = []
            if promise._priority and priorities is None:
                priorities = [p._priority for p in promises]
        if timeouts is not None:  # seconds left now: the coordinator's clock is its own
            now = time.monotonic()
            if None in map(_TIMEOUT_OF, promises):
                timeouts = [
                    None if p._timeout is None else max(0.0, p._deadline - now) for p in promises
                ]
            else:  # each has one (the usual case): no Python loop per request
                lefts: list[float] = list(map(now.__rsub__, map(_DEADLINE_OF, promises)))
                if min(lefts) < 0.0:
                    lefts = [max(0.0, left) for left in lefts]
                timeouts = cast("list[float | None]", lefts)
        fast = self._fast
        reserved = died = None
        if fast.promise is not None:
            with STATE_LOCK:  # read with _fast_path_ended's view of it
                reserved = fast.reserve()
        if fast.died:
            with STATE_LOCK:
                died = fast.deaths_among(promises)
        message = Submit(
            self.client_id,
            self._epoch,
            seq,
            [p._id for p in promises],
            requests,
            keys,
            timeouts,
            priorities,
            died,
            reserved,
        )
        return self._coordinator.submit.remote(message)

    # -- queueing --------------------------------------------------------------------------

    @overload
    def queue(
        self,
        requests: Iterable[Any],
        callback: Callback | None,
        timeout: float | None = None,
        block: bool = True,
        block_timeout: float | None = None,
        priority: int = 0,
        keep: Literal[True] = True,
    ) -> list[Promise[Any]]: ...

    @overload
    def queue(
        self,
        requests: Iterable[Any],
        callback: Callback | None,
        timeout: float | None,
        block: bool,
        block_timeout: float | None,
        priority: int,
        keep: bool,
    ) -> list[Promise[Any]] | int: ...

    def queue(
        self,
        requests: Iterable[Any],
        callback: Callback | None,
        timeout: float | None = None,
        block: bool = True,
        block_timeout: float | None = None,
        priority: int = 0,
        keep: bool = True,
    ) -> list[Promise[Any]] | int:
        """Queues requests and returns one promise each (equal pending requests share one).

        All or nothing: if one request is refused, or the call is interrupted (Ctrl-C),
        none of this call's requests is queued.

        Requests with a ``timeout`` (seconds, checked by the caller) have a deadline of their
        own: they share a promise only with equal requests of the same call, never with one
        queued before or after (the coordinator still runs equal requests once).

        A higher ``priority`` is sent and run before lower ones still waiting. An equal
        pending request of a lower priority is raised to it if it has not been sent yet;
        if it has, the request gets a promise of its own, and the coordinator raises the
        one it holds (and still runs it once).

        With ``max_queued``, the requests are taken from the iterable a chunk at a time, each
        once there is room for it (``block``, ``block_timeout``); if a later chunk is refused
        or the wait runs out, the promises of the earlier ones are aborted before the error
        is raised, so nothing of the call stays queued.

        With ``keep`` False the promises are not returned but the number of requests taken
        from the iterable: the call holds only those of its promises still pending (a
        producer of any length runs in memory bounded by ``max_queued``), and the outcomes
        reach the caller through ``callback`` alone.

        Raises:
            TypeError: a request is unhashable (without a key function), cannot be pickled,
                or raises when compared with an equal-hash pending one.
            ServiceNotRunningError: the client is not open.
            QueueFullError: ``max_queued`` requests are pending and there was no room in time.
        """
        limit = self._max_queued
        if limit is None and keep:
            prepared = [self._prepare(r) for r in requests]
            return self._admit(prepared, callback, timeout, priority=priority)
        until = None if block_timeout is None else time.monotonic() + block_timeout
        size = _ADMIT_CHUNK if limit is None else max(1, min(_ADMIT_CHUNK, limit // _ADMIT_SHARE))
        iterator = iter(requests)
        promises: list[Promise[Any]] = []
        taken = 0
        prune_at = 2 * size
        try:
            while chunk := list(itertools.islice(iterator, size)):
                prepared = [self._prepare(request) for request in chunk]
                promises.extend(self._admit(prepared, callback, timeout, block, until, priority))
                taken += len(chunk)
                if not keep and len(promises) > prune_at:  # amortised O(1) a request
                    promises = [promise for promise in promises if promise._state == PENDING]
                    prune_at = max(prune_at, 2 * len(promises))
        except BaseException:
            self._abort_all(promises)
            raise
        return promises if keep else taken

    def _abort_all(self, promises: list[Promise[Any]]) -> None:
        """Withdraws one share of each promise (a call that failed half-way); those left
        with none are aborted, and the coordinator is told in one message."""
        import ray

        notes = Notes()
        sent: list[Promise[Any]] = []
        with STATE_LOCK:
            for promise in promises:
                if promise._state != PENDING:
                    continue
                if promise._shares > 1:
                    promise._shares -= 1
                    continue
                if promise._sent_in:
                    sent.append(promise)
                self._forget(promise)
                settle(promise, ABORTED, None, notes)
        self._deliver(notes)
        if sent:
            with self._send_lock:  # a submit carrying them, if in progress, goes out first
                message = _abort_message(self.client_id, self._epoch, sent)
            try:
                ray.get(self._coordinator.abort.remote(message), timeout=_ABORT_TIMEOUT)
            except Exception:
                logger.warning("the coordinator did not confirm abort of %d requests", len(sent))

    def _admit(
        self,
        prepared: list[tuple[Any, Hashable, Any, int]],
        callback: Callback | None,
        timeout: float | None,
        block: bool = True,
        until: float | None = None,
        priority: int = 0,
    ) -> list[Promise[Any]]:
        """Queues prepared requests, all or none, once there is room (see :meth:`queue`)."""
        with STATE_LOCK:
            while True:
                new, promises, joined = self._match(prepared, callback, timeout, priority)
                limit = self._max_queued
                if limit is None or not new:
                    break
                backlog = self._callback_backlog()
                if len(self._by_id) + backlog + len(new) <= limit:
                    break
                left = None if until is None else until - time.monotonic()
                if not block or (left is not None and left <= 0):
                    waiting = f" ({backlog} more finished, their callbacks not run yet)"
                    raise QueueFullError(
                        f"{len(self._by_id)} requests of this program are pending"
                        f"{waiting if backlog else ''}, and the "
                        f"service's max_queued is {limit}: "
                        + (
                            "not queued (block=False)"
                            if not block
                            else "no room came within block_timeout"
                        ),
                        max_queued=limit,
                    )
                self._room.wait(left)
            ids = self._ids
            fresh = list(new.values())
            for promise in fresh:
                promise._id = next(ids)
                promise._priority = priority
            by_id = {promise._id: promise for promise in fresh}
            timed = False
            deadline = 0.0
            if timeout is not None and fresh:
                timed = True
                deadline = time.monotonic() + timeout
                for promise in fresh:
                    promise._timeout = timeout
                    promise._deadline = deadline
            # A lone request on an idle pool goes to the leased worker from this thread.
            lone = (
                len(fresh) == 1
                and not timed
                and not joined
                and not self._by_id
                and not self._outbox
            )
            lease = self._fast.free_lease() if lone and not self._ray_went() else None
            # Phase 2 commits with a few C-level calls, in an order that leaves nothing
            # half-queued if an interrupt lands between them.
            wake = not self._outbox
            try:
                if lease is not None:
                    self._fast.begin(fresh[0], lease)
                else:
                    self._outbox.extend(fresh, priority)
                self._by_id.update(by_id)
                if len(self._by_id) > self._tables_high:
                    self._tables_high = len(self._by_id)
                if timeout is None:  # one with a deadline is joined by none (see _match)
                    self._by_key.update(new)
                if timed:  # one run: fresh's ids are consecutive
                    added = self._unsent_deadlines.add(deadline, fresh[0]._id, len(fresh))
                    if added:
                        self._added_unsent_deadlines(added)
                for promise in joined:
                    promise._shares += 1
                    # Unsent (see _match): raised. Not the fast path's: it runs already.
                    if promise._priority < priority and promise is not self._fast.promise:
                        promise._priority = priority
                        self._outbox.append(promise, priority)
                    if callback is not None:
                        if promise._callbacks is None:
                            promise._callbacks = [callback]
                        else:
                            promise._callbacks.append(callback)
                self.deduplicated += len(promises) - len(fresh)
            finally:
                if wake and self._outbox:
                    self._outbox_ready.notify()
        if lease is not None:
            self._send_direct(fresh[0], lease)
        return promises

    def _send_direct(self, promise: Promise[Any], lease: Lease) -> None:
        """Sends a lone request to the leased worker; its outcome settles the promise from
        Ray's callback. If Ray cannot take the call, the request takes the usual way
        through the coordinator instead; Ctrl-C while sending aborts it."""
        sent = False
        try:
            if promise._state == PENDING:  # else aborted already, by another thread
                ref = lease.actor.direct.remote(promise._carried, promise._id)
                with STATE_LOCK:
                    self._fast.sent_as(ref, time.monotonic())
                ref.future().add_done_callback(functools.partial(self._direct_done, promise))
                sent = True
        except Exception:  # Ray could not take the call: the usual way
            logger.debug("a fast-path call failed", exc_info=True)
        except BaseException:  # Ctrl-C: as the call promises, nothing of it stays queued
            notes = Notes()
            with STATE_LOCK:
                self._fast_path_ended(promise, None)
                if promise._state == PENDING:
                    self._forget(promise)
                    settle(promise, ABORTED, None, notes)
            self._deliver(notes)
            raise
        if not sent:
            with STATE_LOCK:
                self._direct_failed(promise)

    def _direct_done(self, promise: Promise[Any], future: Future[Any]) -> None:
        """Settles a fast-path promise with its worker's outcome (on Ray's callback thread:
        no Ray call here). If the worker died or left the pool under it, the request takes
        the usual way, where a death counts against ``max_retries``."""
        from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

        try:
            outcome: Any = future.result()
        except BaseException as exc:  # Ray's error for the call (never the user's)
            outcome = exc
        notes = Notes()
        with STATE_LOCK:
            try:
                if isinstance(outcome, DirectOutcome | RayTaskError) or promise._state != PENDING:
                    self._end_direct(promise, outcome, notes)
                else:
                    # Unavailable is not dead: a worker restarting, or a call Ray gave up on.
                    died = isinstance(outcome, RayActorError) and not isinstance(
                        outcome, ActorUnavailableError
                    )
                    self._direct_failed(promise, died=died)
            except Exception as exc:  # a bug of raypw's: fail the promise, never hang it
                logger.exception("raypw: settling a fast-path request failed")
                if promise._state == PENDING:
                    self._forget(promise)
                    settle(promise, FAILED, exc, notes)
        self._deliver(notes)

    def _end_direct(self, promise: Promise[Any], outcome: Any, notes: Notes) -> None:
        """Settles a fast-path promise with what its worker returned: a
        :class:`DirectOutcome`, or the error of raypw's own worker code. Call with
        STATE_LOCK held."""
        direct = outcome if isinstance(outcome, DirectOutcome) else None
        self._fast_path_ended(promise, direct)
        if promise._state != PENDING:
            return  # aborted meanwhile
        self._forget(promise)
        if direct is None:
            settle(promise, FAILED, outcome, notes)
        elif direct.error is not None:
            settle(promise, FAILED, _rebuild_error(direct.error, promise.request), notes)
        else:
            settle(promise, *_open_result(direct.result, promise.request), notes)

    def _direct_failed(self, promise: Promise[Any], died: bool = False) -> None:
        """A fast-path request did not get its outcome from the worker: it goes to the
        coordinator like any other (``died``: with the death of its worker counted against
        its retries), and the sender asks for a new lease. Call with STATE_LOCK held."""
        self._fast_path_ended(promise, None)
        self._fast.failed(promise, died and promise._state == PENDING)
        if promise._state == PENDING:
            self._outbox.append(promise, promise._priority)
        self._outbox_ready.notify()

    def _fast_path_ended(self, promise: Promise[Any], outcome: DirectOutcome | None) -> None:
        """Adds a fast-path request that ended on its worker (``outcome``: processed) to the
        next report; wakes the sender if that is due at once (a submit reserved the worker
        for it). Call with STATE_LOCK held."""
        if self._fast.ended(promise, outcome, time.monotonic()):
            self._outbox_ready.notify()

    def report_fast_path(self, wait: bool = False) -> None:
        """Tells the coordinator what the fast path did since the last report. The sender
        does once a report is due (see ``FastPath.ended``); ``stats()`` first, and waits
        (``wait``) for every report sent to arrive, so that its counts include them (the
        coordinator, an async actor, may run a program's calls out of order)."""
        import ray

        with self._report_lock:
            with STATE_LOCK:
                report = self._fast.take_report()
            reports = self._reports
            if report is not None:
                try:
                    reports.append(self._coordinator.fast_path_done.remote(report))
                except Exception:  # the coordinator is gone: its counts went with it
                    logger.debug("could not report the fast path's counts", exc_info=True)
            if wait:
                self._reports = []
            elif len(reports) > _REPORTS_KEPT:  # drop those that arrived
                _, self._reports = ray.wait(reports, num_returns=len(reports), timeout=0)
        if wait and reports:
            with contextlib.suppress(Exception):  # a dead coordinator: stats() says so
                ray.get(reports, timeout=30)

    def _callback_backlog(self) -> int:
        """Finished promises whose ``completed_callback`` has not run yet: they hold their
        results, so they count against ``max_queued`` (a slow callback slows the producer
        instead of filling memory). Not for a callback that itself queues requests: its
        thread is the one that drains them."""
        if threading.current_thread() is self._callback_thread:
            return 0
        return self._callbacks.qsize()

    def _match(
        self,
        prepared: list[tuple[Any, Hashable, Any, int]],
        callback: Callback | None,
        timeout: float | None,
        priority: int = 0,
    ) -> tuple[dict[Hashable, Promise[Any]], list[Promise[Any]], list[Promise[Any]]]:
        """Phase 1 of queueing: finds the pending promise each request joins, or makes one.
        Call with STATE_LOCK held.

        Returns:
            The new promises by key, one promise per request, and the pending promises
            joined (their shares and callbacks are added in phase 2).
        """
        if not self._open:
            if self._broken is not None:
                raise ServiceNotRunningError(f"the service is not running: {self._broken}")
            raise ServiceNotRunningError(
                "the service is not running: call start() first (or use it as a context "
                "manager); after stop() it takes no more requests"
            )
        # Phase 1 runs the requests' own __hash__ and __eq__ (dict lookups), which may
        # raise or be interrupted: it changes nothing shared.
        # A request with a deadline joins no promise of another call (nor one of it).
        by_key: Mapping[Hashable, Promise[Any]] = self._by_key if timeout is None else _NO_KEYS
        new: dict[Hashable, Promise[Any]] = {}
        promises: list[Promise[Any]] = []
        joined: list[Promise[Any]] = []
        request: Any = None
        try:
            for request, key, carried, size in prepared:
                promise = by_key.get(key)
                if promise is not None and promise._priority < priority and promise._sent_in:
                    promise = None  # sent already at a lower priority: see queue()
                if promise is not None:
                    joined.append(promise)  # an equal request queued before: phase 2
                else:
                    promise = new.get(key)
                    if promise is None:
                        promise = new[key] = Promise(request, self, key)
                        promise._carried = carried
                        promise._size = size
                    else:
                        promise._shares += 1  # an equal request earlier in this call
                    if callback is not None:
                        if promise._callbacks is None:
                            promise._callbacks = [callback]
                        else:
                            promise._callbacks.append(callback)
                promises.append(promise)
        except Exception as exc:
            raise _comparison_error(request, self._key is not None, exc) from exc
        return new, promises, joined

    def _add_unsent_deadlines(self, runs: Iterable[tuple[float, int, int]]) -> None:
        """Watches the deadlines of requests in the outbox, given as runs of consecutive ids
        (deadline, first id, count). Call with STATE_LOCK held."""
        added = 0
        book = self._unsent_deadlines
        for deadline, first, count in runs:
            added |= book.add(deadline, first, count)
        if added:
            self._added_unsent_deadlines(added)

    def _added_unsent_deadlines(self, added: int) -> None:
        """Acts on what adding runs of deadlines reported (``DeadlineRuns.add``'s bits).
        Call with STATE_LOCK held."""
        if added & OVER_LIMIT:
            self._compact_unsent_deadlines()
        if added & EARLIEST:
            self._outbox_ready.notify()  # the sender watches the next deadline: it moved

    def _compact_unsent_deadlines(self) -> None:
        """Drops the runs with no request left unsent if they are more than twice the
        pending requests; the next compaction comes past twice as many runs as pending
        requests now (and ``_MIN_DEADLINE_HEAP``). Call with STATE_LOCK held."""
        book = self._unsent_deadlines
        by_id = self._by_id
        if len(book) > 2 * len(by_id):

            def live(first: int, count: int) -> bool:
                return any(
                    (p := by_id.get(i)) is not None and not p._sent_in
                    for i in range(first, first + count)
                )

            book.keep(live)
        book.set_limit(max(_MIN_DEADLINE_HEAP, 2 * len(by_id), 2 * len(book)))

    def _expire_unsent(self, notes: Notes) -> float | None:
        """Fails the requests whose deadline passed while they were still in the outbox (they
        are never sent); returns the seconds until the next such deadline, or None. Call
        with STATE_LOCK held. Sent requests are the coordinator's to time out."""
        book = self._unsent_deadlines
        if not book:
            return None
        now = time.monotonic()
        by_id = self._by_id
        for first, count in book.pop_due(now):
            for request_id in range(first, first + count):
                promise = by_id.get(request_id)
                if promise is None or promise._sent_in:
                    continue
                self._forget(promise)  # it stays in the outbox, which drops it unsent
                settle(promise, FAILED, _timeout_error(promise), notes)
                self.timed_out += 1
        next_due = book.next_due()
        return None if next_due is None else next_due - now

    def _prepare(self, request: Any) -> tuple[Any, Hashable, Any, int]:
        """Checks a request; returns it, its key, its carried form and its size in bytes."""
        key = request if self._key is None else self._key(request)
        try:
            hash(key)
        except TypeError:
            what = "request" if self._key is None else "key returned by key= for the request"
            raise TypeError(
                f"the {what} {request!r:.80} is unhashable ({type(key).__name__}), so equal "
                "requests cannot be deduplicated; pass a hashable request (a tuple, a frozen "
                "dataclass) or give the service key=, a function that returns a hashable key "
                "for each request, e.g. ProcessorService(..., key=lambda r: r['id'])"
            ) from None
        if type(request) in PLAIN_TYPES:
            size = len(request) if isinstance(request, (str, bytes)) else 8
            return request, key, request, size
        carried = dump_request(request)
        return request, key, carried, len(carried.data)

    # -- aborting --------------------------------------------------------------------------

    def abort(self, promise: Promise[Any], if_unstarted: bool = False) -> bool:
        """Aborts a promise (see :meth:`raypw.Promise.abort`).

        Args:
            promise: One of this client's promises.
            if_unstarted: Abort only if the request has not started (``raypw.compat``): one
                sent to the coordinator is aborted only once the coordinator confirms that
                no worker began it; else it stays pending and gets its outcome.
        """
        import ray

        notes = Notes()
        with STATE_LOCK:
            if promise._state != PENDING:
                return False
            if promise._shares > 1:
                promise._shares -= 1
                return False
            direct = promise is self._fast.promise
            if direct and if_unstarted:
                return False  # sent to an idle worker itself: it has most likely started
            direct_ref = self._fast.ref if direct else None
            went_to = self._fast.went_to
            sent = promise._sent_in > 0
            if not (sent and if_unstarted):
                self._forget(promise)
                settle(promise, ABORTED, None, notes)
        if sent and if_unstarted:
            return self._abort_if_unstarted(promise)
        self._deliver(notes)
        if self._ray_went():
            # ray.shutdown() began here: the actors end with it, and a call into Ray now
            # would start a new local Ray or reach the core worker being torn down.
            return True
        if direct_ref is not None and went_to is not None:
            try:
                # Withdrawn by the worker if not begun; a running one is cancelled (which a
                # processor can observe). Never ray.cancel before it began: see skip_direct.
                withdrawn = ray.get(
                    went_to.actor.skip_direct.remote(promise._id), timeout=_ABORT_TIMEOUT
                )
                if not withdrawn:
                    ray.cancel(direct_ref)
            except Exception:
                logger.debug("cancelling a fast-path request failed", exc_info=True)
        if sent:
            with self._send_lock:  # a submit carrying it, if in progress, goes out first
                message = _abort_message(self.client_id, self._epoch, [promise])
            try:
                stopped = ray.get(self._coordinator.abort.remote(message), timeout=_ABORT_TIMEOUT)
                # 0: its worker had begun it (or it had just finished): it may still run.
                promise._began_before_abort = stopped == 0
            except Exception:
                logger.warning(
                    "the coordinator did not confirm abort of %r", promise, exc_info=True
                )
        return True

    def _abort_if_unstarted(self, promise: Promise[Any]) -> bool:
        """Asks the coordinator to withdraw a sent request unless it started; settles the
        promise aborted if it was withdrawn. Returns whether it was. Once ray.shutdown()
        began here nothing runs any more: it is aborted without asking."""
        import ray

        if not self._ray_went():
            with self._send_lock:  # a submit carrying it, if in progress, goes out first
                message = _abort_message(self.client_id, self._epoch, [promise])
            try:
                withdrawn = ray.get(
                    self._coordinator.abort_unstarted.remote(message), timeout=_ABORT_TIMEOUT
                )
            except Exception:
                logger.warning(
                    "the coordinator did not answer the abort of %r", promise, exc_info=True
                )
                return False
        else:
            withdrawn = [promise._id]
        notes = Notes()
        with STATE_LOCK:
            if promise._id not in withdrawn or promise._state != PENDING:
                return False
            self._forget(promise)
            settle(promise, ABORTED, None, notes)
        self._deliver(notes)
        return True

    def _forget(self, promise: Promise[Any]) -> None:
        """Drops a promise from the pending tables. Call with STATE_LOCK held."""
        del self._by_id[promise._id]
        if self._by_key.get(promise._key) is promise:
            del self._by_key[promise._key]
        self._fast.forget(promise._id)
        if promise._sent_in:
            self._sent -= 1
            self._sent_bytes -= promise._size
            if self._outbox:
                self._outbox_ready.notify()
        if not self._by_id:
            self._idle.notify_all()
        if self._max_queued is not None:
            self._room.notify_all()

    @property
    def pending(self) -> int:
        """Promises not finished yet."""
        return len(self._by_id)

    @property
    def broken(self) -> BaseException | None:
        """Why the client takes no more requests though it was not stopped (its coordinator
        died and could not be replaced, another program stopped the service, Ray was shut
        down here); None while it works."""
        return self._broken

    def counts(self) -> dict[str, int]:
        """This client's promises by state, requests deduplicated here, and requests not yet
        handed to the coordinator."""
        with STATE_LOCK:
            return {
                "pending": len(self._by_id),
                "done": self.settled[DONE],
                "failed": self.settled[FAILED],
                "aborted": self.settled[ABORTED],
                "timed_out": self.timed_out,
                "deduplicated": self.deduplicated,
                "fast_path": self._fast.sent,
                "fast_path_running": int(self._fast.promise is not None),
                "unsent": len(
                    {id(p) for p in self._outbox if p._state == PENDING and not p._sent_in}
                ),
            }

    def resized(self, workers: int) -> None:
        """The pool now has ``workers`` workers: a wider pool gets more requests sent ahead."""
        with STATE_LOCK:
            self._window = max(self._window, MIN_WINDOW, WINDOW_PER_WORKER * workers)
            self._outbox_ready.notify()

    # -- threads ---------------------------------------------------------------------------

    def _send_loop(self) -> None:
        previous: tuple[Any, list[int]] | None = None
        while True:
            notes = Notes()
            with STATE_LOCK:
                while True:
                    next_deadline = self._expire_unsent(notes)
                    report_in = self._fast.report_in(time.monotonic())
                    if (
                        self._stopped
                        or self._fast.lease_wanted
                        or report_in == 0.0
                        or (self._outbox and self._may_send())
                    ):
                        break
                    # A wake-up lost to an interrupt costs 1 s.
                    wait = min(
                        1.0,
                        1.0 if next_deadline is None else next_deadline,
                        1.0 if report_in is None else report_in,
                    )
                    self._outbox_ready.wait(wait)
                stopped = self._stopped
                lease_wanted, self._fast.lease_wanted = self._fast.lease_wanted, False
            self._deliver(notes)
            if stopped:
                return
            if self._ray_went():
                # ray.shutdown() began in this program: a call into Ray now would start a new
                # local Ray (ray.get's auto-init) or reach the core worker being torn down,
                # which ends the process. What is pending stays so; the collector aborts it
                # once the teardown is over.
                with STATE_LOCK:
                    self._outbox.clear()
                    self._outbox_ready.wait(0.1)
                previous = None
                continue
            if lease_wanted:
                self._renew_lease()
            self.report_fast_path()
            with self._send_lock:
                with STATE_LOCK:
                    outbox = self._outbox
                    room = min(_SUBMIT_CHUNK, self._window - self._sent)
                    room_bytes = MAX_BYTES_IN_FLIGHT - self._sent_bytes
                    seq = self._submits + 1
                    taken: list[Promise[Any]] = []
                    size = 0
                    full = False
                    while not full and len(taken) < room and (front := outbox.front()):
                        priority, level = front
                        while level and len(taken) < room:
                            promise = level[0]
                            if (
                                promise._state != PENDING  # aborted or timed out: dropped
                                or promise._sent_in  # raised to a higher priority, and sent
                                or promise._priority != priority  # ... or to be sent
                            ):
                                level.popleft()
                                continue
                            if taken and size + promise._size > room_bytes:
                                full = True
                                break
                            level.popleft()
                            promise._sent_in = seq
                            taken.append(promise)
                            size += promise._size
                    self._sent += len(taken)
                    self._sent_bytes += size
                if not taken:
                    continue
                self._submits = seq
                try:
                    ref = self._submit(taken, seq)
                except Exception as exc:
                    self._fail([p._id for p in taken], exc)
                    continue
                self._recent_submits.append(ref)
            if previous is not None:  # at most two submits in flight: bounded memory
                self._wait_submitted(*previous)
            previous = (ref, [p._id for p in taken])

    def _renew_lease(self) -> None:
        """Asks the coordinator for a worker to send lone requests to (the last one died or
        left the pool, or the coordinator was replaced); the answer comes on Ray's callback
        thread, and the sender does not wait for it."""
        try:
            self._coordinator.lease.remote().future().add_done_callback(self._leased)
        except Exception:  # the coordinator is gone: the collector recovers, and asks again
            logger.debug("no fast-path lease", exc_info=True)

    def _leased(self, answer: Future[Lease | None]) -> None:
        try:
            lease = answer.result()
        except BaseException:  # the coordinator is gone: the collector recovers, asks again
            logger.debug("no fast-path lease", exc_info=True)
            return
        with STATE_LOCK:
            if self._fast.lease is None:
                self._fast.lease = lease

    def _may_send(self) -> bool:
        return (
            self._sent <= self._window * _REFILL_SHARE
            and self._sent_bytes <= MAX_BYTES_IN_FLIGHT * _REFILL_SHARE
        )

    def _wait_submitted(self, ref: Any, ids: list[int]) -> None:
        """Waits for a submit. If the coordinator died, the collector replaces it and hands
        everything back; any other failure fails that submit's promises (never dropped)."""
        import ray
        from ray.exceptions import RayActorError

        try:
            ray.get(ref)
        except RayActorError:
            logger.debug("submit to a dead coordinator; the collector recovers", exc_info=True)
        except Exception as exc:
            logger.error("submitting requests to the coordinator failed: %s", exc)
            self._fail(ids, exc)

    def _collect_loop(self) -> None:
        """Waits on the pending poll, and settles what its reply brings, until the client
        stops; if Ray is shut down in this program first, aborts whatever is pending."""
        try:
            self._collect()
        except SystemExit:
            # How Ray's calls end once ray.shutdown() ran here (the actors this program owned
            # end with it). Unhandled, it would end this thread without a word and leave
            # every pending promise, and a stop() waiting for them, waiting for ever.
            self._end_for_ray_shutdown()

    def _collect(self) -> None:
        # The poll's answer is waited for on its future, which Ray's own thread completes:
        # waiting calls no Ray API. A call into Ray from this thread while ray.shutdown()
        # runs elsewhere can end the whole process (Ray's core worker quick-exits when asked
        # after its shutdown), so this thread calls Ray only when there is news.
        answer = self._coordinator.poll.remote(self.client_id).future()
        while True:
            if self._ray_gone():
                return
            if not futures.wait([answer], timeout=1.0).done:
                if self._stopped:
                    return
                continue
            if self._ray_gone():  # the poll ended because Ray did
                return
            try:
                news: list[News] = answer.result()
            except Exception as exc:
                if self._stopped or not self._recover(exc):
                    return
                answer = self._coordinator.poll.remote(self.client_id).future()
                continue
            if self._stopped and not any(isinstance(n, Outcomes | Failed) for n in news):
                return
            try:
                if not self._take_news(news):
                    return
            except Exception as exc:  # a bug of raypw's: fail loudly, never hang
                logger.exception("raypw: handling the coordinator's news failed")
                self._fail(None, exc)
                return
            # Asked again after settling: news meanwhile waits at the coordinator, and a
            # lone result is not delayed by the cost of the next call.
            answer = self._coordinator.poll.remote(self.client_id).future()

    def _ray_went(self) -> bool:
        """True once ``ray.shutdown()`` began in this program: a call into Ray then would
        start a new local Ray (``ray.get``'s auto-init) or reach the core worker being torn
        down, which ends the process."""
        return self._on_ray and not _ray_connected()

    def _ray_gone(self) -> bool:
        """True, with the pending promises aborted, once ray.shutdown() ran here: asked
        then, Ray would start a new local instance (its auto-init) only to say it does not
        know the old session's poll."""
        import ray

        if ray.is_initialized():
            return False
        self._end_for_ray_shutdown()
        return True

    def _end_for_ray_shutdown(self) -> None:
        """Aborts what is pending, saying Ray was shut down here (unless the client stopped
        first: stop() ends its promises itself), once Ray's shutdown is over: the refs this
        thread and the promises hold may only be dropped then."""
        _wait_for_core_worker_teardown(_TEARDOWN_WAIT)
        if not self._stopped:
            self._close_from_service(_RAY_SHUT_DOWN)

    def _take_news(self, news: list[News]) -> bool:
        """Acts on a poll's news; False once the client must stop collecting."""
        forgotten = False
        for entry in news:
            if isinstance(entry, Outcomes):
                self._settle(entry)
            elif isinstance(entry, Failed):
                self._fail(entry.ids, entry.error)
            elif isinstance(entry, TimedOut):
                self._time_out(entry.ids)
            elif isinstance(entry, Closed):
                self._close_from_service(entry.reason)
                return False
            elif isinstance(entry, Forgotten):
                forgotten = True
        if forgotten and not self._stopped:
            try:
                self._rejoin()
            except Exception as exc:
                return self._recover(exc)
        return True

    def _close_from_service(self, reason: str) -> None:
        """The service was stopped (by another program): abort what is pending here."""
        notes = Notes()
        with STATE_LOCK:
            self._open = False
            self._room.notify_all()
            self._broken = ServiceNotRunningError(reason)
            for promise in list(self._by_id.values()):
                self._forget(promise)
                settle(promise, ABORTED, reason, notes)
            self._outbox.clear()
        self._deliver(notes)
        logger.warning("raypw: %s; pending requests were aborted", reason)

    def _recover(self, cause: BaseException) -> bool:
        """Replaces a dead coordinator and hands it back every pending request.

        Returns:
            False if there is no way back: every pending promise has then failed with
            :class:`~raypw.WorkerDiedError` (or was aborted, if Ray was shut down in this
            program), and the client takes no more requests.
        """
        import ray
        from ray.exceptions import RayActorError

        # The deaths of the actors ray.shutdown() ends are told once Ray says it is down;
        # other errors can come while it is under way, so they wait for it a while.
        grace = 0.0 if isinstance(cause, RayActorError) else _SHUTDOWN_GRACE
        if _ray_shutting_down(grace):
            # Not a dead coordinator: ray.shutdown() ran in this program (which ended the
            # actors it owned), and Ray's calls fail in odd ways (AttributeError, ValueError)
            # until it is done. Replacing it would start Ray again, and a coordinator with it.
            self._end_for_ray_shutdown()
            return False
        logger.warning("the raypw coordinator died (%s); replacing it", type(cause).__name__)
        replace = self._replace_coordinator
        try:
            if replace is None:
                raise cause
            with self._send_lock:  # no submit may go to the old one meanwhile
                self._coordinator = replace(cause)
                self._epoch = ray.get(self._coordinator.connect.remote(self.client_id))
                resent = self._hand_back()
        except Exception as exc:
            error = WorkerDiedError(
                f"the service's coordinator died and could not be replaced: {exc}"
            )
            with STATE_LOCK:
                self._open = False
                self._room.notify_all()
                self._broken = error
            self._fail(None, error)
            return False
        logger.warning("raypw coordinator replaced; %d request(s) handed back", resent)
        if self._fast.allowed:  # the old lease was a worker of the old coordinator
            with STATE_LOCK:
                self._fast.lose_lease()
                self._outbox_ready.notify()
        return True

    def _rejoin(self) -> None:
        """The coordinator forgot this client after it was silent (a frozen process, a laptop
        asleep) and withdrew its requests: register again and hand them all back."""
        import ray

        with self._send_lock:
            self._epoch = ray.get(self._coordinator.connect.remote(self.client_id))
            resent = self._hand_back()
        logger.warning(
            "the raypw coordinator had forgotten this program; %d request(s) sent again", resent
        )

    def _hand_back(self) -> int:
        """Puts every sent, unfinished request back at the front of the outbox. Call with the
        send lock held; returns how many."""
        with STATE_LOCK:
            resend = sorted((p for p in self._by_id.values() if p._sent_in), key=lambda p: p._id)
            for promise in reversed(resend):
                promise._sent_in = 0
                self._outbox.appendleft(promise, promise._priority)
            timed = [(p._deadline, p._id, 1) for p in resend if p._timeout is not None]
            if timed:
                self._add_unsent_deadlines(timed)
            self._sent = 0
            self._sent_bytes = 0
            self._outbox_ready.notify()
        return len(resend)

    def _settle(self, outcomes: Outcomes) -> None:
        """Settles the promises of streamed outcomes; unpickles each value on its own, so a
        value that cannot be rebuilt here fails only its own promise."""
        ids = outcomes.ids
        results = outcomes.results
        errors = outcomes.errors
        notes = Notes()
        self._window = max(self._window, min(WINDOW_CHUNKS * len(ids), MAX_WINDOW))
        with STATE_LOCK:
            by_id = self._by_id  # under the lock: _shrink_tables replaces them
            by_key = self._by_key
            for index, request_id in enumerate(ids):
                promise = by_id.pop(request_id, None)
                if promise is None:
                    continue  # aborted meanwhile
                self._sent -= 1
                self._sent_bytes -= promise._size
                if by_key.get(promise._key) is promise:
                    del by_key[promise._key]
                if errors and index in errors:
                    settle(promise, FAILED, _rebuild_error(errors[index], promise.request), notes)
                    continue
                result = results[index]
                if type(result) is Pickled:
                    settle(promise, *_open_result(result, promise.request), notes)
                    continue
                settle(promise, DONE, result, notes)
            if not by_id:
                self._idle.notify_all()
            if self._max_queued is not None:
                self._room.notify_all()
            if self._outbox and self._may_send():
                self._outbox_ready.notify()
            self._shrink_tables()
        self._deliver(notes)

    def _shrink_tables(self) -> None:
        """Rebuilds the pending tables once they hold a quarter of their high-water mark: a
        dict keeps the table of its largest size however many entries go, so a burst of a
        million requests would hold about 80 MB of empty tables for the client's life.
        Amortised O(1) a request. Call with STATE_LOCK held, with no copy of either table
        in use."""
        pending = len(self._by_id)
        if self._tables_high < _SHRINK_FROM or 4 * pending > self._tables_high:
            return
        self._by_id = dict(self._by_id)
        self._by_key = dict(self._by_key)
        self._tables_high = pending

    def _fail(self, ids: list[int] | None, error: BaseException) -> None:
        """Fails the given pending promises (all of them for None)."""
        notes = Notes()
        with STATE_LOCK:
            chosen = list(self._by_id) if ids is None else ids
            for request_id in chosen:
                promise = self._by_id.get(request_id)
                if promise is not None:
                    if isinstance(error, WorkerDiedError) and type(error.request) is Pickled:
                        error.request = promise.request
                    self._forget(promise)
                    settle(promise, FAILED, error, notes)
            self._shrink_tables()
        self._deliver(notes)

    def _time_out(self, ids: list[int]) -> None:
        """Fails the given pending promises: their deadlines passed at the coordinator."""
        notes = Notes()
        with STATE_LOCK:
            for request_id in ids:
                promise = self._by_id.get(request_id)
                if promise is not None:
                    self._forget(promise)
                    settle(promise, FAILED, _timeout_error(promise), notes)
                    self.timed_out += 1
            self._shrink_tables()
        self._deliver(notes)

    def _deliver(self, notes: Notes) -> None:
        notes.notify()
        for entry in notes.callbacks:
            self._callbacks.put(entry)

    def _callback_loop(self) -> None:
        while True:
            entry = self._callbacks.get()
            if entry is None:
                return
            callback, promise = entry
            try:
                callback(promise)
            except Exception:
                logger.exception("completed_callback %r raised for %r", callback, promise)
            if self._max_queued is not None:
                with self._room:
                    self._room.notify_all()  # one callback fewer waiting: room


def _open_result(result: Any, request: Any) -> tuple[int, Any]:
    """The state and value a carried result settles its promise with: DONE and the value,
    or FAILED and a :class:`~raypw.TransferError` if it cannot be rebuilt here."""
    if type(result) is not Pickled:
        return DONE, result
    try:
        return DONE, result.load()
    except Exception as exc:
        return FAILED, TransferError(
            f"the result of {request!r:.80} could not be rebuilt in this process: "
            f"{type(exc).__name__}: {exc}",
            request=request,
            what="result",
        )


def _rebuild_error(carried: Any, request: Any) -> BaseException:
    """The exception a failed request's promise holds, rebuilt from what the worker sent."""
    try:
        error = carried.load() if type(carried) is Pickled else carried
    except Exception as exc:
        return RemoteError(
            f"process() of {request!r:.80} raised an exception that could not be rebuilt in "
            f"this process: {type(exc).__name__}: {exc}"
        )
    if isinstance(error, TransferError):
        return TransferError(f"{request!r:.80}: {error}", request=request, what=error.what)
    if not isinstance(error, BaseException):
        return RemoteError(f"process() of {request!r:.80} failed: {error!r:.200}")
    return error


def _ray_shutting_down(grace: float) -> bool:
    """True if ``ray.shutdown()`` runs or ran in this program, told from a failed call.

    ``ray.is_initialized()`` turns False only once Ray has stopped its own threads, and
    calls fail in odd ways before that; so a call that failed with anything but an actor's
    death waits up to ``grace`` seconds for Ray to say it is shut down.
    """
    import ray
    from ray.util.client import ray as ray_client

    if ray_client.is_connected():  # type: ignore[no-untyped-call]  # Ray Client (ray://)
        return False
    until = time.monotonic() + grace
    while ray.is_initialized():
        if time.monotonic() >= until:
            return False
        time.sleep(0.05)
    return True


def _ray_connected() -> bool:
    """False once ``ray.shutdown()`` began in this program (or Ray never started)."""
    import ray

    return bool(ray.is_initialized())


def _wait_for_core_worker_teardown(timeout: float) -> None:
    """Waits, up to ``timeout`` seconds, for a ``ray.shutdown()`` under way here to be over.

    Ray says it is shut down (``ray.is_initialized()`` False) before it tears down its core
    worker, and ends the whole process if an ``ObjectRef`` is dropped in between (its
    destructor calls the core worker that is gone). A thread that saw Ray go keeps its refs
    until Ray has let go of the core worker, or connected again.
    """
    import ray

    worker = ray._private.worker.global_worker
    until = time.monotonic() + timeout
    while hasattr(worker, "core_worker") and not worker.connected:
        if time.monotonic() >= until:
            return
        time.sleep(0.02)


def _abort_message(client: str, epoch: int, promises: list[Promise[Any]]) -> Abort:
    """The coordinator is told which submit carried each: an abort that overtakes that
    submit is kept for it."""
    return Abort(client, epoch, [p._id for p in promises], [p._sent_in for p in promises])


def _timeout_error(promise: Promise[Any]) -> RequestTimeoutError:
    """The error of a promise whose deadline passed."""
    timeout = promise._timeout or 0.0
    deadline = time.time() - (time.monotonic() - promise._deadline)
    when = datetime.datetime.fromtimestamp(deadline, datetime.UTC).strftime("%H:%M:%S.%f")[:-3]
    return RequestTimeoutError(
        f"{promise.request!r:.80} did not finish within its timeout of {timeout:g} s "
        f"(deadline {when} UTC); it was not started, or was cancelled, and is not retried",
        request=promise.request,
        timeout=timeout,
        deadline=deadline,
    )


def _comparison_error(request: Any, keyed: bool, exc: Exception) -> TypeError:
    """The error for a request whose key raised while being compared (dedup)."""
    what = "the key= of the request" if keyed else "the request"
    return TypeError(
        f"{what} {request!r:.80} raised {type(exc).__name__} ({exc}) when compared with an "
        "equal-hash pending request; requests are compared to deduplicate them: give the "
        "service key=, a function returning a key that compares cleanly (a str, an int, a "
        "tuple), e.g. ProcessorService(..., key=lambda r: r.id). Nothing of this call was "
        "queued."
    )
