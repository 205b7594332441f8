"""ProcessorService: a pool of stateful Ray workers with a promise for every request.

::

    your program                             Ray
    ------------                             ---
    ProcessorService.start()
      ray.init() if Ray is not running  -->  Coordinator actor (one per service)
                                               starts N worker actors, each building one
                                               Processor instance
    queue_request(r) -> Promise
      Client: local dedup + outbox      -->  Coordinator.submit: dedup over all clients,
                                               FIFO queue of distinct requests
                                             idle worker <- next batch (sized to ~20 ms)
      collector thread: ray.wait over   <--  batch ObjectRefs: one ray.get per batch
        the few in-flight batch refs,
        settles promises, wakes select()
        and runs completed_callbacks
    a lone request on an idle pool      -->  straight to a leased worker: the promise wraps
      (the fast path)                   <--  that call's ObjectRef (one Ray round trip)
    stop(): finish queued work (or abort it), end the actors; shut down Ray only if
            start() started it.
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import html
import logging
import math
import queue
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Generic, Literal, overload

from raypw.client import Client
from raypw.config import (
    AutoscaleConfig,
    BatchingConfig,
    CacheConfig,
    ServiceConfig,
    WorkerResources,
)
from raypw.errors import ServiceNotFoundError, ServiceNotRunningError, ServiceStartError
from raypw.output import OutputWatch, show_every_line
from raypw.processor import Processor, RequestT, ResultT
from raypw.promise import Promise
from raypw.stats import ServiceStats

__all__ = ["ProcessorService"]

logger = logging.getLogger("raypw")


class _Lifecycle(enum.Enum):
    """Where a service object is: NEW -> RUNNING -> STOPPING -> STOPPED (NEW -> STOPPED if
    stopped before it started). STOPPED is never left; STOPPING is left only for STOPPED."""

    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"  # stop() began and has not finished (it may have been interrupted)
    STOPPED = "stopped"


# A coordinator that dies within CRASH_LOOP_SECONDS of replacing the previous one counts as a
# crash loop; after CRASH_LOOP_LIMIT of those in a row the service gives up and fails what is
# pending, rather than restart forever. Deaths further apart are always recovered from.
CRASH_LOOP_SECONDS = 30.0
CRASH_LOOP_LIMIT = 3
# Named services live in one Ray namespace, so any program (job) on the cluster finds them.
NAMESPACE = "raypw"

# Services started in this process that started Ray themselves share it; the last one to
# stop shuts it down. Guarded by _ray_lock.
_ray_lock = threading.Lock()
_ray_users = 0
_ray_started_here = False
# Linux sends a child process its parent-death signal when the *thread* that started it ends,
# and Ray's raylet and GCS ask for SIGKILL then (PR_SET_PDEATHSIG). So Ray is started from
# the main thread or from this one daemon thread, which lives as long as the process; never
# from a thread that may end (a web framework's startup hook). Guarded by _ray_lock.
_lasting_thread_calls: queue.SimpleQueue[tuple[Callable[[], object], Future[object]]] | None = None
# Services running in this process, for the exit hook (registered once Ray is imported, so
# that it runs before Ray's own shutdown at exit).
_live_services: weakref.WeakSet[ProcessorService[Any, Any]] = weakref.WeakSet()
_exit_hook_registered = False


class ProcessorService(Generic[RequestT, ResultT]):
    """Runs ``parallel_workers`` Ray actors, each with one instance of ``processor_class``.

    Workers compete for queued requests until all are processed. Every ``queue_request``
    returns a :class:`~raypw.Promise` at once.

    Args:
        processor_class: A :class:`~raypw.Processor` subclass.
        parallel_workers: Number of worker actors (10 by default), or a ``(min, max)`` range:
            the pool then grows with the work and shrinks when idle (short for
            ``autoscale=AutoscaleConfig(min_workers=min, max_workers=max)``).
        processor_class_init_args: Arguments for each processor's constructor: a sequence
            (positional) or a mapping (keyword); None for none.
        key: Function giving a request's dedup key; by default the request itself, which must
            then be hashable. Requests with equal keys share one promise while pending.
        address: Ray address to attach to. None attaches to ``RAY_ADDRESS`` if set, else to a
            running Ray in this process, else starts a local Ray.
        worker: Ray resources of each worker (a :class:`~raypw.config.WorkerResources` or a
            dict of its fields).
        batching: Batching policy (a :class:`~raypw.config.BatchingConfig` or a dict).
        start_timeout: Seconds ``start()`` waits for the workers to be built (and the
            coordinator for a dead worker's restart).
        max_retries: Times a request is dispatched again after its worker died while
            processing it (at-least-once: a request may run more than once). Past that, its
            promise fails with :class:`~raypw.WorkerDiedError`.
        name: Makes the service shared: other programs on the same Ray cluster attach to it
            with :meth:`connect` and queue requests; equal requests from all of them are
            processed once.
        detached: With ``name``, the service outlives the program that started it until it is
            stopped explicitly (``ProcessorService.connect(name).stop(shutdown=True)``).
        client_timeout: Seconds after which the coordinator forgets a program that stopped
            talking to it (a killed process) and withdraws the requests only it waited for. A
            program that was merely frozen that long sends its requests again.
        request_timeout: The default deadline of every request, in seconds from its
            ``queue_request``; None for none. See ``timeout=`` of :meth:`queue_request`.
        request_timeout_grace: Seconds a request still running at its deadline has, once
            cancelled (``ray.cancel``: ``ray.get_runtime_context().is_canceled()`` turns True
            in ``process()``), to return before its worker is killed and restarted.
        max_queued: Requests this program may have pending (queued or running) at once;
            beyond that ``queue_request`` waits for room (see its ``block`` and
            ``block_timeout``). Bounds memory when requests come faster than the pool takes
            them. None: no limit.
        autoscale: An :class:`~raypw.config.AutoscaleConfig` (or a dict of its fields): grow
            the pool while work waits longer than ``target_wait_seconds``, retire workers idle
            for ``idle_seconds``, within ``min_workers..max_workers``; the pool starts at
            ``min_workers`` unless ``parallel_workers`` says otherwise.
        max_requests_per_worker: A worker that processed this many requests is replaced by
            a fresh one (its processor built again) between batches, without losing or
            repeating a request: for processors that leak memory. None: never.
        cache: A :class:`~raypw.config.CacheConfig` (or a dict of its fields, or True for
            its defaults): a request equal to one that already finished with a result gets
            that result without being processed again, from any program attached to the
            service; errors are not kept. None: off.
        metrics: Export the service's queue, workers, counts and timings through
            ``ray.util.metrics``, to Ray's Prometheus endpoint, tagged with the service's
            name (README "Metrics"). False records none.

    Raises:
        pydantic.ValidationError: (a ``ValueError``) an argument is invalid; the message names
            it.
        TypeError: ``processor_class`` is not a ``Processor`` subclass.

    Example:
        >>> with ProcessorService(ExampleProcessor, parallel_workers=2) as svc:  # doctest: +SKIP
        ...     print(svc.queue_request("hola").get_result())
    """

    def __init__(
        self,
        processor_class: type[Processor[RequestT, ResultT]],
        parallel_workers: int | tuple[int, int] | None = None,
        processor_class_init_args: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        key: Callable[[RequestT], Hashable] | None = None,
        address: str | None = None,
        worker: WorkerResources | Mapping[str, Any] | None = None,
        batching: BatchingConfig | Mapping[str, Any] | None = None,
        start_timeout: float = 120.0,
        max_retries: int = 3,
        name: str | None = None,
        detached: bool = False,
        client_timeout: float = 60.0,
        request_timeout: float | None = None,
        request_timeout_grace: float = 5.0,
        max_queued: int | None = None,
        max_requests_per_worker: int | None = None,
        autoscale: AutoscaleConfig | Mapping[str, Any] | None = None,
        cache: CacheConfig | Mapping[str, Any] | bool | None = None,
        metrics: bool = True,
    ) -> None:
        if not (isinstance(processor_class, type) and issubclass(processor_class, Processor)):
            raise TypeError(
                f"processor_class must be a subclass of raypw.Processor, got {processor_class!r}"
            )
        if key is not None and not callable(key):
            raise TypeError(f"key must be a function of the request, got {key!r}")
        fields: dict[str, Any] = {
            "processor_class_init_args": processor_class_init_args,
            "address": address,
            "start_timeout": start_timeout,
            "max_retries": max_retries,
            "name": name,
            "detached": detached,
            "client_timeout": client_timeout,
            "request_timeout": request_timeout,
            "request_timeout_grace": request_timeout_grace,
            "max_queued": max_queued,
            "max_requests_per_worker": max_requests_per_worker,
            "metrics": metrics,
        }
        if parallel_workers is not None:
            fields["parallel_workers"] = parallel_workers
        if autoscale is not None:
            fields["autoscale"] = autoscale
        if worker is not None:
            fields["worker"] = worker
        if batching is not None:
            fields["batching"] = batching
        if cache is not None:
            fields["cache"] = cache
        self.config = ServiceConfig.model_validate(fields)
        if processor_class_init_args:
            _check_init_args_travel(processor_class_init_args)
        self._init_state(processor_class, key, owner=True)

    def _init_state(
        self, processor_class: type[Processor[Any, Any]], key: Any, owner: bool
    ) -> None:
        self.processor_class = processor_class
        self._processor_blob: bytes | None = None  # the class as an attached client got it
        self._owner = owner  # this object started the actors, so its stop() ends them
        self._creator = uuid.uuid4().hex
        self._key = key
        self._lock = threading.Lock()  # lifecycle
        self._recover_lock = threading.Lock()
        self._recoveries = 0
        self._replaced_at = -CRASH_LOOP_SECONDS
        self._crash_loop = 0
        self._state = _Lifecycle.NEW
        self._coordinator: Any = None
        self._client: Client | None = None
        self._uses_our_ray = False
        self._worker_pids: list[int] = []
        self._output: OutputWatch | None = None  # worker lines reaching this driver

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ProcessorService[RequestT, ResultT]:
        """Starts the coordinator and the workers and waits until every processor is built.

        Calls ``ray.init()`` first if Ray is not running in this process (honouring
        ``address`` and ``RAY_ADDRESS``). Works from any thread, also one that ends right
        after (Ray is then started from a raypw thread that lives as long as the process).

        Returns:
            The service itself, so ``svc = ProcessorService(...).start()`` works.

        Raises:
            ServiceStartError: a processor constructor raised (the message names the class and
                the cause) or the workers could not be placed in time. No actor is left.
            RuntimeError: the service was started before.
        """
        with self._lock:
            if self._state is not _Lifecycle.NEW:
                raise RuntimeError(
                    f"the service is {self._state.value}; a service starts only once"
                )
            self._use_ray()
            try:
                self._coordinator, self._worker_pids = self._start_coordinator()
                self._client = Client(
                    self._coordinator,
                    self._key,
                    _replacer(self),
                    max_queued=self.config.max_queued,
                    workers=self.config.parallel_workers,
                    direct=_fast_path(self.config),
                )
                self._client.open()
            except BaseException:
                self._end_actors()
                self._release_ray()
                raise
            self._state = _Lifecycle.RUNNING
            self._output = OutputWatch()
            _track(self)
        logger.info(
            "raypw service started: %d x %s", len(self._worker_pids), self.processor_class.__name__
        )
        return self

    def _use_ray(self) -> None:
        global _ray_users, _ray_started_here
        import ray

        with _ray_lock:
            show_every_line()
            if not ray.is_initialized():
                address = self.config.address
                _in_a_lasting_thread(
                    lambda: ray.init(address=address, logging_level=logging.WARNING)
                )
                _ray_started_here = True
                _ray_users = 0
            if _ray_started_here:
                _ray_users += 1
                self._uses_our_ray = True

    def _release_ray(self) -> None:
        global _ray_users, _ray_started_here
        import ray

        with _ray_lock:
            if not self._uses_our_ray:
                return
            self._uses_our_ray = False
            _ray_users -= 1
            if _ray_users == 0 and _ray_started_here:
                _ray_started_here = False
                ray.shutdown()

    def _start_coordinator(self, replacing: bool = False) -> tuple[Any, list[int]]:
        """Creates and starts the coordinator (and through it the workers).

        Args:
            replacing: The previous coordinator died. For a named service another client may
                have replaced it already: then this one joins it instead of failing.
        """
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from raypw.coordinator import Coordinator

        config = self.config
        remote: Any = ray.remote  # its typed overloads do not list actor-only options
        # On this program's node if it can: losing another node then costs only workers.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        options: dict[str, Any] = {"scheduling_strategy": here}
        if config.name is not None:
            options.update(name=config.name, namespace=NAMESPACE, get_if_exists=True)
            if config.detached:
                options["lifetime"] = "detached"
        actor_class = remote(num_cpus=0, max_concurrency=1000)(Coordinator)
        info = {
            "name": config.name,
            "creator": self._creator,
            "processor": _qualified_name(self.processor_class),
            "config": config.model_dump(mode="json", exclude={"processor_class_init_args"}),
        }
        coordinator = actor_class.options(**options).remote(
            self._processor_blob or self.processor_class, config, info
        )
        self._coordinator = coordinator
        if config.name is not None and not replacing:
            found = ray.get(coordinator.info.remote())
            if found.get("creator") != self._creator:  # get_if_exists gave us someone else's
                self._coordinator = None
                raise ServiceStartError(
                    f"a raypw service named {config.name!r} already runs "
                    f"({found.get('processor')}); attach to it with "
                    f"ProcessorService.connect({config.name!r}) or pick another name"
                )
        try:
            pids = ray.get(coordinator.start.remote(config.start_timeout))
        except Exception as exc:
            cause = getattr(exc, "cause", None) or exc
            raise ServiceStartError(
                f"could not start {config.parallel_workers} worker(s) of "
                f"{self.processor_class.__qualname__}: {_describe(cause)}"
            ) from exc
        return coordinator, pids

    def _replace_coordinator(self, cause: BaseException) -> Any:
        """Starts a new coordinator and workers after the old coordinator died.

        Called from the client's collector thread. The old workers die with their owner, the
        old coordinator; requests they were running are processed again (at-least-once).
        """
        import ray

        with self._recover_lock:
            if self._state is not _Lifecycle.RUNNING:
                raise ServiceNotRunningError("the service is stopping")
            now = time.monotonic()
            quick = now - self._replaced_at < CRASH_LOOP_SECONDS
            self._crash_loop = self._crash_loop + 1 if quick else 0
            if self._crash_loop >= CRASH_LOOP_LIMIT:
                raise cause
            self._recoveries += 1
            self._replaced_at = now
            old, self._coordinator = self._coordinator, None
            if old is not None:
                ray.kill(old)  # it may be unreachable rather than dead
            self._coordinator, self._worker_pids = self._start_coordinator(replacing=True)
            return self._coordinator

    @classmethod
    def connect(
        cls,
        name: str,
        *,
        address: str | None = None,
        processor_class: type[Processor[RequestT, ResultT]] | None = None,
        key: Callable[[RequestT], Hashable] | None = None,
    ) -> ProcessorService[RequestT, ResultT]:
        """Attaches to a named service that another program started; returns it running.

        Requests queued here join the service's queue; equal requests from every attached
        program are processed once. ``stop()`` on the returned object only detaches this
        program; ``stop(shutdown=True)`` stops the service for everyone.

        Args:
            name: The ``name`` the service was started with.
            address: Ray address, as for the constructor (default: ``RAY_ADDRESS`` or the
                Ray this process already uses).
            processor_class: If given, the service must run this processor class.
            key: Dedup key function for requests queued here (see the constructor).

        Raises:
            ServiceNotFoundError: (a ``LookupError``) no service of that name runs there.
            TypeError: the service runs another processor class than ``processor_class``.
        """
        import ray

        info: dict[str, Any]
        service = cls.__new__(cls)
        service._init_attached(name, address, key)
        service._use_ray()
        try:
            try:
                coordinator = ray.get_actor(name, namespace=NAMESPACE)
                found: Any = ray.get(coordinator.info.remote())
                info = found
            except ValueError:
                raise ServiceNotFoundError(
                    f"no raypw service named {name!r} runs on this Ray cluster; start one "
                    f"with ProcessorService(..., name={name!r})"
                ) from None
            if processor_class is not None and info["processor"] != _qualified_name(
                processor_class
            ):
                raise TypeError(
                    f"the service {name!r} runs {info['processor']}, not "
                    f"{_qualified_name(processor_class)}"
                )
            service._adopt(coordinator, info)
        except BaseException:
            service._release_ray()
            raise
        return service

    def _init_attached(self, name: str, address: str | None, key: Any) -> None:
        self.config = ServiceConfig(name=name, address=address)
        self._init_state(Processor, key, owner=False)

    def _adopt(self, coordinator: Any, info: dict[str, Any]) -> None:
        """Takes over an existing coordinator's configuration and opens a client to it."""
        import ray
        from ray import cloudpickle

        config = dict(
            info["config"],
            address=self.config.address,
            processor_class_init_args=info["init_args"],
        )
        self.config = ServiceConfig.model_validate(config)
        self._processor_blob = info["processor_blob"]
        try:
            self.processor_class = cloudpickle.loads(self._processor_blob)
        except Exception:  # its module is not importable here: the name is enough
            logger.debug("processor class of %s not importable here", info["name"])
        self._coordinator = coordinator
        self._worker_pids = ray.get(coordinator.worker_pids.remote())
        self._client = Client(
            coordinator,
            self._key,
            _replacer(self),
            max_queued=self.config.max_queued,
            workers=self.config.parallel_workers,
        )
        self._client.open()
        self._state = _Lifecycle.RUNNING
        _track(self)

    def stop(
        self, wait: bool = True, timeout: float | None = None, *, shutdown: bool | None = None
    ) -> None:
        """Stops the service. Safe to call more than once, and before ``start()``.

        Thread-safe. A ``stop()`` that was interrupted while it waited (Ctrl-C) leaves the
        service stopping, not stopped: call ``stop()`` again to finish. ``stop(wait=False)``
        from another thread ends a ``stop()`` that waits, which then returns too.

        Args:
            wait: True lets every queued request of this program finish first; False stops
                at once and aborts whatever is pending (``get_result()`` then raises
                :class:`~raypw.PromiseAbortedError`).
            timeout: With ``wait``, seconds to wait at most before aborting the rest.
            shutdown: Whether to end the coordinator and workers too. By default True for
                the program that started the service and False for one that attached with
                :meth:`connect`, which then only detaches. Other attached programs see their
                pending promises aborted when the service shuts down.
        """
        with self._lock:
            if self._state is _Lifecycle.NEW:
                self._state = _Lifecycle.STOPPED
        end_actors = self._owner if shutdown is None else shutdown
        if self._end(wait, timeout, end_actors=end_actors, hand_over=False):
            logger.info("raypw service stopped")

    def _end(self, wait: bool, timeout: float | None, end_actors: bool, hand_over: bool) -> bool:
        """Closes the client, then ends the actors (``end_actors``) and lets go of Ray.

        The lifecycle lock is not held while the client closes, so another thread's
        ``stop(wait=False)`` can end a wait; a call that was interrupted leaves the service
        STOPPING and the next call does what is left.

        Returns:
            True if this call finished the job; False if the service was not running (or
            another call finished it meanwhile).
        """
        with self._lock:
            if self._state not in (_Lifecycle.RUNNING, _Lifecycle.STOPPING):
                return False
            self._state = _Lifecycle.STOPPING
        if self._client is not None:
            self._client.close(wait=wait, timeout=timeout, hand_over=hand_over)
        output, self._output = self._output, None
        if output is not None:  # lines printed last may still be on their way
            output.drain()
            output.close()
        with self._lock:
            if self._state is _Lifecycle.STOPPED:
                return False
            if end_actors:
                self._end_actors()
            self._release_ray()
            self._state = _Lifecycle.STOPPED
        return True

    def _leave(self, at_exit: bool = False) -> None:
        """This program lets go of the service without stop(): at exit, or when the service
        object is garbage-collected.

        The client's threads end (at exit: before Ray shuts down). A detached service keeps
        running, with the requests this program queued; any other service's workers end, as
        Ray ends the actors a program owned when it exits.
        """
        detached = self.config.detached
        end_actors = self._owner and not detached and not at_exit  # at exit, Ray ends them
        self._end(False, None, end_actors=end_actors, hand_over=detached)

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state is not _Lifecycle.RUNNING and state is not _Lifecycle.STOPPING:
            return
        if state is _Lifecycle.RUNNING and not self.config.detached:
            logger.warning(
                "%r was garbage-collected while running; stopping it (call stop() or use "
                "'with ProcessorService(...) as svc:' to stop it yourself)",
                self,
            )
        try:
            self._leave()
        except Exception:
            logger.debug("letting go of a collected service failed", exc_info=True)

    def _end_actors(self) -> None:
        import ray

        with self._recover_lock:
            coordinator = self._coordinator
        if coordinator is None:
            return
        if not ray.is_initialized():
            # Ray was shut down in this program first: it ended the actors it owned (a
            # detached service's stay), and a call now would auto-start a new local Ray.
            with self._recover_lock:
                if self._coordinator is coordinator:
                    self._coordinator = None
            return
        try:
            ray.get(coordinator.shutdown.remote(), timeout=10)
        except Exception:
            logger.debug("coordinator shutdown failed", exc_info=True)
        ray.kill(coordinator)
        with self._recover_lock:  # only now: an interrupted call leaves it to the next one
            if self._coordinator is coordinator:
                self._coordinator = None

    def __enter__(self) -> ProcessorService[RequestT, ResultT]:
        if self._state is _Lifecycle.NEW:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stops the service: waits for queued work, or aborts it if the block raised."""
        self.stop(wait=exc_type is None)

    @property
    def worker_pids(self) -> list[int]:
        """Process id of each worker now (0 for one Ray is restarting); [] when not running."""
        import ray

        coordinator = self._coordinator
        if coordinator is None or self._state is not _Lifecycle.RUNNING:
            return []
        try:
            pids: list[int] = ray.get(coordinator.worker_pids.remote(), timeout=10)
        except Exception:  # the coordinator is being replaced: what start() saw last
            return list(self._worker_pids)
        return pids

    def resize(self, parallel_workers: int) -> int:
        """Changes the number of workers of the running service. Thread-safe.

        Growing starts the new workers and returns once their processors are built; they
        take queued work at once. Shrinking returns at once: idle workers go first, and a
        busy one gives back the requests it has not started and goes when it finished the
        one it runs, so no started request is lost. A pool never shrinks below one worker.
        ``stats().workers`` shows the new size at once.

        Args:
            parallel_workers: The number of workers wanted, at least 1.

        Returns:
            The number of workers now.

        Raises:
            TypeError: ``parallel_workers`` is not an int.
            ValueError: ``parallel_workers`` is below 1.
            ServiceNotRunningError: the service is not running.
            ServiceStartError: a new worker's processor constructor raised, or the new
                workers were not up within ``start_timeout``; the pool keeps those that came
                up.
        """
        import ray

        if isinstance(parallel_workers, bool) or not isinstance(parallel_workers, int):
            raise TypeError(
                f"parallel_workers must be an int, got {type(parallel_workers).__name__}"
            )
        if parallel_workers < 1:
            raise ValueError(f"parallel_workers must be at least 1, got {parallel_workers}")
        client = self._running_client()
        coordinator = self._coordinator
        if coordinator is None or self._state is not _Lifecycle.RUNNING:
            raise ServiceNotRunningError("the service is not running: resize() needs it running")
        client.resized(parallel_workers)
        try:
            workers: int = ray.get(coordinator.resize.remote(parallel_workers))
        except ray.exceptions.RayTaskError as exc:
            # The pool keeps the workers that came up: remember its size as it is now.
            with contextlib.suppress(Exception):
                self._note_size(ray.get(coordinator.stats.remote(), timeout=30)["workers"])
            cause = getattr(exc, "cause", None) or exc
            raise ServiceStartError(
                f"could not add worker(s) of {self.processor_class.__qualname__}: "
                f"{_describe(cause)}"
            ) from exc
        self._note_size(workers)
        return workers

    def _note_size(self, workers: int) -> None:
        """Records the pool's size: a coordinator that replaces a dead one starts with it."""
        self.config = self.config.model_copy(update={"parallel_workers": workers})

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``, unless the service failed meanwhile (its
        coordinator died and could not be replaced, another program stopped it, Ray was shut
        down): ``queue_request`` then raises :class:`~raypw.ServiceNotRunningError` saying
        why."""
        client = self._client
        return self._state is _Lifecycle.RUNNING and (client is None or client.broken is None)

    # -- requests --------------------------------------------------------------------------

    def queue_request(
        self,
        request: RequestT,
        completed_callback: Callable[[Promise[ResultT]], object] | None = None,
        *,
        timeout: float | None = None,
        priority: int = 0,
        block: bool = True,
        block_timeout: float | None = None,
    ) -> Promise[ResultT]:
        """Queues one request and returns its promise at once. Thread-safe.

        An equal request (same key) still pending returns the same promise and is not
        processed again. A request with a deadline (``timeout``) gets a promise of its own,
        with its own deadline; equal requests are still processed once, for as long as one
        of their waiters' deadlines has not passed.

        Args:
            request: Any picklable object; hashable unless the service has a ``key``.
            completed_callback: Called with the promise from a background thread as soon as
                the request finishes (also when it fails or is aborted). Exceptions it raises
                are logged.
            timeout: Seconds by which the request must have finished, counted from when it
                is queued (after any wait for room, see ``block``): its deadline.
                A request not started by then is never started; one running then is cancelled
                (``ray.cancel``: ``ray.get_runtime_context().is_canceled()`` turns True in
                ``process()``) and, if it has not returned ``request_timeout_grace`` seconds
                later, its worker is killed and restarted. Either way the promise fails with
                :class:`~raypw.RequestTimeoutError` at the deadline and the request is not
                retried; other requests are unaffected. None uses the service's
                ``request_timeout``; ``math.inf`` sets no deadline.
            priority: Higher runs first among the requests not started yet, wherever they
                wait (this program's unsent backlog, the service's queue, a batch sent ahead
                to a worker, unless what it holds would keep it less than about 5 ms); first
                in, first out within one priority. An equal pending
                request keeps the higher of the two priorities. Any int; 0 by default.
            block: With the service's ``max_queued`` requests of this program pending, wait
                for room (True) or raise :class:`~raypw.QueueFullError` at once (False).
            block_timeout: Seconds to wait for room at most, then raise
                :class:`~raypw.QueueFullError`; None waits as long as it takes.

        Returns:
            The request's promise.

        Raises:
            ServiceNotRunningError: before ``start()`` or after ``stop()``.
            TypeError: the request is unhashable (pass ``key=`` to the service) or cannot be
                pickled, ``completed_callback`` is not callable, ``timeout`` is not a number,
                or ``priority`` is not an int.
                Nothing else is affected.
            ValueError: ``timeout`` is not positive, or ``block_timeout`` is negative.
            QueueFullError: (a ``queue.Full``) no room for the request (``max_queued``).

        Example:
            >>> promise = svc.queue_request("slow", timeout=30)  # doctest: +SKIP
            >>> promise.get_result()  # doctest: +SKIP
            Traceback (most recent call last):
            raypw.errors.RequestTimeoutError: 'slow' did not finish within its timeout of 30 s ...
        """
        _check_callback(completed_callback)
        seconds = _check_timeout(timeout, self.config.request_timeout)
        _check_priority(priority)
        _check_block(block, block_timeout)
        client = self._running_client()
        return client.queue(
            (request,), completed_callback, seconds, block, block_timeout, priority
        )[0]

    @overload
    def queue_requests(
        self,
        requests: Iterable[RequestT],
        completed_callback: Callable[[Promise[ResultT]], object] | None = None,
        *,
        timeout: float | None = None,
        priority: int = 0,
        block: bool = True,
        block_timeout: float | None = None,
        keep_promises: Literal[True] = True,
    ) -> list[Promise[ResultT]]: ...

    @overload
    def queue_requests(
        self,
        requests: Iterable[RequestT],
        completed_callback: Callable[[Promise[ResultT]], object],
        *,
        timeout: float | None = None,
        priority: int = 0,
        block: bool = True,
        block_timeout: float | None = None,
        keep_promises: Literal[False],
    ) -> int: ...

    def queue_requests(
        self,
        requests: Iterable[RequestT],
        completed_callback: Callable[[Promise[ResultT]], object] | None = None,
        *,
        timeout: float | None = None,
        priority: int = 0,
        block: bool = True,
        block_timeout: float | None = None,
        keep_promises: bool = True,
    ) -> list[Promise[ResultT]] | int:
        """Queues many requests at once, the fast path; one promise per request, in order.

        The requests are checked first: if one is unhashable or unpicklable, or
        ``completed_callback`` is not callable, a ``TypeError`` is raised and none is queued.
        Otherwise as :meth:`queue_request`; ``timeout`` gives each request the same deadline
        (equal requests of this call share one promise), and ``priority`` the same priority.

        With the service's ``max_queued``, the requests are taken from ``requests`` (which
        may be a generator) a chunk at a time, each as room frees: this call returns once
        the last is queued, and a producer faster than the pool waits here instead of filling
        memory with pending requests. ``block`` and ``block_timeout`` (counted for the whole
        call) are as in :meth:`queue_request`. If the call raises part-way (a bad request,
        :class:`~raypw.QueueFullError`, Ctrl-C), the requests it had queued are aborted
        first, so none of them stays queued. The returned list still holds one promise per
        request.

        For a stream without end, pass ``keep_promises=False`` with a ``completed_callback``:
        the call then returns the number of requests it took, and holds no promise once its
        request ended, so with ``max_queued`` it runs in bounded memory however many requests
        the generator yields; each outcome reaches the callback (an error or a deadline too).

        Raises:
            TypeError: a request cannot be hashed or pickled, ``completed_callback`` is not
                callable, or ``keep_promises`` is not a bool.
            ValueError: ``keep_promises=False`` without a ``completed_callback`` (nothing
                would receive the outcomes).
            QueueFullError: no room came in time (``block``, ``block_timeout``).
        """
        _check_callback(completed_callback)
        if not isinstance(keep_promises, bool):
            raise TypeError(f"keep_promises must be True or False, got {keep_promises!r}")
        if not keep_promises and completed_callback is None:
            raise ValueError(
                "keep_promises=False needs a completed_callback: with neither promises nor a "
                "callback, nothing would receive the results"
            )
        seconds = _check_timeout(timeout, self.config.request_timeout)
        _check_priority(priority)
        _check_block(block, block_timeout)
        client = self._running_client()
        return client.queue(
            requests, completed_callback, seconds, block, block_timeout, priority, keep_promises
        )

    def _running_client(self) -> Client:
        client = self._client
        if client is None:
            raise ServiceNotRunningError(
                "the service is not running: call start() first (or use it as a context manager)"
            )
        return client

    def stats(self) -> ServiceStats:
        """Returns a snapshot of the service: this program's promises and the shared service.

        Raises:
            ServiceNotRunningError: the service is not running.
        """
        client = self._client
        if client is None or self._state is not _Lifecycle.RUNNING:
            raise ServiceNotRunningError("the service is not running")
        client.report_fast_path(wait=True)  # first: so that the coordinator counts them
        shared = self._coordinator_stats(client)
        mine = client.counts()
        return ServiceStats(
            pending=mine["pending"],
            done=mine["done"],
            failed=mine["failed"],
            aborted=mine["aborted"],
            timed_out=mine["timed_out"],
            deduplicated=shared["deduplicated"] + mine["deduplicated"],
            queued=shared["queued"] + mine["unsent"],
            running=shared["running"] + mine["fast_path_running"],
            processed=shared["processed"],
            workers=shared["workers"],
            workers_alive=shared["workers_alive"],
            throughput=shared["throughput"],
            worker_restarts=shared["worker_restarts"],
            coordinator_replacements=self._recoveries,
            worker_recycles=shared["worker_recycles"],
            cache_hits=shared["cache_hits"],
            cache_entries=shared["cache_entries"],
            cache_bytes=shared["cache_bytes"],
            workers_up=shared["workers_up"],
            fast_path=mine["fast_path"],
        )

    def _coordinator_stats(self, client: Client) -> dict[str, Any]:
        """The coordinator's counters. One that died is waited for while the client
        replaces it (up to ``start_timeout``), so a death costs a stats() call a few seconds,
        not an error.

        Raises:
            ServiceNotRunningError: the service failed or was stopped meanwhile.
        """
        import ray
        from ray.exceptions import RayActorError

        until = time.monotonic() + self.config.start_timeout
        while True:
            if client.broken is not None:
                raise ServiceNotRunningError(f"the service is not running: {client.broken}")
            if self._state is not _Lifecycle.RUNNING:
                raise ServiceNotRunningError("the service is not running")
            coordinator = self._coordinator
            if coordinator is not None:
                try:
                    shared: dict[str, Any] = ray.get(coordinator.stats.remote(), timeout=30)
                    return shared
                except RayActorError:  # died: the client's collector starts another
                    if time.monotonic() >= until:
                        raise
            time.sleep(0.1)

    def __repr__(self) -> str:
        name = f" name={self.config.name!r}" if self.config.name else ""
        running = self.running
        failed = self._state is _Lifecycle.RUNNING and not running
        state = "failed" if failed else self._state.value
        pending = f" pending={self._client.pending}" if running and self._client else ""
        return (
            f"<ProcessorService {self.processor_class.__name__} "
            f"workers={self.config.parallel_workers} {state}{name}{pending}>"
        )

    def _repr_html_(self) -> str:
        """Jupyter's view: the service and, while it runs, its stats."""
        title = html.escape(
            f"ProcessorService {self.processor_class.__name__} "
            f"({self.config.parallel_workers} workers"
            + (f", name {self.config.name!r}" if self.config.name else "")
            + f"): {self._state.value}"
        )
        if self._state is not _Lifecycle.RUNNING:
            return f"<b>{title}</b>"
        try:
            table = self.stats()._repr_html_()
        except Exception:  # being replaced, or just stopped: the title is enough
            return f"<b>{title}</b>"
        return f"<b>{title}</b>{table}"


