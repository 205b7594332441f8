"""Errors raised by raypw.

The hierarchy keeps the standard library's bases, so ``except TimeoutError`` and
``except RuntimeError`` work as a user expects::

    RaypwError(Exception)
    ├── ServiceNotRunningError(RaypwError, RuntimeError)  queue_request() outside start..stop
    ├── ServiceStartError(RaypwError, RuntimeError)       start() could not bring workers up
    ├── ServiceNotFoundError(RaypwError, LookupError)     connect() to a name nobody runs
    ├── PromiseAbortedError(RaypwError)                   get_result() on an aborted promise
    ├── ResultTimeoutError(RaypwError, TimeoutError)      a wait ran out of time
    ├── WorkerDiedError(RaypwError)                       the actor holding a request died
    ├── TransferError(RaypwError)                         a request or result could not travel
    └── RemoteError(RaypwError)                           process() raised an exception that
                                                          could not be rebuilt here

Exceptions raised by a processor's ``process()`` are not wrapped in these: ``get_result()``
re-raises them as the user's own class (an instance of both Ray's ``RayTaskError`` and the
original class) with the remote traceback in the message; only an exception that cannot be
rebuilt in this process (its class needs other constructor arguments, or is not importable
here) arrives as :class:`RemoteError`, with its class name, text and traceback.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "PromiseAbortedError",
    "RaypwError",
    "RemoteError",
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
