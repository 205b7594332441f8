"""Waiting for many promises: :class:`PromiseSet`."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from raypw.errors import ResultTimeoutError
from raypw.promise import ABORTED, PENDING, STATE_LOCK, Promise

__all__ = ["PromiseSet"]

ResultT = TypeVar("ResultT")
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


class PromiseSet(Generic[ResultT]):
    """A set of promises to wait for together, in the order their results arrive.

    The same promise given twice (deduplication hands out one promise for equal requests) is
    kept once. Promises of several services may be mixed.

    Example:
        >>> ps = PromiseSet([svc.queue_request(r) for r in ["a", "b"]])  # doctest: +SKIP
        >>> for promise in ps.select():  # doctest: +SKIP
        ...     print(promise.get_result())
    """

    def __init__(self, promises: Iterable[Promise[ResultT]]) -> None:
        self._promises: list[Promise[ResultT]] = list(dict.fromkeys(promises))

    def __len__(self) -> int:
        return len(self._promises)

    def __iter__(self) -> Iterator[Promise[ResultT]]:
        return iter(self._promises)

    def select(self, timeout: float | None = None) -> Iterator[Promise[ResultT]]:
        """Yields each promise once, as it finishes: completion order.

        Promises already finished when the iteration starts come first, in the order they
        finished. Aborted and failed promises are yielded too (check ``is_aborted()``, or let
        ``get_result()`` raise). Under the hood, the service waits on its few in-flight batch
        refs with ``ray.wait(num_returns=1)`` and hands each finished promise on; a select
        never polls.

        Args:
            timeout: Seconds for the whole iteration; ``None`` waits as long as it takes.

        Yields:
            Finished promises.

        Raises:
            ResultTimeoutError: (a ``TimeoutError``) time ran out; the message says how many
                promises were unfinished. They keep running.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = _Waiter()
        with STATE_LOCK:
            finished = [p for p in self._promises if p._state != PENDING]
            pending = [p for p in self._promises if p._state == PENDING]
            for promise in pending:
                if promise._waiters is None:
                    promise._waiters = [waiter]
                else:
                    promise._waiters.append(waiter)
        finished.sort(key=lambda p: p._seq)
        total = len(self._promises)
        remaining = len(pending)
        try:
            finished.reverse()
            while finished:
                yield finished.pop()
            while remaining:
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    raise ResultTimeoutError(f"{remaining} (of {total}) promises unfinished")
                arrived = waiter.take(wait)
                remaining -= len(arrived)
                arrived.reverse()
                while arrived:
                    yield arrived.pop()
        finally:
            if remaining:
                with STATE_LOCK:
                    for promise in pending:
                        if promise._waiters is not None and waiter in promise._waiters:
                            promise._waiters.remove(waiter)

    def wait_for_all(
        self,
        timeout: float | None = None,
        completed_callback: Callable[[Promise[ResultT]], object] | None = None,
        ignore_aborted: bool = False,
    ) -> None:
        """Waits until every promise is finished, calling back for each in completion order.

        ``completed_callback`` runs in the caller's own thread, one promise at a time, so it
        may touch shared state without a lock. An exception it raises is logged and the wait
        goes on.

        Args:
            timeout: Seconds for the whole wait; ``None`` waits as long as it takes.
            completed_callback: Called with each finished promise.
            ignore_aborted: If True, aborted promises are not passed to the callback.

        Raises:
            ResultTimeoutError: (a ``TimeoutError``) time ran out; says how many are unfinished.
        """
        for promise in self.select(timeout):
            if completed_callback is None or (ignore_aborted and promise._state == ABORTED):
                continue
            try:
                completed_callback(promise)
            except Exception:
                logger.exception("completed_callback %r raised for %r", completed_callback, promise)

    def __repr__(self) -> str:
        done = sum(1 for p in self._promises if p._state != PENDING)
        return f"<PromiseSet {done} of {len(self._promises)} finished>"
