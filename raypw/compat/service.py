"""parallel-workers' service and processor, over raypw's (see :mod:`raypw.compat`)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import raypw
from raypw.compat.promise import Callback, Promise
from raypw.errors import ServiceNotRunningError
from raypw.protocol import dump_request

__all__ = ["SERVICE_RUNNING", "SERVICE_STOPPED", "Processor", "ProcessorService"]

logger = logging.getLogger("raypw.compat")

#: ``get_status()`` of a started service (parallel-workers' value).
SERVICE_RUNNING = 0
#: ``get_status()`` of a service not started, or stopped (parallel-workers' value).
SERVICE_STOPPED = 1

# Requests handed to the engine per call when consume_immediately=True: work starts while a
# long list is still being queued, as it did with the original's one-by-one queueing.
_QUEUE_CHUNK = 8192


class Processor:
    """Base class of a processor, as in parallel-workers: override :meth:`process`.

    Subclassing it is optional: any class with a ``process(request)`` method will do.
    """

    def process(self, request: Any) -> Any:
        """Processes one request; this base version returns None."""
        return None


class _Adapter(raypw.Processor[Any, Any]):
    """Runs a parallel-workers processor in a raypw worker: what ``process()`` raises is
    logged here, in the worker, and its request's result is None."""

    def __init__(self, processor_class: type, init_args: Any = None) -> None:
        if isinstance(init_args, Mapping):
            self._processor = processor_class(**init_args)
        elif isinstance(init_args, (str, bytes)):
            self._processor = processor_class(init_args)
        else:
            self._processor = processor_class(*(init_args or ()))
        self._name = processor_class.__qualname__

    def process(self, request: Any) -> Any:
        try:
            return self._processor.process(request)
        except Exception:
            logger.exception("%s.process(%.80r) raised; its result is None", self._name, request)
            return None


