"""The Coordinator: one actor per service, the thin Ray shell around the scheduler.

::

    clients (drivers)               Coordinator (async actor)               workers (N actors)
    submit(Submit) ------------->   Scheduler: dedup over all clients,      run(WorkBatch)
    abort(Abort) --------------->   queue, dispatch, take-back, retries
    abort_unstarted(Abort) ----->     (withdraws only what has not started)
    poll() <-- [Outcomes, ...]  <-- mailboxes <-- scheduler.chunk(...)  <-- outcomes(batch_id):
                                                                            chunks as produced
                                    Skip / TakeBack / Expire --> worker.skip(batch_id, positions)
                                    Cancel --> ray.cancel(the batch's run() ref)
                                    Kill --> ray.kill(worker); Ray restarts it
                                    Retire --> ray.kill(worker) for good (resize)
                                    Recycle --> a fresh worker in its place
                                    timer --> scheduler.tick() at scheduler.next_timer()
                                    every 1 s --> metrics.update(counts) --> ray.util.metrics

Every decision is the :class:`~raypw.scheduler.Scheduler`'s; this class only turns its actions
into Ray calls and Ray's answers into its events. It runs one event loop in one thread, so
neither needs a lock, and it never blocks: it awaits refs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import Any

from raypw.autoscale import Autoscaler
from raypw.batching import BatchSizer
from raypw.cache import ResultCache
from raypw.config import ServiceConfig
from raypw.metrics import METRICS_SECONDS, Counts, ServiceMetrics, service_tags
from raypw.protocol import Abort, Closed, FastPathReport, Lease, News, Submit
from raypw.scheduler import (
    Action,
    Cancel,
    Dispatch,
    Expire,
    Kill,
    Recycle,
    Retire,
    Scheduler,
    Skip,
    SkipUnstarted,
    TakeBack,
)
from raypw.stats import Throughput

__all__ = ["Coordinator"]

logger = logging.getLogger("raypw")

# How long a client's poll() waits for news before returning empty-handed: short enough for a
# client to notice a dead coordinator soon, long enough to cost nothing.
POLL_SECONDS = 2.0
# A call to a worker just killed on purpose may reach the dying process and fail as if the
# worker were gone for good: that many such failures in a row are taken as its restart.
KILLED_WORKER_DEATHS = 10


# The coordinator's young-generation GC threshold (CPython's default: 700). See _tune_gc.
GC_THRESHOLD = 10_000


def _tune_gc() -> None:
    """Makes the garbage collector cheap in this process, which is raypw's own.

    Every queued request is a few objects the collector tracks, and with the default
    thresholds it spent about a quarter of the coordinator's time (1 s over 300,000 no-op
    requests, nine full collections of ~80 ms). What exists once the coordinator is up
    (Ray's, pydantic's and raypw's module objects) is frozen out of every collection, and
    young collections come every GC_THRESHOLD allocations. Measured (benchmarks.controls'
    service, 4 rounds each): 66-79k -> 82-95k requests/s plain, 64-68k -> 71-79k with
    priorities and deadlines.
    """
    import gc

    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, older, oldest)


class WorkerRestartedError(RuntimeError):
    """A call meant for a worker's process reached the one Ray started in its place: the
    process the batch went to died."""


class Coordinator:
    """The service's coordinator actor: runs the scheduler's actions and the clients' polls.

    Args:
        processor_class: The user's :class:`~raypw.Processor` subclass (or its cloudpickle
            bytes, when a client that attached by name replaces a dead coordinator).
        config: The service's validated configuration.
        service_info: What clients attaching by name learn from :meth:`info`.
    """

    def __init__(
        self, processor_class: Any, config: ServiceConfig, service_info: dict[str, Any]
    ) -> None:
        if isinstance(processor_class, bytes):
            from ray import cloudpickle

            processor_class = cloudpickle.loads(processor_class)
        self._processor_class: type = processor_class
        self._config = config
        self._info = dict(service_info)
        batching = config.batching
        sizer = BatchSizer(
            batching.target_batch_seconds, batching.max_batch_size, batching.max_batch_seconds
        )
        self._scheduler = Scheduler(
            config.parallel_workers,
            sizer,
            config.max_retries,
            grace=config.request_timeout_grace,
            max_requests_per_worker=config.max_requests_per_worker,
            cache=None
            if config.cache is None
            else ResultCache(
                config.cache.max_entries, config.cache.max_bytes, config.cache.ttl_seconds
            ),
        )
        # The call that runs scheduler.tick() at its next deadline, and when that is.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0
        self._starting: asyncio.Future[list[int]] | None = None
        self._workers: list[Any] = []
        self._pids: list[int] = []  # process id of each worker, 0 while it restarts
        self._retired: set[int] = set()  # slots of workers ended by a resize
        self._restarting: set[int] = set()
        # Batch id -> the ref of its run() call and the process it was sent to.
        self._runs: dict[int, tuple[Any, int]] = {}
        # Worker -> an event set when the batch last sent to it is over: a batch sent behind
        # another settles nothing before that one ended, so one worker's results arrive in
        # the order it produced them (their outcomes() answers race otherwise).
        self._last_ended: dict[int, asyncio.Event] = {}
        self._mail: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._throughput = Throughput()
        self._metrics: ServiceMetrics | None = None
        if config.metrics:
            self._metrics = ServiceMetrics(
                service_tags(
                    config.name,
                    str(service_info.get("creator", "")),
                    str(service_info.get("processor", "")),
                )
            )
        self._closed = False

    # -- start and stop ------------------------------------------------------------------

    async def start(self, timeout: float) -> list[int]:
        """Starts the workers and waits until each processor is built. Idempotent: a second
        call (another client of a named service) waits for the same start.

        Returns:
            The process id of each worker.

        Raises:
            Exception: The processor constructor's exception, or a timeout; no worker is
                left running.
        """
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start(timeout))
        return await asyncio.shield(self._starting)

    async def _start(self, timeout: float) -> list[int]:
        import ray

        self._workers = [self._new_worker() for _ in range(self._config.parallel_workers)]
        try:
            pids = await asyncio.wait_for(
                asyncio.gather(*(worker.ready.remote() for worker in self._workers)), timeout
            )
        except BaseException as exc:
            for worker in self._workers:
                ray.kill(worker)
            self._workers = []
            error = self._not_up(exc)
            if error is exc:
                raise
            raise error from exc
        self._pids = list(pids)
        _tune_gc()
        self._act(self._scheduler.workers_started())
        self._spawn(self._forget_silent_clients())
        if self._config.autoscale is not None:
            self._spawn(self._autoscale(Autoscaler(self._config.autoscale)))
        if self._metrics is not None:
            self._spawn(self._export_metrics(self._metrics))
        return list(pids)

    def _new_worker(self) -> Any:
        """Creates one worker actor (its processor is built in the background)."""
        from raypw.worker import remote_worker_class

        config = self._config
        args, kwargs = config.init_args()
        # Ray restarts a dead worker (its processor is rebuilt); the scheduler, not Ray,
        # retries the requests it held, so each is counted against max_retries.
        options = {
            "scheduling_strategy": "SPREAD",
            "max_restarts": -1,
            "max_task_retries": 0,
            **config.worker.actor_options(),
        }
        return remote_worker_class().options(**options).remote(self._processor_class, args, kwargs)

    async def info(self) -> dict[str, Any]:
        """Describes the service: name, processor, configuration, creator."""
        from ray import cloudpickle

        blob = cloudpickle.dumps(self._processor_class)  # type: ignore[no-untyped-call]
        config = self._config
        return {**self._info, "processor_blob": blob, "init_args": config.processor_class_init_args}

    async def shutdown(self, reason: str = "the service was stopped") -> None:
        """Stops serving and ends the workers; every client hears ``reason`` first."""
        import ray

        self._closed = True
        self._scheduler.close_all(Closed(reason))
        self._wake()
        deadline = time.monotonic() + 1.0  # let waiting clients collect the news
        while self._scheduler.mail_waiting() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for task in list(self._tasks):
            task.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for worker in self._workers:
            ray.kill(worker)
        self._workers = []

    # -- clients -------------------------------------------------------------------------

    async def connect(self, client: str) -> int:
        """Registers a client; returns its epoch, which its submits carry."""
        epoch, actions = self._scheduler.connect(client)
        self._mail.setdefault(client, asyncio.Event())
        # What it had here is withdrawn before it submits again: its workers answer first,
        # so a request it submits anew is not still running under its old id.
        for action in actions:
            if isinstance(action, Skip):
                await self._skip(action)
        self._act([a for a in actions if not isinstance(a, Skip)])
        return epoch

    async def submit(self, message: Submit) -> bool:
        """Queues a client's requests; False if the client is not known here (it learns so
        from its next poll, connects and submits again)."""
        if not self._scheduler.knows(message.client):
            return False
        if message.died:
            message = self._fast_path_deaths(message)
        self._act(self._scheduler.submit(message))
        return True

    def _fast_path_deaths(self, message: Submit) -> Submit:
        """Treats the workers a client saw die under its fast-path requests as dead (it
        held nothing of the scheduler's, so nobody else noticed): nothing goes to one until
        Ray restarted it. Only if the slot still holds the process the request went to: a
        worker retired meanwhile did not die, a slot filled again (the pool shrank and grew)
        holds a healthy worker, and a coordinator started since (the old one died, and its
        workers with it) never had that process; the request, then, is not charged a
        retry. (One whose death the coordinator noticed first is not charged either.)"""
        died = []
        for run in message.died or ():
            index = run.worker
            if (
                0 <= index < len(self._workers)
                and index not in self._retired
                and run.pid
                and self._pids[index] == run.pid
            ):
                died.append(run)
                self._worker_died(
                    run.worker, WorkerRestartedError(f"worker {run.worker} died (fast path)")
                )
        return dataclasses.replace(message, died=died or None)

    async def abort(self, message: Abort) -> int:
        """Withdraws requests; returns how many were stopped before they started.

        Queued requests are dropped. Dispatched ones that nobody else waits for are skipped
        by their worker if they have not started, and the batch is cancelled with
        ``ray.cancel`` when nothing it still runs is wanted.
        """
        actions = self._scheduler.abort(message)
        started = 0
        for action in actions:
            if isinstance(action, Skip):
                started += await self._skip(action)
        self._act([a for a in actions if not isinstance(a, Skip)])
        return len(message.ids) - started

    async def abort_unstarted(self, message: Abort) -> list[int]:
        """Withdraws those of the requests that have not started; returns their ids.

        Queued requests are withdrawn at once; for each one sent to a worker, that worker is
        asked to skip it, and it is withdrawn only if it had not started. The others run on
        and their outcomes reach the client as usual.
        """
        withdrawn, asks = self._scheduler.abort_unstarted(message)
        while asks:
            answers = await asyncio.gather(*(self._ask_to_skip(ask) for ask in asks))
            further: list[SkipUnstarted] = []
            for ask, late in zip(asks, answers, strict=True):
                ids, more = self._scheduler.skipped_unstarted(ask, late)
                withdrawn.extend(ids)
                further.extend(more)
            asks = further
        self._wake()
        return withdrawn

    async def _ask_to_skip(self, ask: SkipUnstarted) -> list[int]:
        """Asks a worker to skip positions; returns those that had started (all of them if
        the worker is gone: the scheduler then finds its requests requeued)."""
        late = await self._skip_positions(ask.worker, ask.batch_id, ask.positions)
        return list(ask.positions) if late is None else late

    async def poll(self, client: str, timeout: float = POLL_SECONDS) -> list[News]:
        """Returns a client's news, waiting up to ``timeout`` seconds for some."""
        scheduler = self._scheduler
        news = scheduler.take_mail(client)
        if news or not scheduler.knows(client):
            return news
        event = self._mail.setdefault(client, asyncio.Event())
        event.clear()
        scheduler.polling(client, +1)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        finally:
            scheduler.polling(client, -1)
        return scheduler.take_mail(client)

    async def disconnect(self, client: str) -> None:
        """Forgets a client and withdraws whatever it still waits for."""
        self._act(self._scheduler.disconnect(client))

    async def leave(self, client: str) -> None:
        """Forgets a client but keeps its queued requests: they are still processed, once,
        and their results dropped (a program exited while a detached service had its work)."""
        self._scheduler.leave(client)
        self._wake()

    async def _forget_silent_clients(self) -> None:
        """Withdraws the requests of clients that stopped polling (a killed program), so a
        long-lived service neither processes work nobody waits for nor keeps its results."""
        timeout = self._config.client_timeout
        while True:
            await asyncio.sleep(max(0.5, timeout / 4))
            try:
                for client in self._scheduler.silent_clients(timeout):
                    logger.warning(
                        "a raypw client was silent for over %.0f s; its requests are withdrawn",
                        timeout,
                    )
                    self._act(self._scheduler.disconnect(client))
                    self._mail.pop(client, None)
            except Exception:  # one failure must not end the forgetting for good
                logger.exception("raypw: forgetting silent clients failed")

    # -- the pool's size -----------------------------------------------------------------

    async def resize(self, workers: int) -> int:
        """Grows the pool to ``workers`` at once, or shrinks it: idle workers go first, and a
        busy one gives back what it has not started and goes once it finished the rest.

        Returns:
            The pool's size now: ``workers`` (a pool never shrinks below one).

        Raises:
            Exception: A new worker's processor constructor raised, or the new workers were
                not up within ``start_timeout``; those that failed are not kept.
        """
        scheduler = self._scheduler
        now = scheduler.workers
        if workers < now:
            self._act(scheduler.retire_workers(now - workers))
        elif workers > now:
            results = await asyncio.gather(
                *(self._add_worker(index) for index in scheduler.add_workers(workers - now)),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        return scheduler.workers

    async def _autoscale(self, autoscaler: Autoscaler) -> None:
        """Resizes the pool to what the autoscaler asks for, every ``check_seconds``."""
        scheduler = self._scheduler
        while True:
            await asyncio.sleep(autoscaler.config.check_seconds)
            try:
                workers = scheduler.workers
                target = autoscaler.target(
                    workers=workers,
                    waiting=scheduler.waiting,
                    typical_seconds=scheduler.typical_seconds,
                    idle_since=scheduler.idle_workers(),
                    now=time.monotonic(),
                )
                if target > workers:
                    for index in scheduler.add_workers(target - workers):
                        self._spawn(self._scale_up(autoscaler, index))
                elif target < workers:
                    self._act(scheduler.retire_workers(workers - target))
            except Exception:  # one failure must not end autoscaling for good
                logger.exception("raypw: autoscaling failed")

    async def _scale_up(self, autoscaler: Autoscaler, index: int) -> None:
        try:
            await self._add_worker(index)
        except Exception as exc:
            autoscaler.grow_failed(time.monotonic())
            logger.error("raypw could not add a worker (autoscale): %s", exc)

    async def _add_worker(self, index: int) -> None:
        """Starts a worker in slot ``index`` and hands it to the scheduler once it is up."""
        import ray

        actor = self._new_worker()
        if index == len(self._workers):
            self._workers.append(actor)
            self._pids.append(0)
        else:
            self._workers[index] = actor
            self._pids[index] = 0
        self._retired.discard(index)
        try:
            pid = await asyncio.wait_for(actor.ready.remote(), self._config.start_timeout)
        except BaseException as exc:
            ray.kill(actor, no_restart=True)
            self._retired.add(index)
            error = self._not_up(exc)
            self._act(self._scheduler.worker_gone(index, error))
            if error is exc:
                raise
            raise error from exc
        if self._workers[index] is actor:
            self._pids[index] = pid
            self._act(self._scheduler.worker_back(index))

    def _not_up(self, exc: BaseException) -> BaseException:
        """What a worker that did not come up failed of: a timeout says what it waited for
        (asyncio's says nothing: the log read "could not add a worker: ")."""
        if not isinstance(exc, TimeoutError):
            return exc
        wanted = self._config.worker.model_dump(exclude_none=True, exclude={"runtime_env"})
        return TimeoutError(
            f"the worker was not up within start_timeout ({self._config.start_timeout:g} s): "
            f"no node had {wanted or 'a CPU'} free for it, or its processor took that long "
            "to build"
        )

    def _retire(self, index: int) -> None:
        """Ends a worker the pool no longer needs (it holds nothing)."""
        import ray

        ray.kill(self._workers[index], no_restart=True)
        self._pids[index] = 0
        self._retired.add(index)

    async def _recycle(self, index: int) -> None:
        """Replaces a worker that processed ``max_requests_per_worker`` with a fresh one."""
        import ray

        old = self._workers[index]
        ray.kill(old, no_restart=True)
        self._pids[index] = 0
        try:
            await self._add_worker(index)
        except Exception as exc:  # not CancelledError: shutdown() ends a replacement quietly
            logger.error("raypw could not replace recycled worker %d: %s", index, exc)

    async def _export_metrics(self, metrics: ServiceMetrics) -> None:
        """Brings the service's Ray metrics up to date every ``METRICS_SECONDS``. A failure
        is logged once (until an update succeeds again) and never stops the service."""
        failing = False
        while True:
            try:
                metrics.update(self._counts())
                failing = False
            except Exception:
                if not failing:
                    logger.exception("raypw: updating the service's metrics failed")
                failing = True
            await asyncio.sleep(METRICS_SECONDS)

    # -- status --------------------------------------------------------------------------

    async def lease(self) -> Lease | None:
        """Returns a worker that is up, to which a service's only client sends a lone
        request itself (the idle-pool fast path); None if no worker is up. The lowest
        slot: a shrinking pool retires the highest idle ones first."""
        for index in range(len(self._workers)):
            if self._pids[index] and index not in self._retired:
                return Lease(index, self._workers[index], self._pids[index])
        return None

    async def fast_path_done(self, report: FastPathReport) -> None:
        """Counts what a client's lone requests, sent straight to a worker, did."""
        self._act(self._scheduler.fast_path_done(report))
        self._throughput.add(report.processed)
        if self._metrics is not None and report.processed:
            self._metrics.chunk(report.processed, report.seconds, report.waited / report.processed)

    async def worker_pids(self) -> list[int]:
        """Returns the process id of each worker (0 while one is being restarted)."""
        return [pid for index, pid in enumerate(self._pids) if index not in self._retired]

    async def stats(self) -> dict[str, Any]:
        """Returns the service-wide counters."""
        counts = self._counts()
        cache = self._scheduler.cache
        return {
            "queued": counts.queued,
            "running": counts.running,
            "processed": counts.processed,
            "failed": counts.failed,
            "timed_out": counts.timed_out,
            "deduplicated": counts.deduplicated,
            "workers": counts.workers,
            "workers_alive": counts.workers_alive,
            "workers_up": self._scheduler.workers_up,
            "worker_recycles": self._scheduler.worker_recycles,
            "throughput": self._throughput.rate(),
            "worker_restarts": counts.worker_restarts,
            "clients": self._scheduler.clients,
            "cache_hits": counts.cache_hits,
            "cache_entries": 0 if cache is None else len(cache),
            "cache_bytes": 0 if cache is None else cache.bytes,
        }

    def _counts(self) -> Counts:
        scheduler = self._scheduler
        return Counts(
            queued=scheduler.queued,
            running=scheduler.running,
            workers=scheduler.workers,
            workers_alive=scheduler.workers_alive,
            processed=scheduler.processed,
            failed=scheduler.failed,
            timed_out=scheduler.timed_out,
            deduplicated=scheduler.deduplicated,
            worker_restarts=scheduler.worker_restarts,
            cache_hits=0 if scheduler.cache is None else scheduler.cache.hits,
        )

    # -- performing the scheduler's actions -----------------------------------------------

    def _act(self, actions: list[Action]) -> None:
        import ray

        for action in actions:
            if isinstance(action, Dispatch):
                # Sent here, so a skip or a cancel that follows finds the run and the
                # process it went to.
                pid = self._pids[action.worker]
                run = self._workers[action.worker].run.remote(action.batch, pid)
                self._runs[action.batch.batch_id] = (run, pid)
                self._spawn(self._run(action))
            elif isinstance(action, Skip):
                self._spawn(self._skip(action))
            elif isinstance(action, TakeBack):
                self._spawn(self._take_back(action))
            elif isinstance(action, Cancel):
                sent = self._runs.get(action.batch_id)
                if sent is not None:
                    ray.cancel(sent[0])  # lets a cooperative process() see is_canceled()
            elif isinstance(action, Expire):
                self._spawn(self._expire(action))
            elif isinstance(action, Kill):
                self._kill(action.worker)
            elif isinstance(action, Retire):
                self._retire(action.worker)
            elif isinstance(action, Recycle):
                self._spawn(self._recycle(action.worker))
        self._wake()
        self._arm_timer()

    def _arm_timer(self) -> None:
        """Makes sure :meth:`_on_timer` runs at the scheduler's next deadline."""
        due = self._scheduler.next_timer()
        if due is None or self._closed:
            return
        if self._timer is not None:
            if self._timer_due <= due:
                return  # an earlier call is set; it arms the next one
            self._timer.cancel()
        self._timer_due = due
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, due - time.monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        try:
            self._act(self._scheduler.tick())
        except Exception:  # a bug of raypw's: keep the timer going rather than hang promises
            logger.exception("raypw: the coordinator's deadline timer failed")
            self._arm_timer()

    def _wake(self) -> None:
        woken = self._scheduler.woken
        for client in woken:
            event = self._mail.get(client)
            if event is not None:
                event.set()
        woken.clear()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, action: Dispatch) -> None:
        """Feeds a sent batch's outcomes to the scheduler as they come: one
        ``outcomes`` call waits on the worker at a time, and is made again at once."""
        from ray.exceptions import RayActorError, RayError, RayTaskError, TaskCancelledError

        scheduler, metrics = self._scheduler, self._metrics
        index, batch_id = action.worker, action.batch.batch_id
        worker = self._workers[index]
        run, pid = self._runs[batch_id]
        before = self._last_ended.get(index)
        ended = self._last_ended[index] = asyncio.Event()
        try:
            while True:
                chunk = await worker.outcomes.remote(batch_id, scheduler.chunk_seconds, pid)
                if chunk is None:  # Ray restarted the worker: the call reached the new one
                    raise WorkerRestartedError(f"worker {index} (pid {pid}) died")
                if before is not None:
                    await before.wait()
                    before = None
                self._throughput.add(len(chunk.positions))
                if metrics is not None:
                    metrics.chunk(len(chunk.positions), chunk.seconds, scheduler.waited(chunk))
                self._act(scheduler.chunk(index, chunk))
                if chunk.final:
                    break
            with contextlib.suppress(RayError):  # its outcomes said all: read, not leave, it
                await run
        except (RayActorError, WorkerRestartedError) as exc:  # the process or its node died
            if scheduler.has_batch(batch_id):  # not a death already handled
                self._worker_died(index, exc)
        except TaskCancelledError as exc:  # nobody wanted what it still ran
            self._act(scheduler.batch_failed(batch_id, exc, retry=True))
        except RayTaskError as exc:  # raypw's own worker code failed: not retryable
            logger.error("raypw worker %d failed a batch: %s", index, exc)
            self._act(scheduler.batch_failed(batch_id, exc, retry=False))
        except RayError as exc:  # an outcome was lost (its node died): run it again
            logger.warning("raypw lost outcomes of a batch (%s); requeued", type(exc).__name__)
            self._act(scheduler.batch_failed(batch_id, exc, retry=True))
        except Exception as exc:  # a bug of raypw's: fail the batch rather than hang it
            logger.exception("raypw: a batch failed in the coordinator")
            self._act(scheduler.batch_failed(batch_id, exc, retry=False))
        finally:
            self._runs.pop(batch_id, None)
            ended.set()

    async def _skip_positions(
        self, worker: int, batch_id: int, positions: list[int]
    ) -> list[int] | None:
        """Asks a worker not to start ``positions`` of a batch; returns those that had
        started, or None if the worker died (the batch's runner handles that) or the batch
        ended already (its last chunk settled it)."""
        from ray.exceptions import RayError

        sent = self._runs.get(batch_id)
        if sent is None:
            return None
        pid = sent[1]
        try:
            late: list[int] | None = await self._workers[worker].skip.remote(
                batch_id, positions, pid
            )
        except RayError:
            return None
        return late

    async def _skip(self, action: Skip) -> int:
        """Asks a worker to skip aborted positions; returns how many had started."""
        late = await self._skip_positions(action.worker, action.batch_id, action.positions)
        if late is None:
            return len(action.positions)
        self._act(self._scheduler.skipped(action.batch_id, late))
        return len(late)

    async def _take_back(self, action: TakeBack) -> None:
        """Asks a worker for unstarted positions back, for an idle worker."""
        late = await self._skip_positions(action.worker, action.batch_id, action.positions)
        if late is None:  # its worker died: nothing moved
            late = action.positions
        self._act(self._scheduler.taken_back(action.batch_id, action.positions, late))

    async def _expire(self, action: Expire) -> None:
        """Asks a worker not to start requests past their deadline (and those behind them)."""
        late = await self._skip_positions(action.worker, action.batch_id, action.positions)
        if late is None:  # its worker died: nothing moved
            late = action.positions
        self._act(self._scheduler.expired(action.batch_id, action.positions, late))

    def _kill(self, index: int) -> None:
        """Kills a worker stuck past a deadline; Ray restarts it (the scheduler has already
        taken back what it held)."""
        import ray

        if index in self._restarting:
            return
        pid = self._pids[index]
        logger.warning(
            "raypw worker %d (pid %d) still ran a request past its deadline and %g s of grace "
            "after ray.cancel; killing it (Ray restarts it)",
            index,
            pid,
            self._config.request_timeout_grace,
        )
        ray.kill(self._workers[index], no_restart=False)
        self._pids[index] = 0
        self._restarting.add(index)
        cause = RuntimeError(f"worker {index} was killed: a request overran its deadline")
        self._spawn(self._await_restart(index, cause, old_pid=pid))

    def _worker_died(self, index: int, cause: BaseException) -> None:
        if index in self._restarting:
            return
        self._pids[index] = 0
        logger.warning("a raypw worker died (%s); its requests are requeued", type(cause).__name__)
        self._act(self._scheduler.worker_died(index, cause))
        self._restarting.add(index)
        self._spawn(self._await_restart(index, cause))

    def _moved_on(self, index: int, actor: Any) -> bool:
        """Whether slot ``index`` no longer holds ``actor``: retired, or given a new worker."""
        return self._workers[index] is not actor or index in self._retired

    async def _await_restart(self, index: int, cause: BaseException, old_pid: int = 0) -> None:
        """Waits until Ray restarted worker ``index``, or finds it gone for good.

        Args:
            old_pid: The process id of a worker killed on purpose: until it is dead it may
                still answer, and an answer from it does not count as the restart.
        """
        from ray.exceptions import ActorDiedError, RayError

        deadline = time.monotonic() + self._config.start_timeout
        died = 0
        actor = self._workers[index]
        try:
            while time.monotonic() < deadline:
                if self._moved_on(index, actor):
                    return  # retired or replaced meanwhile: nothing to wait for
                try:
                    pid = await actor.ready.remote()
                except ActorDiedError:
                    # Out of restarts, or its constructor failed on restart; or, just after a
                    # kill, the call went to the old process as it died.
                    died += 1
                    if not old_pid or died > KILLED_WORKER_DEATHS:
                        break
                    await asyncio.sleep(0.2)
                except RayError:
                    await asyncio.sleep(0.2)  # restarting: unavailable for now
                else:
                    if old_pid and pid == old_pid:
                        await asyncio.sleep(0.05)  # the old process, not yet dead
                        continue
                    if self._moved_on(index, actor):
                        return
                    self._pids[index] = pid
                    self._act(self._scheduler.worker_back(index))
                    return
            if self._moved_on(index, actor):
                return
            logger.error("raypw worker %d is gone for good: %s", index, cause)
            self._act(self._scheduler.worker_gone(index, cause))
        finally:
            self._restarting.discard(index)
