"""parallel-workers' promise and promise set, over raypw's (see :mod:`raypw.compat`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import raypw
from raypw.errors import PromiseAbortedError, ResultTimeoutError

if TYPE_CHECKING:
    from raypw.compat.service import ProcessorService

__all__ = ["Callback", "Promise", "PromiseSet"]

logger = logging.getLogger("raypw.compat")

Callback = Callable[["Promise"], object]


class Promise:
    """The promise of one request, with parallel-workers' methods.

    Equal requests queued while one is pending share one promise. Any attribute may be set
    on it (``promise.tag = ...``). Safe to use from any thread.
    """

    def __init__(self, request: Any, service: ProcessorService | None = None) -> None:
        self._request = request
        self._service = service  # while it waits for start()
        self._promise: raypw.Promise[Any] | None = None  # its engine promise, once queued
        self._bound = threading.Event()
        self._failure_logged = False

    def _bind(self, promise: raypw.Promise[Any]) -> None:
        self._promise = promise
        self._service = None
        self._bound.set()

    def get_result(self, timeout: float | None = None) -> Any:
        """Blocks until the request is processed and returns its result.

        Args:
            timeout: Seconds to wait at most (an addition: parallel-workers always waited).

        Returns:
            What ``process()`` returned; None if the request was aborted, ``process()``
            raised, or its worker was lost (the last two are logged).

        Raises:
            ResultTimeoutError: (a ``TimeoutError``) only with ``timeout``, when it ran out.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._bound.wait(timeout):
            raise ResultTimeoutError(f"{self._request!r:.60} was not started within {timeout} s")
        promise = self._promise
        assert promise is not None
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return promise.get_result(left)
        except (PromiseAbortedError, ResultTimeoutError) as exc:
            if isinstance(exc, ResultTimeoutError):
                raise
            return None
        except Exception as exc:
            if not self._failure_logged:
                self._failure_logged = True
                logger.error("%.80r failed, so its result is None: %s", self._request, exc)
            return None

    def peak_result(self) -> bool:
        """Returns True once the request is finished (done, failed or aborted)."""
        promise = self._promise
        return promise is not None and promise.done()

    def get_request(self) -> Any:
        """Returns the request this promise stands for."""
        return self._request

    def is_request_aborted(self) -> bool:
        """Returns True if the request was aborted."""
        promise = self._promise
        return promise is not None and promise.is_aborted()

    is_aborted = is_request_aborted

    def abort(self) -> None:
        """Removes the request if no worker has started it; a running one finishes.

        Blocks for a round trip to the service (and to the worker holding the request). A
        promise handed out k times by deduplication is aborted by its k-th call.
        """
        service = self._service
        if service is not None and service._withdraw(self):
            return
        promise = self._promise
        if promise is not None:
            promise._abort_if_unstarted()

    def __repr__(self) -> str:
        promise = self._promise
        if promise is None:
            return f"<compat.Promise waiting for start() request={self._request!r:.60}>"
        return f"<compat.{repr(promise)[1:]}"


class PromiseSet:
    """Promises to wait for together, in the order their results arrive.

    A promise the list holds several times (equal requests share one) is yielded as many
    times. The list given is not changed.
    """

    def __init__(self, promises_list: Iterable[Promise]) -> None:
        self._promises = list(promises_list)
        for promise in self._promises:
            if not isinstance(promise, Promise):
                raise TypeError(
                    f"promises_list must hold raypw.compat promises, got {promise!r:.80}"
                )

    def select(self, timeout: float | None = None) -> Iterator[Promise]:
        """Yields each promise as it finishes (completion order), once per time it is listed.

        Args:
            timeout: Seconds for the whole iteration; when they run out the iteration ends,
                without an error, leaving the unfinished promises out.

        Yields:
            Finished promises, aborted ones included.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for promise in self._promises:  # queued while stopped: wait for start()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not promise._bound.wait(left):
                return
        times: dict[int, int] = {}
        by_inner: dict[int, Promise] = {}
        for promise in self._promises:
            assert promise._promise is not None
            times[id(promise._promise)] = times.get(id(promise._promise), 0) + 1
            by_inner[id(promise._promise)] = promise
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        inner = raypw.PromiseSet(p._promise for p in by_inner.values() if p._promise is not None)
        try:
            for finished in inner.select(left):
                promise = by_inner[id(finished)]
                for _ in range(times[id(finished)]):
                    yield promise
        except ResultTimeoutError:
            return

    def wait_for_all(
        self,
        timeout: float | None = None,
        completed_callback: Callback | None = None,
        ignore_aborted: bool = False,
    ) -> None:
        """Waits for every promise, calling ``completed_callback`` for each in this thread.

        Args:
            timeout: Seconds to wait at most; then it returns.
            completed_callback: Called with each finished promise, in completion order. An
                exception it raises ends the wait and reaches the caller.
            ignore_aborted: Leave aborted promises out of the callback.
        """
        for promise in self.select(timeout):
            if completed_callback is None or (ignore_aborted and promise.is_request_aborted()):
                continue
            completed_callback(promise)
