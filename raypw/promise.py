"""The promise of one request's result.

A :class:`Promise` is a small record that the service fills when the batch carrying its
request comes back. All promise state changes under one lock (:data:`STATE_LOCK`), taken once
per batch rather than once per promise, so a million promises stay cheap. Blocking waits use
an event created only for a promise someone actually blocks on.

States: ``PENDING`` -> ``DONE`` | ``FAILED`` | ``ABORTED``; the last three are final.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import html
import math
import numbers
import threading
from collections.abc import Callable, Generator
from typing import Any, Generic, Protocol, TypeVar

from raypw.errors import PromiseAbortedError, ResultTimeoutError

__all__ = ["Promise"]

ResultT = TypeVar("ResultT")

#: Guards the state of every promise and the client tables that point at promises.
STATE_LOCK = threading.RLock()

PENDING = 0
DONE = 1
FAILED = 2
ABORTED = 3
_STATE_NAMES = {PENDING: "pending", DONE: "done", FAILED: "failed", ABORTED: "aborted"}
_STATE_COLORS = {PENDING: "#999", DONE: "#2a2", FAILED: "#c22", ABORTED: "#c80"}

_sequence = 0  # completion counter: orders promises that finished before a select() began


class _Listener(Protocol):
    """Told, outside the lock, which of the promises it listens to have finished."""

    def add(self, promises: list[Promise[Any]]) -> None: ...


class _Owner(Protocol):
    """What a promise needs from the service that made it (see ``raypw.client``)."""

    def abort(self, promise: Promise[Any], if_unstarted: bool = False) -> bool: ...


class Promise(Generic[ResultT]):
    """The future result of a request queued with ``ProcessorService.queue_request``.

    Equal requests queued while one is pending share one promise. A promise is safe to use
    from any thread.

    Attributes:
        request: The request this promise stands for.
    """

    __slots__ = (
        "__weakref__",
        "_began_before_abort",
        "_callbacks",
        "_carried",
        "_deadline",
        "_event",
        "_id",
        "_key",
        "_owner",
        "_priority",
        "_sent_in",
        "_seq",
        "_shares",
        "_size",
        "_state",
        "_timeout",
        "_value",
        "_waiters",
        "request",
    )

    def __init__(self, request: Any, owner: _Owner | None = None, key: Any = None, id_: int = 0):
        self.request = request
        self._owner = owner
        self._key = key
        self._id = id_
        self._state = PENDING
        self._value: Any = None
        self._seq = 0
        self._shares = 1
        self._event: threading.Event | None = None
        # Who waits: None, one listener (the common case: no list per promise), or a list.
        self._waiters: _Listener | list[_Listener] | None = None
        self._callbacks: list[Callable[[Promise[Any]], object]] | None = None
        self._began_before_abort = False  # aborted after its worker had begun it
        self._carried: Any = None  # the request as it travels, until it is sent
        self._size = 0  # its size in bytes, counted while it is in flight
        self._timeout: float | None = None  # seconds it was given to finish, if any
        self._deadline = 0.0  # with a timeout: when it ends, on time.monotonic()
        self._priority = 0  # higher runs first
        self._sent_in = 0  # the number of the submit that carried it; 0: not sent

    def get_result(self, timeout: float | None = None) -> ResultT:
        """Blocks until the request is processed and returns its result.

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            What the processor's ``process()`` returned for this request.

        Raises:
            ResultTimeoutError: (a ``TimeoutError``) the result did not come in time; the
                request keeps running and a later call can still get it.
            PromiseAbortedError: the promise was aborted.
            WorkerDiedError: the worker or the service died before the request finished.
            Exception: whatever ``process()`` raised, as the same class, with the remote
                traceback in its message.
            TypeError, ValueError: ``timeout`` is not a number of seconds (below 0: no wait).
        """
        if timeout is not None:
            timeout = check_wait_timeout(timeout)
        if self._state == PENDING:
            with STATE_LOCK:
                event = self._event
                if self._state == PENDING and event is None:
                    event = self._event = threading.Event()
            if event is not None and not event.wait(timeout):
                raise ResultTimeoutError(
                    f"the result of {_short(self.request)} did not come within {timeout} s"
                )
        return self._outcome()

    def result(self, timeout: float | None = None) -> ResultT:
        """Same as :meth:`get_result`, under the ``concurrent.futures`` name."""
        return self.get_result(timeout)

    def abort(self) -> bool:
        """Aborts the request unless it is finished.

        A request that has not started is never processed. One that is running is cancelled
        with ``ray.cancel`` (Ray sets ``is_canceled()`` for it; it cannot stop Python code
        that is running) and its result is dropped. Either way the promise is aborted at once:
        ``get_result()`` raises :class:`~raypw.PromiseAbortedError`.

        A promise handed out k times by deduplication is aborted by its k-th ``abort()``; the
        earlier calls only withdraw one interest each and return False.

        Returns:
            True if this call aborted the promise; False if it was already finished (done,
            failed or aborted) or other callers still wait for it.
        """
        owner = self._owner
        if owner is None:
            return self._abort_locally()
        return owner.abort(self)

    def _abort_if_unstarted(self) -> bool:
        """Aborts the request only if no worker has begun it (``raypw.compat``'s abort).

        Blocks for a round trip to the coordinator, and to the worker holding the request if
        it was sent to one. A request that had started stays pending and gets its outcome.

        Returns:
            True if this call aborted the promise.
        """
        owner = self._owner
        if owner is None:
            return self._abort_locally()
        return owner.abort(self, if_unstarted=True)

    def _abort_locally(self) -> bool:
        notes = Notes()
        with STATE_LOCK:
            if self._state != PENDING:
                return False
            settle(self, ABORTED, None, notes)
        notes.notify()
        return True

    def is_aborted(self) -> bool:
        """Returns True if the promise was aborted."""
        return self._state == ABORTED

    def done(self) -> bool:
        """Returns True if the promise is finished: done, failed or aborted."""
        return self._state != PENDING

    def future(self) -> concurrent.futures.Future[ResultT]:
        """Returns a ``concurrent.futures.Future`` that finishes with this promise.

        For code built on the standard library (``concurrent.futures.wait``, ``as_completed``,
        ``asyncio.wrap_future``). An aborted promise shows as a cancelled future; the future's
        ``cancel()`` aborts the request (see :meth:`abort`) and returns whether it did.

        The future finishes, and its done-callbacks run, on the service's callback thread (the
        one running ``completed_callback``), so a callback that blocks delays only other
        callbacks, never results.
        """
        future: _PromiseFuture[ResultT] = _PromiseFuture(self)
        with STATE_LOCK:
            pending = self._state == PENDING
            if pending and self._owner is None:  # no service: whoever settles it mirrors it
                self._add_waiter(future)
            elif pending:
                # Mirrored on the service's callback thread: the future's done-callbacks are
                # user code and must not hold up the thread that delivers results.
                self._add_callback(future.completed)
        if not pending:
            future.mirror()
        return future

    def __await__(self) -> Generator[Any, None, ResultT]:
        """``await promise`` waits without blocking the event loop and returns the result (or
        raises as :meth:`get_result` does). Cancelling the awaiting task does not abort the
        request: other holders may wait for it; call :meth:`abort` for that."""
        return self._wait_async().__await__()

    async def _wait_async(self) -> ResultT:
        if self._state != PENDING:
            return self._outcome()
        wake = _LoopWaker(asyncio.get_running_loop())
        if self._listen(wake):
            try:
                await wake.event.wait()
            finally:
                self._unlisten(wake)
        return self._outcome()

    def _listen(self, listener: _Listener) -> bool:
        """Adds a listener; False (and not added) if the promise is finished already."""
        with STATE_LOCK:
            if self._state != PENDING:
                return False
            self._add_waiter(listener)
            return True

    def _add_waiter(self, listener: _Listener) -> None:
        """Adds a listener to a pending promise. Call with :data:`STATE_LOCK` held."""
        waiters = self._waiters
        if waiters is None:
            self._waiters = listener
        elif isinstance(waiters, list):
            waiters.append(listener)
        else:
            self._waiters = [waiters, listener]

    def _add_callback(self, callback: Callable[[Promise[Any]], object]) -> None:
        """Adds a completed callback to a pending promise. Call with :data:`STATE_LOCK` held."""
        if self._callbacks is None:
            self._callbacks = [callback]
        else:
            self._callbacks.append(callback)

    def _unlisten(self, listener: _Listener) -> None:
        with STATE_LOCK:
            waiters = self._waiters
            if waiters is listener:
                self._waiters = None
            elif isinstance(waiters, list) and listener in waiters:
                waiters.remove(listener)

    def _outcome(self) -> ResultT:
        state = self._state
        if state == DONE:
            return self._value  # type: ignore[no-any-return]
        if state == FAILED:
            raise _raisable(self._value)
        if state == ABORTED:
            why = f": {self._value}" if self._value else ""  # the reason, when not abort()
            raise PromiseAbortedError(f"{_short(self.request)} was aborted{why}", self.request)
        raise AssertionError("a pending promise has no outcome")  # pragma: no cover

    def __repr__(self) -> str:
        return f"<Promise {self._describe()}>"

    def _repr_html_(self) -> str:
        color = _STATE_COLORS[self._state]
        return (
            f"<span style='color:{color}'>&#9679;</span> "
            f"<code>Promise {html.escape(self._describe())}</code>"
        )

    def _describe(self) -> str:
        state = self._state
        text = f"{_STATE_NAMES[state]} request={_short(self.request)}"
        if state == DONE:
            text += f" result={_short(self._value)}"
        elif state == FAILED:
            text += f" error={type(_raisable(self._value)).__name__}"
        return text


class _PromiseFuture(concurrent.futures.Future[ResultT]):
    """The ``concurrent.futures.Future`` view of a promise (see :meth:`Promise.future`)."""

    def __init__(self, promise: Promise[ResultT]) -> None:
        super().__init__()
        self._promise = promise
        self._mirrored = False  # under STATE_LOCK

    def add(self, promises: list[Promise[Any]]) -> None:
        self.mirror()

    def completed(self, promise: Promise[Any]) -> None:
        self.mirror()

    def mirror(self) -> None:
        """Copies the finished promise's outcome into the future, once."""
        with STATE_LOCK:
            if self._mirrored:
                return
            self._mirrored = True
        promise = self._promise
        state = promise._state
        if state == DONE:
            self.set_result(promise._value)
        elif state == FAILED:
            self.set_exception(_raisable(promise._value))
        elif state == ABORTED:
            super().cancel()
            self.set_running_or_notify_cancel()  # wakes wait() and as_completed()

    def cancel(self) -> bool:
        """Aborts the request; True if the future is cancelled now."""
        if not self.done() and self._promise.abort():
            self.mirror()  # now, not when the callback thread gets to it
        return self.cancelled()


