"""Waiting for many promises: :class:`PromiseSet`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from raypw.errors import ResultTimeoutError
from raypw.progress import Progress
from raypw.promise import (
    _STATE_NAMES,
    ABORTED,
    PENDING,
    STATE_LOCK,
    Promise,
    _Listener,
    check_wait_timeout,
)

__all__ = ["PromiseSet"]

ResultT = TypeVar("ResultT")
WaiterT = TypeVar("WaiterT", "_Waiter", "_AsyncWaiter")
logger = logging.getLogger("raypw")


class _Waiter:
    """Collects the promises of one ``select()`` as they finish, in order."""

    __slots__ = ("_arrived", "_cond")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._arrived: deque[Promise[Any]] = deque()

    def add(self, promises: list[Promise[Any]]) -> None:
        with self._cond:
            self._arrived.extend(promises)
            self._cond.notify()

    def take(self, timeout: float | None) -> list[Promise[Any]]:
        with self._cond:
            if not self._arrived:
                self._cond.wait(timeout)
            taken = list(self._arrived)
            self._arrived.clear()
            return taken


class _AsyncWaiter:
    """Collects the promises of one ``aselect()`` as they finish, waking its event loop."""

    __slots__ = ("_arrived", "_event", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()
        self._arrived: deque[Promise[Any]] = deque()

    def add(self, promises: list[Promise[Any]]) -> None:  # any thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._arrive, promises)

    def _arrive(self, promises: list[Promise[Any]]) -> None:
        self._arrived.extend(promises)
        self._event.set()

    async def take(self, timeout: float | None) -> list[Promise[Any]]:
        if not self._arrived:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()
        taken = list(self._arrived)
        self._arrived.clear()
        return taken


class PromiseSet(Generic[ResultT]):
    """A set of promises to wait for together, in the order their results arrive.

    The same promise given twice (deduplication hands out one promise for equal requests) is
    kept once. Promises of several services may be mixed.

    Example:
        >>> ps = PromiseSet([svc.queue_request(r) for r in ["a", "b"]])  # doctest: +SKIP
        >>> for promise in ps.select():  # doctest: +SKIP
        ...     print(promise.get_result())

    Raises:
        TypeError: ``promises`` is not an iterable of raypw promises.
    """

    def __init__(self, promises: Iterable[Promise[ResultT]]) -> None:
        if isinstance(promises, Promise):
            raise TypeError("promises must be an iterable of promises, got one promise: wrap it")
        try:
            self._promises: list[Promise[ResultT]] = list(dict.fromkeys(promises))
        except TypeError:
            raise TypeError(
                f"promises must be an iterable of raypw promises, got {promises!r:.80}"
            ) from None
        kinds = set(map(type, self._promises))  # no Python loop per promise
        if not kinds <= {Promise}:
            for promise in self._promises:
                if not isinstance(promise, Promise):
                    raise TypeError(
                        "promises must hold raypw promises (what queue_request returns), got "
                        f"{type(promise).__name__} {promise!r:.80}"
                    )

    def __len__(self) -> int:
        return len(self._promises)

    def __iter__(self) -> Iterator[Promise[ResultT]]:
        return iter(self._promises)

    def select(
        self, timeout: float | None = None, progress: bool = False
    ) -> Iterator[Promise[ResultT]]:
        """Yields each promise once, as it finishes: completion order.

        Promises already finished when the iteration starts come first, in the order they
        finished. Aborted and failed promises are yielded too (check ``is_aborted()``, or let
        ``get_result()`` raise). Under the hood, the service waits on its few in-flight batch
        refs with ``ray.wait(num_returns=1)`` and hands each finished promise on; a select
        never polls.

        Args:
            timeout: Seconds for the whole iteration; ``None`` waits as long as it takes.
            progress: Show a progress bar (``tqdm.auto``: a widget in Jupyter, a line in a
                terminal) with the done, failed and aborted counts.

        Yields:
            Finished promises.

        Raises:
            ResultTimeoutError: (a ``TimeoutError``) time ran out; the message says how many
                promises were unfinished. They keep running.
            TypeError, ValueError: ``timeout`` is not a number of seconds (raised by the
                call, before any iteration; below 0: no wait).
        """
        if timeout is not None:
            timeout = check_wait_timeout(timeout)  # at the call, not at the first next()
        return self._select(timeout, progress)

    def _select(self, timeout: float | None, progress: bool) -> Iterator[Promise[ResultT]]:
        selection = _Selection(self, _Waiter(), timeout, progress)
        bar = selection.bar
        try:
            for promise in selection.finished:
                if bar is not None:
                    bar.advance(promise)
                yield promise
            while selection.remaining:
                for promise in selection.arrived(selection.waiter.take(selection.wait())):
                    if bar is not None:
                        bar.advance(promise)
                    yield promise
        finally:
            selection.close()

    def aselect(
        self, timeout: float | None = None, progress: bool = False
    ) -> AsyncIterator[Promise[ResultT]]:
        """:meth:`select` for asyncio: ``async for promise in promise_set.aselect():``.

        Waits without blocking the event loop (a plain ``asyncio.run`` program or Jupyter's
        running loop). ``async for promise in promise_set`` is the same without arguments.
        """
        if timeout is not None:
            timeout = check_wait_timeout(timeout)
        return self._aselect(timeout, progress)

    async def _aselect(
        self, timeout: float | None, progress: bool
    ) -> AsyncIterator[Promise[ResultT]]:
        selection = _Selection(self, _AsyncWaiter(asyncio.get_running_loop()), timeout, progress)
        bar = selection.bar
        try:
            for promise in selection.finished:
                if bar is not None:
                    bar.advance(promise)
                yield promise
            while selection.remaining:
                for promise in selection.arrived(await selection.waiter.take(selection.wait())):
                    if bar is not None:
                        bar.advance(promise)
                    yield promise
        finally:
            selection.close()

    def __aiter__(self) -> AsyncIterator[Promise[ResultT]]:
        return self.aselect()

    def _listen(self, waiter: _Listener) -> tuple[list[Promise[ResultT]], list[Promise[ResultT]]]:
        """Registers ``waiter`` with the pending promises; returns the finished ones (in the
        order they finished) and the pending ones."""
        with STATE_LOCK:
            finished = [p for p in self._promises if p._state != PENDING]
            pending = [p for p in self._promises if p._state == PENDING]
            for promise in pending:
                promise._add_waiter(waiter)
        finished.sort(key=lambda p: p._seq)
        return finished, pending

    @staticmethod
    def _unlisten(pending: list[Promise[ResultT]], waiter: _Listener) -> None:
        with STATE_LOCK:
            for promise in pending:
                promise._unlisten(waiter)

    def wait_for_all(
        self,
        timeout: float | None = None,
        completed_callback: Callable[[Promise[ResultT]], object] | None = None,
        ignore_aborted: bool = False,
        progress: bool = False,
    ) -> None:
        """Waits until every promise is finished, calling back for each in completion order.

        ``completed_callback`` runs in the caller's own thread, one promise at a time, so it
        may touch shared state without a lock. An exception it raises is logged and the wait
        goes on. Interrupting the wait (Ctrl-C, a notebook's stop button) leaves the
        promises and the service as they were.

        Args:
            timeout: Seconds for the whole wait; ``None`` waits as long as it takes.
            completed_callback: Called with each finished promise.
            ignore_aborted: If True, aborted promises are not passed to the callback.
            progress: Show a progress bar, as :meth:`select` does.

        Raises:
            ResultTimeoutError: (a ``TimeoutError``) time ran out; says how many are unfinished.
            TypeError: ``completed_callback`` is not callable; or, with ValueError, ``timeout``
                is not a number of seconds.
        """
        if completed_callback is not None and not callable(completed_callback):
            raise TypeError(
                "completed_callback must be a function taking the promise, or None; "
                f"got {completed_callback!r:.80}"
            )
        for promise in self.select(timeout, progress=progress):
            if completed_callback is None or (ignore_aborted and promise._state == ABORTED):
                continue
            try:
                completed_callback(promise)
            except Exception:
                logger.exception("completed_callback %r raised for %r", completed_callback, promise)

    def counts(self) -> dict[str, int]:
        """How many of the promises are pending, done, failed and aborted now."""
        counts = dict.fromkeys(_STATE_NAMES.values(), 0)
        for promise in self._promises:
            counts[_STATE_NAMES[promise._state]] += 1
        return counts

    def __repr__(self) -> str:
        counts = self.counts()
        finished = len(self._promises) - counts.pop("pending")
        detail = ", ".join(f"{n} {state}" for state, n in counts.items())
        return f"<PromiseSet {finished} of {len(self._promises)} finished: {detail}>"

    def _repr_html_(self) -> str:
        counts = self.counts()
        total = len(self._promises)
        finished = total - counts["pending"]
        detail = ", ".join(f"{n:,} {state}" for state, n in counts.items())
        return (
            f"<div><code>PromiseSet</code> {finished:,} of {total:,} finished "
            f"<progress value='{finished}' max='{max(total, 1)}'></progress> {detail}</div>"
        )


class _Selection(Generic[WaiterT]):
    """The bookkeeping of one ``select()`` or ``aselect()``: the waiter registered with the
    pending promises, how many are left, the deadline and the progress bar."""

    def __init__(
        self, promises: PromiseSet[Any], waiter: WaiterT, timeout: float | None, progress: bool
    ) -> None:
        self.waiter: WaiterT = waiter
        self.finished, self._pending = promises._listen(waiter)
        self.remaining = len(self._pending)
        self._total = len(promises)
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self.bar = Progress(self._total) if progress else None

    def wait(self) -> float | None:
        """Seconds left to wait (None: no limit).

        Raises:
            ResultTimeoutError: none are left.
        """
        if self._deadline is None:
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise ResultTimeoutError(f"{self.remaining} (of {self._total}) promises unfinished")
        return left

    def arrived(self, promises: list[Promise[Any]]) -> list[Promise[Any]]:
        """Counts promises that arrived; returns them."""
        self.remaining -= len(promises)
        return promises

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.remaining:
            PromiseSet._unlisten(self._pending, self.waiter)
