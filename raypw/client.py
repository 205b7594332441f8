"""The driver's half of a service: promises, local dedup, and three daemon threads.

::

    queue_request() --> local dedup (key -> pending Promise) --> outbox
      sender thread:    outbox --> Coordinator.submit(ids, requests)       (batched)
      collector thread: ray.wait(num_returns=1) over [poll ref, in-flight batch refs]
                        poll ref ready  -> news: which batch ref holds which request
                        batch ref ready -> one ray.get per batch -> settle its promises
      callback thread:  runs queue_request's completed_callback for each finished promise

A promise waits on the ``ObjectRef`` of the batch carrying its request. The collector waits
on the few distinct in-flight batch refs, never on one ref per request, and fetches each batch
once, so the per-request cost on the driver stays at a few microseconds.
"""

from __future__ import annotations

import collections
import itertools
import logging
import pickle
import queue
import threading
import uuid
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from raypw.errors import ServiceNotRunningError, WorkerDiedError
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

__all__ = ["Client"]

logger = logging.getLogger("raypw")

Callback = Callable[[Promise[Any]], object]

# Most requests one submit() call carries: large enough to amortise a Ray call, small enough
# to keep each message a few MB and let the coordinator start on the first part early.
_SUBMIT_CHUNK = 8192
# The client sends the coordinator only about WINDOW_BATCHES batches' worth of requests
# ahead of the results (at least MIN_WINDOW): enough to keep every worker busy, while the rest
# waits here, where abort() is instant and memory is not held twice.
MIN_WINDOW = 1024
WINDOW_BATCHES = 16
# The client sends more once at most this share of the window is out: one submit() per
# half window instead of one per finished batch, while the coordinator still holds plenty.
_REFILL_SHARE = 0.5
# Seconds an abort() waits for the coordinator's confirmation before it gives up waiting.
_ABORT_TIMEOUT = 30.0
# Types whose values always pickle: queue_request skips the picklability check for them.
_ALWAYS_PICKLABLE = (str, bytes, int, float, bool, type(None))