class _LoopWaker:
    """Wakes an asyncio task, from any thread, when its promises finish."""

    __slots__ = ("event", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.event = asyncio.Event()

    def add(self, promises: list[Promise[Any]]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self.loop.call_soon_threadsafe(self.event.set)


def check_wait_timeout(timeout: object) -> float:
    """Returns ``timeout`` as float seconds, or raises naming it unless it is a number. One
    below 0 waits not at all, as in ``concurrent.futures`` (a time left that ran out is not an
    error)."""
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):  # numpy's too
        raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r:.80}")
    seconds = float(timeout)
    if math.isnan(seconds):
        raise ValueError("timeout must be a number of seconds, got NaN")
    return seconds


def _raisable(error: BaseException) -> BaseException:
    """Turns a stored error into the exception to raise, as the user's own class if remote."""
    as_cause = getattr(error, "as_instanceof_cause", None)
    if as_cause is not None:
        raised: BaseException = as_cause()
        cause = getattr(error, "cause", None)
        if isinstance(cause, OSError) and raised is not error:
            # Ray's copy reads the cause's Python attributes, but not OSError's own fields.
            for field in _OS_ERROR_FIELDS:
                setattr(raised, field, getattr(cause, field))
        return raised
    return error


_OS_ERROR_FIELDS = ("errno", "strerror", "filename", "filename2")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Notes:
    """What settling promises under the lock owes to others once the lock is released."""

    __slots__ = ("callbacks", "events", "seq", "waiters")

    def __init__(self) -> None:
        # The finishing order of the promises settled with these notes (under one hold of the
        # lock, e.g. one chunk of outcomes): they share one number, so a million results
        # make no million int objects. 0: none settled yet.
        self.seq = 0
        self.events: list[threading.Event] = []
        self.waiters: dict[_Listener, list[Promise[Any]]] = {}
        self.callbacks: list[tuple[Callable[[Promise[Any]], object], Promise[Any]]] = []

    def notify(self) -> None:
        """Wakes blocked ``get_result`` calls and ``select`` loops (callbacks are left)."""
        for event in self.events:
            event.set()
        for waiter, promises in self.waiters.items():
            waiter.add(promises)


def settle(promise: Promise[Any], state: int, value: Any, notes: Notes) -> None:
    """Moves a pending promise to a final state. Call with :data:`STATE_LOCK` held."""
    global _sequence
    # The value goes in before the state: get_result(), await and done() read a finished
    # promise without the lock, and must never find it finished without its value.
    promise._value = value
    if not notes.seq:
        _sequence += 1
        notes.seq = _sequence
    promise._seq = notes.seq
    promise._state = state
    settled = getattr(promise._owner, "settled", None)
    if settled is not None:
        settled[state] += 1
    if promise._event is not None:
        notes.events.append(promise._event)
    waiters = promise._waiters
    if waiters is not None:
        for waiter in waiters if isinstance(waiters, list) else (waiters,):
            found = notes.waiters.get(waiter)
            if found is None:
                notes.waiters[waiter] = [promise]
            else:
                found.append(promise)
        promise._waiters = None
    if promise._callbacks is not None:
        notes.callbacks.extend((callback, promise) for callback in promise._callbacks)
        promise._callbacks = None
