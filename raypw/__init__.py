"""raypw: a pool of stateful workers on Ray, with a promise for every request.

The public names load on first use (PEP 562), so a process that needs only part of raypw
(a worker actor imports ``raypw.worker``, the coordinator ``raypw.coordinator``) does not
import the rest: the client, the service and pydantic stay out of every worker process.
``from raypw import ProcessorService`` and ``raypw.ProcessorService`` work as ever.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from raypw.config import (
        AutoscaleConfig,
        BatchingConfig,
        CacheConfig,
        ServiceConfig,
        WorkerResources,
    )
    from raypw.errors import (
        PromiseAbortedError,
        QueueFullError,
        RaypwError,
        RemoteError,
        RequestTimeoutError,
        ResultTimeoutError,
        ServiceNotFoundError,
        ServiceNotRunningError,
        ServiceStartError,
        TransferError,
        WorkerDiedError,
    )
    from raypw.processor import Processor
    from raypw.promise import Promise
    from raypw.promise_set import PromiseSet
    from raypw.service import ProcessorService
    from raypw.stats import ServiceStats

__version__ = "0.1.0"

__all__ = [
    "AutoscaleConfig",
    "BatchingConfig",
    "CacheConfig",
    "Processor",
    "ProcessorService",
    "Promise",
    "PromiseAbortedError",
    "PromiseSet",
    "QueueFullError",
    "RaypwError",
    "RemoteError",
    "RequestTimeoutError",
    "ResultTimeoutError",
    "ServiceConfig",
    "ServiceNotFoundError",
    "ServiceNotRunningError",
    "ServiceStartError",
    "ServiceStats",
    "TransferError",
    "WorkerDiedError",
    "WorkerResources",
    "__version__",
]

# Where each public name is defined: its module is imported the first time the name is read.
_HOMES = {
    "AutoscaleConfig": "raypw.config",
    "BatchingConfig": "raypw.config",
    "CacheConfig": "raypw.config",
    "ServiceConfig": "raypw.config",
    "WorkerResources": "raypw.config",
    "PromiseAbortedError": "raypw.errors",
    "QueueFullError": "raypw.errors",
    "RaypwError": "raypw.errors",
    "RemoteError": "raypw.errors",
    "RequestTimeoutError": "raypw.errors",
    "ResultTimeoutError": "raypw.errors",
    "ServiceNotFoundError": "raypw.errors",
    "ServiceNotRunningError": "raypw.errors",
    "ServiceStartError": "raypw.errors",
    "TransferError": "raypw.errors",
    "WorkerDiedError": "raypw.errors",
    "Processor": "raypw.processor",
    "Promise": "raypw.promise",
    "PromiseSet": "raypw.promise_set",
    "ProcessorService": "raypw.service",
    "ServiceStats": "raypw.stats",
}


if not _typing.TYPE_CHECKING:  # hidden from type checkers, so that a typo stays an error

    def __getattr__(name: str) -> object:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module 'raypw' has no attribute {name!r}")
        value = getattr(_importlib.import_module(home), name)
        globals()[name] = value  # read once: later reads do not come here
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