def _fast_path(config: ServiceConfig) -> bool:
    """Whether a lone request may go straight to a worker (the idle-pool fast path): only
    where the coordinator need not see it first. A named service may have other clients,
    whose equal requests must share its promise; the cache answers at the coordinator, and
    recycling counts each worker's requests there."""
    return config.name is None and config.cache is None and config.max_requests_per_worker is None


def _replacer(service: ProcessorService[Any, Any]) -> Callable[[BaseException], Any]:
    """The client's way to replace a dead coordinator, holding the service only weakly
    (so a running service nobody refers to any more is collected, and stopped)."""
    ref = weakref.ref(service)

    def replace(cause: BaseException) -> Any:
        found = ref()
        if found is None:
            raise cause
        return found._replace_coordinator(cause)

    return replace


def _in_a_lasting_thread(call: Callable[[], object]) -> None:
    """Runs ``call`` in this thread if it is the main thread, else in raypw's daemon thread that
    lives as long as the process ("raypw-ray"); raises what ``call`` raised. Call with
    ``_ray_lock`` held."""
    global _lasting_thread_calls
    if threading.current_thread() is threading.main_thread():
        call()
        return
    if _lasting_thread_calls is None:
        _lasting_thread_calls = queue.SimpleQueue()
        threading.Thread(
            target=_run_calls, args=(_lasting_thread_calls,), name="raypw-ray", daemon=True
        ).start()
    done: Future[object] = Future()
    _lasting_thread_calls.put((call, done))
    done.result()


