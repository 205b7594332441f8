"""Errors raised by raypw.

The hierarchy keeps the standard library's bases, so ``except TimeoutError`` and
``except RuntimeError`` work as a user expects::

    RaypwError(Exception)
    ├── ServiceNotRunningError(RaypwError, RuntimeError)  queue_request() outside start..stop
    ├── ServiceStartError(RaypwError, RuntimeError)       start() could not bring workers up
    ├── ServiceNotFoundError(RaypwError, LookupError)     connect() to a name nobody runs
    ├── PromiseAbortedError(RaypwError)                   get_result() on an aborted promise
    ├── ResultTimeoutError(RaypwError, TimeoutError)      a wait ran out of time
    ├── RequestTimeoutError(RaypwError, TimeoutError)     a request's deadline passed
    ├── QueueFullError(RaypwError, queue.Full)            max_queued requests are pending
    ├── WorkerDiedError(RaypwError)                       the actor holding a request died
    ├── TransferError(RaypwError)                         a request or result could not travel
    └── RemoteError(RaypwError)                           process() raised an exception that
                                                          could not be rebuilt here

Exceptions raised by a processor's ``process()`` are not wrapped in these: ``get_result()``
re-raises them as the user's own class (an instance of both Ray's ``RayTaskError`` and the
original class) with the remote traceback in the message, the original's attributes (an
``OSError``'s ``errno``, ``strerror`` and ``filename`` too) and, as Ray makes it, the original
exception as its only ``args`` item; only an exception that cannot be
rebuilt in this process (its class needs other constructor arguments, or is not importable
here) arrives as :class:`RemoteError`, with its class name, text and traceback.
"""

from __future__ import annotations

import queue
from typing import Any

__all__ = [
    "PromiseAbortedError",
    "QueueFullError",
    "RaypwError",
    "RemoteError",
    "RequestTimeoutError",
    "ResultTimeoutError",
    "ServiceNotFoundError",
    "ServiceNotRunningError",
    "ServiceStartError",
    "TransferError",
    "WorkerDiedError",
]


class RaypwError(Exception):
    """Base class of every error raised by raypw itself."""


class ServiceNotRunningError(RaypwError, RuntimeError):
    """The service is not running: ``start()`` was not called yet, or ``stop()`` was."""


class ServiceStartError(RaypwError, RuntimeError):
    """``start()`` could not bring the coordinator or the processor workers up."""


class ServiceNotFoundError(RaypwError, LookupError):
    """``ProcessorService.connect(name)`` found no service of that name on the cluster."""


class PromiseAbortedError(RaypwError):
    """The promise was aborted, so it has no result.

    Attributes:
        request: The request whose promise was aborted.
    """

    def __init__(self, message: str, request: Any = None) -> None:
        super().__init__(message)
        self.request = request


class ResultTimeoutError(RaypwError, TimeoutError):
    """A wait ran out of time; the requests it waited for keep running."""


class RequestTimeoutError(RaypwError, TimeoutError):
    """A request did not finish by its deadline (``queue_request(..., timeout=)``).

    Unlike :class:`ResultTimeoutError`, this ends the promise: the request was not started,
    or, if it was running, it was cancelled (``ray.cancel``) and its worker killed and
    restarted if it did not return within the service's ``request_timeout_grace``. It is
    not retried.

    Attributes:
        request: The request.
        timeout: Its timeout in seconds.
        deadline: Its deadline, in seconds since the epoch (``time.time()``).
    """

    def __init__(
        self, message: str, request: Any = None, timeout: float = 0.0, deadline: float = 0.0
    ) -> None:
        super().__init__(message)
        self.request = request
        self.timeout = timeout
        self.deadline = deadline

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.request, self.timeout, self.deadline))


class QueueFullError(RaypwError, queue.Full):
    """The service's ``max_queued`` requests of this program are pending, and no room came:
    ``queue_request(..., block=False)``, or ``block_timeout`` ran out. Nothing of the call
    was queued.

    Attributes:
        max_queued: The service's limit.
    """

    def __init__(self, message: str, max_queued: int = 0) -> None:
        super().__init__(message)
        self.max_queued = max_queued

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.max_queued))


class WorkerDiedError(RaypwError):
    """The actor that held a request died, and the request could not be finished.

    A request whose worker dies is dispatched again on a restarted worker, up to the
    service's ``max_retries``; this error means those attempts are spent (a request that
    kills its worker every time), or that no worker or coordinator is left to run it.

    Attributes:
        request: The request that was lost.
        attempts: How many times it was dispatched to a worker that then died.
    """

    def __init__(self, message: str, request: Any = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.request = request
        self.attempts = attempts

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.request, self.attempts))


class TransferError(RaypwError):
    """A request or its result could not be carried between processes: the request could
    not be rebuilt in the worker, or the result could not be pickled there or rebuilt here.

    Only that request's promise fails; its batch-mates are unaffected.

    Attributes:
        request: The request (set in the program that queued it).
        what: ``"request"`` or ``"result"``.
    """

    def __init__(self, message: str, request: Any = None, what: str = "") -> None:
        super().__init__(message)
        self.request = request
        self.what = what

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.request, self.what))


class RemoteError(RaypwError):
    """``process()`` raised an exception that cannot be rebuilt in this process.

    The message holds the original class name, its text and the remote traceback.

    Attributes:
        error_type: The original exception's qualified class name.
    """

    def __init__(self, message: str, error_type: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.error_type))
