"""raypw: a pool of stateful workers on Ray, with a promise for every request."""

from raypw.config import AutoscaleConfig, BatchingConfig, ServiceConfig, WorkerResources
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