class Client:
    """One program's connection to a Coordinator.

    Args:
        coordinator: The Coordinator's actor handle.
        key: Function mapping a request to its dedup key, or None to use the request.
        replace_coordinator: Called with the error when the coordinator died; returns a new,
            started coordinator, or raises if there is none.
    """

    def __init__(
        self,
        coordinator: Any,
        key: Callable[[Any], Hashable] | None = None,
        replace_coordinator: Callable[[BaseException], Any] | None = None,
    ) -> None:
        self._coordinator = coordinator
        self._replace_coordinator = replace_coordinator
        self._key = key
        self.client_id = uuid.uuid4().hex
        self._ids = itertools.count(1)
        self._by_key: dict[Hashable, Promise[Any]] = {}
        self._by_id: dict[int, Promise[Any]] = {}
        self._outbox: collections.deque[Promise[Any]] = collections.deque()
        self._taken_upto = 0  # ids up to this one have left the outbox
        self._sent = 0  # promises sent to the coordinator and not finished
        self._window = MIN_WINDOW
        self.deduplicated = 0  # requests that joined a pending equal one here
        self.settled = [0, 0, 0, 0]  # promises finished, by state (see raypw.promise)
        self._open = False  # taking requests
        self._stopped = False  # threads should end
        self._broken: BaseException | None = None
        self._outbox_ready = threading.Condition(STATE_LOCK)
        self._idle = threading.Condition(STATE_LOCK)
        self._send_lock = threading.Lock()
        self._callbacks: queue.SimpleQueue[tuple[Callback, Promise[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Registers with the coordinator and starts the client's threads."""
        import ray

        ray.get(self._coordinator.connect.remote(self.client_id))
        with STATE_LOCK:
            self._open = True
            self._stopped = False
        for name, target in (
            ("raypw-sender", self._send_loop),
            ("raypw-collector", self._collect_loop),
            ("raypw-callbacks", self._callback_loop),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
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
            if wait:
                self._idle.wait_for(lambda: not self._by_id, timeout)
            self._stopped = True
            self._outbox_ready.notify_all()
            connected = self._broken is None  # else the coordinator is gone
        if hand_over and connected:
            self._hand_over()
        notes = Notes()
        with STATE_LOCK:
            for promise in list(self._by_id.values()):
                self._forget(promise)
                settle(promise, ABORTED, None, notes)
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
        """Submits whatever is still in the outbox, past the window, and waits for it."""
        import ray

        with self._send_lock:  # the sender has stopped, or stops before its next submit
            with STATE_LOCK:
                taken = [p for p in self._outbox if p._state == PENDING]
                self._outbox.clear()
            try:
                refs = [
                    self._submit(taken[start : start + _SUBMIT_CHUNK])
                    for start in range(0, len(taken), _SUBMIT_CHUNK)
                ]
                ray.get(refs, timeout=30)
            except Exception:
                logger.warning("could not hand %d request(s) to the service", len(taken))

    def _submit(self, promises: list[Promise[Any]]) -> Any:
        """Sends requests to the coordinator; returns the submit's ref."""
        keys = None if self._key is None else [p._key for p in promises]
        return self._coordinator.submit.remote(
            self.client_id, [p._id for p in promises], [p.request for p in promises], keys
        )

    # -- queueing --------------------------------------------------------------------------

    def queue(self, requests: Iterable[Any], callback: Callback | None) -> list[Promise[Any]]:
        """Queues requests and returns one promise each (equal pending requests share one).

        Raises:
            TypeError: a request is unhashable (without a key function) or cannot be pickled;
                nothing of this call is queued then.
            ServiceNotRunningError: the client is not open.
        """
        keyed = [(request, self._key_of(request)) for request in requests]
        promises: list[Promise[Any]] = []
        with STATE_LOCK:
            if not self._open:
                if self._broken is not None:
                    raise ServiceNotRunningError(f"the service is not running: {self._broken}")
                raise ServiceNotRunningError(
                    "the service is not running: call start() first (or use it as a context "
                    "manager); after stop() it takes no more requests"
                )
            by_key = self._by_key
            wake = not self._outbox
            for request, key in keyed:
                promise = by_key.get(key)
                if promise is not None:
                    promise._shares += 1
                    self.deduplicated += 1
                else:
                    request_id = next(self._ids)
                    promise = Promise(request, self, key, request_id)
                    by_key[key] = promise
                    self._by_id[request_id] = promise
                    self._outbox.append(promise)
                if callback is not None:
                    if promise._callbacks is None:
                        promise._callbacks = [callback]
                    else:
                        promise._callbacks.append(callback)
                promises.append(promise)
            if wake and self._outbox:
                self._outbox_ready.notify()
        return promises

    def _key_of(self, request: Any) -> Hashable:
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
        if not isinstance(request, _ALWAYS_PICKLABLE):
            _check_picklable(request)
        return key

    # -- aborting --------------------------------------------------------------------------

    def abort(self, promise: Promise[Any]) -> bool:
        """Aborts a promise (see :meth:`raypw.Promise.abort`)."""
        import ray

        notes = Notes()
        with STATE_LOCK:
            if promise._state != PENDING:
                return False
            if promise._shares > 1:
                promise._shares -= 1
                return False
            sent = promise._id <= self._taken_upto
            self._forget(promise)
            settle(promise, ABORTED, None, notes)
        self._deliver(notes)
        if sent:
            with self._send_lock:  # a submit carrying it, if in progress, goes out first
                pass
            try:
                stopped = ray.get(
                    self._coordinator.abort.remote(self.client_id, [promise._id]),
                    timeout=_ABORT_TIMEOUT,
                )
                # 0: its worker had begun it (or it had just finished): it may still run.
                promise._began_before_abort = stopped == 0
            except Exception:
                logger.warning(
                    "the coordinator did not confirm abort of %r", promise, exc_info=True
                )
        return True

    def _forget(self, promise: Promise[Any]) -> None:
        """Drops a promise from the pending tables. Call with STATE_LOCK held."""
        del self._by_id[promise._id]
        if self._by_key.get(promise._key) is promise:
            del self._by_key[promise._key]
        if promise._id <= self._taken_upto:
            self._sent -= 1
            if self._outbox:
                self._outbox_ready.notify()
        if not self._by_id:
            self._idle.notify_all()

    @property
    def pending(self) -> int:
        """Promises not finished yet."""
        return len(self._by_id)

    def counts(self) -> dict[str, int]:
        """This client's promises by state, requests deduplicated here, and requests not yet
        handed to the coordinator."""
        with STATE_LOCK:
            return {
                "pending": len(self._by_id),
                "done": self.settled[DONE],
                "failed": self.settled[FAILED],
                "aborted": self.settled[ABORTED],
                "deduplicated": self.deduplicated,
                "unsent": sum(1 for p in self._outbox if p._state == PENDING),
            }

    # -- threads ---------------------------------------------------------------------------

    def _send_loop(self) -> None:

        previous = None
        while True:
            with STATE_LOCK:
                while not self._stopped and (not self._outbox or not self._may_send()):
                    self._outbox_ready.wait()
                if self._stopped:
                    return
            with self._send_lock:
                with STATE_LOCK:
                    outbox = self._outbox
                    room = min(_SUBMIT_CHUNK, self._window - self._sent)
                    taken: list[Promise[Any]] = []
                    while outbox and len(taken) < room:
                        promise = outbox.popleft()
                        self._taken_upto = promise._id
                        if promise._state == PENDING:  # aborted ones are dropped here
                            taken.append(promise)
                    self._sent += len(taken)
                if not taken:
                    continue
                try:
                    ref = self._submit(taken)
                except Exception as exc:
                    self._fail([p._id for p in taken], exc)
                    continue
            if previous is not None:  # at most two submits in flight: bounded memory
                self._wait_submitted(previous)
            previous = ref

    def _may_send(self) -> bool:
        return self._sent <= self._window * _REFILL_SHARE

    def _wait_submitted(self, ref: Any) -> None:
        import ray

        try:
            ray.get(ref)
        except Exception as exc:
            logger.error("submitting requests to the coordinator failed: %s", exc)

    def _collect_loop(self) -> None:
        import ray

        coordinator = self._coordinator
        poll = coordinator.poll.remote(self.client_id)
        in_flight: dict[Any, list[tuple[list[int], list[int]]]] = {}
        while True:
            refs = [poll, *in_flight]
            ready, _ = ray.wait(refs, num_returns=1, timeout=1.0)
            if not ready:
                if self._stopped:
                    return
                continue
            ref = ready[0]
            if ref == poll:
                try:
                    news = ray.get(poll)
                except Exception as exc:
                    if self._stopped or not self._recover(exc):
                        return
                    in_flight.clear()  # refs owned by the dead coordinator: resubmitted
                    coordinator = self._coordinator
                    poll = coordinator.poll.remote(self.client_id)
                    continue
                if self._stopped and not news:
                    return
                forgotten = False
                for entry in news:
                    if entry[0] == "forgotten":  # silent too long (this process froze)
                        forgotten = True
                        continue
                    if isinstance(entry[0], str):  # ("closed", reason): stopped on purpose
                        self._close_from_service(entry[1])
                        return
                    if entry[0] is None:
                        self._fail(entry[1], entry[2])
                    else:
                        in_flight.setdefault(entry[0], []).append((entry[1], entry[2]))
                        # Grows with the batches and never shrinks: the smaller batches at
                        # the end of a run must not starve the next one.
                        self._window = max(self._window, WINDOW_BATCHES * len(entry[2]))
                if forgotten and not self._stopped:
                    self._rejoin()
                poll = coordinator.poll.remote(self.client_id)
            else:
                parts = in_flight.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception:
                    # Cancelled (all its requests aborted) or its worker died: the
                    # coordinator reports lost requests through poll.
                    logger.debug("batch ref failed", exc_info=True)
                    continue
                self._settle_batch(outcome, parts)

    def _close_from_service(self, reason: str) -> None:
        """The service was stopped (by another program): abort what is pending here."""
        notes = Notes()
        with STATE_LOCK:
            self._open = False
            self._broken = ServiceNotRunningError(reason)
            for promise in list(self._by_id.values()):
                self._forget(promise)
                settle(promise, ABORTED, None, notes)
            self._outbox.clear()
        self._deliver(notes)
        logger.warning("raypw: %s; pending requests were aborted", reason)

    def _recover(self, cause: BaseException) -> bool:
        """Replaces a dead coordinator and hands it back every pending request.

        Returns:
            False if there is no way back: every pending promise has then failed with
            :class:`~raypw.WorkerDiedError`, and the client takes no more requests.
        """
        import ray

        logger.warning("the raypw coordinator died (%s); replacing it", type(cause).__name__)
        replace = self._replace_coordinator
        try:
            if replace is None:
                raise cause
            with self._send_lock:  # no submit may go to the old one meanwhile
                self._coordinator = replace(cause)
                ray.get(self._coordinator.connect.remote(self.client_id))
                resent = self._hand_back()
        except Exception as exc:
            error = WorkerDiedError(
                f"the service's coordinator died and could not be replaced: {exc}"
            )
            with STATE_LOCK:
                self._open = False
                self._broken = error
            self._fail(None, error)
            return False
        logger.warning("raypw coordinator replaced; %d request(s) handed back", resent)
        return True

    def _rejoin(self) -> None:
        """The coordinator forgot this client after it was silent (a frozen process, a laptop
        asleep) and withdrew its requests: register again and hand them all back."""
        import ray

        with self._send_lock:
            ray.get(self._coordinator.connect.remote(self.client_id))
            resent = self._hand_back()
        logger.warning(
            "the raypw coordinator had forgotten this program; %d request(s) sent again", resent
        )

    def _hand_back(self) -> int:
        """Puts every sent, unfinished request back at the front of the outbox. Call with the
        send lock held; returns how many."""
        with STATE_LOCK:
            resend = sorted(
                (p for p in self._by_id.values() if p._id <= self._taken_upto),
                key=lambda p: p._id,
            )
            self._outbox.extendleft(reversed(resend))
            if resend:
                self._taken_upto = resend[0]._id - 1
            self._sent = 0
            self._outbox_ready.notify()
        return len(resend)

    def _settle_batch(self, outcome: Any, parts: list[tuple[list[int], list[int]]]) -> None:
        results, errors, skipped = outcome
        # Skipped requests were aborted, or moved to another batch whose news comes by poll.
        moved = set(skipped) if skipped else ()
        notes = Notes()
        by_id = self._by_id
        by_key = self._by_key
        with STATE_LOCK:
            for positions, ids in parts:
                for position, request_id in zip(positions, ids, strict=True):
                    if moved and position in moved:
                        continue
                    promise = by_id.pop(request_id, None)
                    if promise is None:
                        continue  # aborted meanwhile
                    self._sent -= 1
                    if by_key.get(promise._key) is promise:
                        del by_key[promise._key]
                    if errors is not None and position in errors:
                        settle(promise, FAILED, errors[position], notes)
                    else:
                        settle(promise, DONE, results[position], notes)
            if not by_id:
                self._idle.notify_all()
            if self._outbox and self._may_send():
                self._outbox_ready.notify()
        self._deliver(notes)

    def _fail(self, ids: list[int] | None, error: BaseException) -> None:
        """Fails the given pending promises (all of them for None)."""
        notes = Notes()
        with STATE_LOCK:
            chosen = list(self._by_id) if ids is None else ids
            for request_id in chosen:
                promise = self._by_id.get(request_id)
                if promise is not None:
                    self._forget(promise)
                    settle(promise, FAILED, error, notes)
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


def _check_picklable(request: Any) -> None:
    try:
        pickle.dumps(request, protocol=5)
    except Exception:
        from ray import cloudpickle

        try:
            cloudpickle.dumps(request)  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise TypeError(
                f"the request {request!r:.80} cannot be pickled ({exc}); requests travel to "
                "worker processes, so they must be picklable"
            ) from None