def _run_calls(calls: queue.SimpleQueue[tuple[Callable[[], object], Future[object]]]) -> None:
    while True:
        call, done = calls.get()
        try:
            done.set_result(call())
        except BaseException as exc:  # handed to the caller, which raises it
            done.set_exception(exc)


def _track(service: ProcessorService[Any, Any]) -> None:
    global _exit_hook_registered
    with _ray_lock:
        twins = [other for other in _live_services if _same_setup(other, service)]
        _live_services.add(service)
        if not _exit_hook_registered:
            _exit_hook_registered = True
            atexit.register(_leave_all_at_exit)
    if twins and service._owner:
        # Most likely a notebook cell run again while something (Jupyter's Out[] history,
        # a variable) still holds the earlier service, so it was not garbage-collected.
        logger.warning(
            "%d other running %s with the same configuration in this process: %s; if that is "
            "a re-run cell's old service, stop it with .stop() to free its workers",
            len(twins),
            "service" if len(twins) == 1 else "services",
            ", ".join(repr(t) for t in twins),
        )


def _same_setup(one: ProcessorService[Any, Any], other: ProcessorService[Any, Any]) -> bool:
    return (
        one is not other
        and one._owner
        and one.running
        and one.processor_class is other.processor_class
        and one.config == other.config
    )