class ProcessorService:
    """A pool of ``parallel_workers`` workers with parallel-workers' lifecycle.

    Args:
        processor_class: Any class with a ``process(request)`` method; each worker builds one
            instance with ``processor_class_init_args``.
        parallel_workers: Number of workers.
        processor_class_init_args: Constructor arguments: a sequence (positional) or a
            mapping (keyword); None for none.
        **options: raypw's own options of :class:`raypw.ProcessorService` (``key``,
            ``address``, ``worker``, ``batching``, ...).

    Raises:
        TypeError: ``processor_class`` has no ``process`` method, or an option is unknown.
        ValueError: an argument is invalid; the message names it.

    Example:
        >>> service = ProcessorService(ExampleProcessor, parallel_workers=2)  # doctest: +SKIP
        >>> service.start()  # doctest: +SKIP
        >>> print(service.queue_request("hola").get_result())  # doctest: +SKIP
        >>> service.stop()  # doctest: +SKIP
    """

    def __init__(
        self,
        processor_class: type,
        parallel_workers: int = 10,
        processor_class_init_args: Any = None,
        **options: Any,
    ) -> None:
        if not (
            isinstance(processor_class, type)
            and callable(getattr(processor_class, "process", None))
        ):
            raise TypeError(
                "processor_class must be a class with a process(request) method, "
                f"got {processor_class!r}"
            )
        self._engine_args = (parallel_workers, processor_class, processor_class_init_args, options)
        self._new_service()  # checks every argument now, naming the one that is wrong
        self.processor_class = processor_class
        self.total_workers: int = parallel_workers
        self._key: Callable[[Any], Any] = options.get("key") or (lambda request: request)
        self._lock = threading.RLock()
        self._service: raypw.ProcessorService[Any, Any] | None = None  # while running
        self._waiting: dict[Any, tuple[Promise, list[Callback | None]]] = {}  # for start()
        self._wrappers: weakref.WeakValueDictionary[int, Promise] = weakref.WeakValueDictionary()

    def _new_service(self) -> raypw.ProcessorService[Any, Any]:
        """A raypw service (not started) running this processor: a new one per start()."""
        workers, processor_class, init_args, options = self._engine_args
        init = {"processor_class": processor_class, "init_args": init_args}
        return raypw.ProcessorService(_Adapter, workers, init, **options)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Starts the workers, then queues what was queued while stopped. Thread-safe.

        A second call while running does nothing; a call after :meth:`stop` starts anew.

        Raises:
            ServiceStartError: the processor's constructor raised, or workers could not start.
        """
        with self._lock:
            if self._service is not None:
                return
            service = self._new_service()
            service.start()
            self._service = service
            waiting, self._waiting = self._waiting, {}
            calls = [(p, cb) for p, callbacks in waiting.values() for cb in callbacks]
            for callback, run in itertools.groupby(calls, key=lambda call: call[1]):
                promises = [p for p, _ in run]
                try:
                    queued = service.queue_requests(
                        [p._request for p in promises], self._engine_callback(callback)
                    )
                except (TypeError, ValueError):  # all or nothing: find the one refused
                    for promise in promises:
                        self._queue_one_waiting(service, promise, callback)
                    continue
                for promise, inner in zip(promises, queued, strict=True):
                    if promise._promise is None:
                        self._wrappers[id(inner)] = promise
                        promise._bind(inner)

    def _queue_one_waiting(
        self, service: raypw.ProcessorService[Any, Any], promise: Promise, callback: Callback | None
    ) -> None:
        """Queues one request kept while stopped; one the service refuses (its ``__eq__``
        raised against a pending one, say) ends as aborted, with the error logged, so that
        it neither stays pending nor keeps the others from running. Call with the lock held."""
        try:
            inner = service.queue_request(promise._request, self._engine_callback(callback))
        except (TypeError, ValueError) as exc:
            request = promise._request
            logger.error("request %.80r, queued before start(), was refused: %s", request, exc)
            if promise._promise is None:
                aborted: raypw.Promise[Any] = raypw.Promise(promise._request)
                aborted.abort()
                promise._bind(aborted)
            if callback is not None:
                try:
                    callback(promise)
                except Exception:
                    logger.exception("completed_callback %r raised for %r", callback, promise)
            return
        if promise._promise is None:
            self._wrappers[id(inner)] = promise
            promise._bind(inner)

    def stop(self, wait_for_finish: bool = True) -> None:
        """Stops the workers. Safe to call more than once, and before :meth:`start`.

        Args:
            wait_for_finish: True lets every queued request finish first; False stops at
                once: what has not finished is aborted (``get_result()`` gives None).
        """
        with self._lock:
            service, self._service = self._service, None
        if service is not None:
            service.stop(wait=wait_for_finish)

    def terminate(self) -> None:
        """Stops at once, aborting whatever has not finished (``stop(False)``)."""
        self.stop(wait_for_finish=False)

    def get_status(self) -> int:
        """Returns :data:`SERVICE_RUNNING` or :data:`SERVICE_STOPPED`."""
        return SERVICE_RUNNING if self._service is not None else SERVICE_STOPPED

    # -- requests --------------------------------------------------------------------------

    def queue_request(self, request: Any, completed_callback: Callback | None = None) -> Promise:
        """Queues one request and returns its promise. Thread-safe.

        Args:
            request: Any picklable, hashable object (or one the service's ``key`` maps).
            completed_callback: Called with the promise, from a background thread, once the
                request is finished (also when aborted or failed).

        Returns:
            The request's promise: the same one for an equal request still pending.

        Raises:
            TypeError: the request is unhashable or unpicklable, or the callback not callable.
        """
        return self.queue_requests([request], completed_callback)[0]

    def queue_requests(
        self,
        requests: Iterable[Any],
        completed_callback: Callback | None = None,
        consume_immediately: bool = True,
    ) -> list[Promise]:
        """Queues many requests; one promise per request, in order. Thread-safe.

        Args:
            requests: The requests.
            completed_callback: As for :meth:`queue_request`.
            consume_immediately: True hands the requests to the workers in chunks as they are
                queued, so work starts before a long list is all queued; False queues the
                whole list first (all or nothing).

        Raises:
            TypeError: ``consume_immediately`` is not a bool, or as :meth:`queue_request`.
        """
        if not isinstance(consume_immediately, bool):
            raise TypeError(
                f"consume_immediately must be True or False, got {consume_immediately!r}"
            )
        if completed_callback is not None and not callable(completed_callback):
            raise TypeError(
                "completed_callback must be a function taking the promise, "
                f"got {completed_callback!r}"
            )
        requests = list(requests)
        step = _QUEUE_CHUNK if consume_immediately else max(len(requests), 1)
        promises: list[Promise] = []
        for start in range(0, len(requests), step):
            promises.extend(self._queue(requests[start : start + step], completed_callback))
        return promises

    def _queue(self, requests: list[Any], callback: Callback | None) -> list[Promise]:
        with self._lock:
            service = self._service
            if service is None:
                return [self._wait_for_start(request, callback) for request in requests]
            try:
                queued = service.queue_requests(requests, self._engine_callback(callback))
            except ServiceNotRunningError:  # it ended under us (its coordinator gave up)
                self._service = None
                return [self._wait_for_start(request, callback) for request in requests]
            return [self._wrap(inner) for inner in queued]

    def _wait_for_start(self, request: Any, callback: Callback | None) -> Promise:
        """Keeps a request queued while stopped. Call with the lock held."""
        try:
            key = self._key(request)
            found = self._waiting.get(key)
        except TypeError:
            raise TypeError(
                f"the request {request!r:.80} is unhashable, so equal requests cannot share a "
                "promise; pass a hashable request, or give the service key=, a function "
                "returning a hashable key for each request"
            ) from None
        if found is None:
            dump_request(request)  # refused now, as while running, not at start()
            found = self._waiting[key] = (Promise(request, self), [])
        found[1].append(callback)
        return found[0]

    def _withdraw(self, promise: Promise) -> bool:
        """Aborts a promise still waiting for start(); False if it was queued meanwhile."""
        with self._lock:
            key = self._key(promise._request)
            found = self._waiting.get(key)
            if found is None or found[0] is not promise:
                return False
            callbacks = found[1]
            callbacks_given = list(callbacks)
            callbacks.pop()
            if callbacks:
                return True  # other holders still wait for it
            del self._waiting[key]
        aborted: raypw.Promise[Any] = raypw.Promise(promise._request)
        aborted.abort()
        promise._bind(aborted)
        for callback in dict.fromkeys(cb for cb in callbacks_given if cb is not None):
            try:
                callback(promise)
            except Exception:
                logger.exception("completed_callback %r raised for %r", callback, promise)
        return True

    def _wrap(self, inner: raypw.Promise[Any]) -> Promise:
        """The compat promise of an engine promise: the same one while someone holds it."""
        with self._lock:
            promise = self._wrappers.get(id(inner))
            if promise is None or promise._promise is not inner:
                promise = Promise(inner.request)
                promise._bind(inner)
                self._wrappers[id(inner)] = promise
            return promise

    def _engine_callback(
        self, callback: Callback | None
    ) -> Callable[[raypw.Promise[Any]], object] | None:
        if callback is None:
            return None
        return lambda inner: callback(self._wrap(inner))

    # -- status ----------------------------------------------------------------------------

    def get_queue_remaining(self) -> int:
        """Returns how many requests wait for a worker (queued, not started)."""
        with self._lock:
            service, waiting = self._service, len(self._waiting)
        if service is None:
            return waiting
        with contextlib.suppress(ServiceNotRunningError):
            return service.stats().queued + waiting
        return waiting

    def get_workers_processing_count(self) -> int:
        """Returns how many workers are processing a request now."""
        service = self._service
        if service is None:
            return 0
        with contextlib.suppress(ServiceNotRunningError):
            return min(service.stats().running, self.total_workers)
        return 0

    def get_processes_free(self) -> int:
        """Returns how many workers are idle now."""
        return self.total_workers - self.get_workers_processing_count()