def _leave_all_at_exit() -> None:
    for service in list(_live_services):
        try:
            service._leave(at_exit=True)
        except Exception:
            logger.debug("leaving %r at exit failed", service, exc_info=True)


def _check_callback(callback: object) -> None:
    if callback is not None and not callable(callback):
        raise TypeError(
            f"completed_callback must be a function taking the promise, or None; got {callback!r}"
        )


def _check_init_args_travel(args: object) -> None:
    """Raises naming ``processor_class_init_args`` if they cannot be pickled: each worker
    builds its processor from its own copy, in its own process."""
    from ray import cloudpickle

    try:
        cloudpickle.dumps(args)  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise TypeError(
            "processor_class_init_args must be picklable (each worker process builds its "
            f"processor from a copy; pass what builds the object, such as a path or a URL): "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _check_timeout(timeout: object, default: float | None) -> float | None:
    """Returns the deadline in seconds a request gets (None: none), or raises naming
    ``timeout``."""
    if timeout is None:
        return default
    if type(timeout) is float and 0 < timeout < math.inf:  # the common case, quickly
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            "timeout must be a number of seconds (None: the service's request_timeout; "
            f"math.inf: no deadline), got {timeout!r:.80}"
        )
    if not timeout > 0:  # also NaN
        raise ValueError(f"timeout must be more than 0 seconds, got {timeout!r}")
    return None if math.isinf(timeout) else float(timeout)


def _check_priority(priority: object) -> None:
    """Raises naming ``priority`` if it is not an int."""
    if type(priority) is not int and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise TypeError(f"priority must be an int (higher runs first), got {priority!r:.80}")


def _check_block(block: object, block_timeout: object) -> None:
    """Raises naming ``block`` or ``block_timeout`` if either is not valid."""
    if not isinstance(block, bool):
        raise TypeError(f"block must be True or False, got {block!r:.80}")
    if block_timeout is None:
        return
    if isinstance(block_timeout, bool) or not isinstance(block_timeout, (int, float)):
        raise TypeError(
            f"block_timeout must be a number of seconds or None, got {block_timeout!r:.80}"
        )
    if not block_timeout >= 0:  # also NaN
        raise ValueError(f"block_timeout must be 0 seconds or more, got {block_timeout!r}")


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    last = text[-1] if text else ""
    return f"{type(error).__name__}: {last}" if last else type(error).__name__
