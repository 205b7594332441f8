"""The Coordinator: one actor per service that owns the queue and feeds the workers.

::

    clients (drivers)              Coordinator (async actor)              workers (N actors)
    submit(ids, requests) ---->    WorkQueue: key -> item (dedup over     process_batch(batch)
                                   all clients), FIFO of items     --->   -> (report, outcomes)
    poll() <---- (outcomes ref, positions, ids) per dispatched batch
    abort(ids) ---->               drop queued items; skip/cancel dispatched ones

Each worker has one serving loop here: when the worker is idle, the loop takes the next batch
from the shared queue (so workers compete for work), calls the worker, tells every client
whose requests are in the batch where the outcomes will be (the batch's ``ObjectRef``), and
awaits the small report to size the next batch. While every worker is busy and work is
queued, each loop also sends the batch after, so no worker waits a round trip between two
batches; a worker that falls idle takes back what a sibling holds but has not started.
Outcomes go from the object store straight to the clients; the Coordinator never fetches them.

:class:`WorkQueue` is plain Python and holds all the bookkeeping; :class:`Coordinator` adds the
Ray calls. The Coordinator runs one event loop in one thread, so neither needs a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Hashable, Sequence
from typing import Any

from raypw.batching import BatchSizer
from raypw.stats import Throughput

__all__ = ["Coordinator", "WorkQueue"]

logger = logging.getLogger("raypw")

# How long a client's poll() waits for news before returning empty-handed: short enough for a
# client to notice a dead coordinator soon, long enough to cost nothing.
POLL_SECONDS = 2.0
# Batches a worker holds at most: the one it runs and the next, sent while the first runs.
PIPELINE_DEPTH = 2
# A client that has not polled for this long (its process was killed, or froze) is forgotten
# and what it still waited for is withdrawn; it re-registers if it comes back.
CLIENT_TIMEOUT_SECONDS = 60.0


class _Item:
    """One distinct pending request and the (client, request id) pairs waiting for it."""

    __slots__ = ("attempts", "batch", "key", "position", "request", "subscribers")

    def __init__(self, key: Hashable, request: Any, client: str, request_id: int) -> None:
        self.key = key
        self.request = request
        self.subscribers: list[tuple[str, int]] = [(client, request_id)]
        self.batch: _Batch | None = None  # set once dispatched
        self.position = -1
        self.attempts = 0  # times its worker died while it was dispatched


class _Batch:
    """A batch sent to a worker."""

    __slots__ = (
        "batch_id",
        "dispatched",
        "items",
        "outcome_ref",
        "queued_behind",
        "report_ref",
        "suspect",
        "taken_back",
        "worker",
    )

    def __init__(
        self, batch_id: int, worker: int, items: list[_Item], queued_behind: bool = False
    ) -> None:
        self.batch_id = batch_id
        self.worker = worker
        self.items = items
        self.queued_behind = queued_behind  # sent while the worker ran another batch
        self.taken_back = False  # an idle worker asked for its unstarted requests
        self.dispatched = time.perf_counter()
        # Holds a request whose worker died before (then it holds that one alone).
        self.suspect = any(item.attempts for item in items)
        self.report_ref: Any = None
        self.outcome_ref: Any = None

    def live(self) -> bool:
        """True while some client still waits for an item this batch holds."""
        return any(item.subscribers for item in self.items if item.batch is self)

    def own(self, items: list[_Item]) -> list[_Item]:
        """The given items of this batch that were not moved to another one."""
        return [item for item in items if item.batch is self]


class WorkQueue:
    """The queue of distinct requests, deduplicated across all clients.

    A request joins an equal one (same key) that is queued or running; the item is forgotten
    when its batch finishes, so a later equal request is processed again.
    """

    def __init__(self) -> None:
        self._queue: deque[_Item] = deque()
        self._by_key: dict[Hashable, _Item] = {}
        self._by_client: dict[str, dict[int, _Item]] = {}
        # Per client: the highest request id received, and aborts that overtook their submit
        # (ids above it), applied when the submit arrives.
        self._highest: dict[str, int] = {}
        self._early_aborts: dict[str, set[int]] = {}
        self._left: set[str] = set()  # clients gone whose requests are still processed
        self.queued = 0  # live items in the queue
        self.deduplicated = 0

    def __len__(self) -> int:
        return self.queued

    def add_client(self, client: str) -> None:
        self._by_client.setdefault(client, {})

    def add(
        self,
        client: str,
        ids: Sequence[int],
        requests: Sequence[Any],
        keys: Sequence[Hashable] | None,
    ) -> list[_Item]:
        """Adds requests; returns the items joined that are already dispatched."""
        mine = self._by_client.setdefault(client, {})
        by_key = self._by_key
        joined_running: list[_Item] = []
        early = self._early_aborts.get(client)
        if ids:
            self._highest[client] = max(self._highest.get(client, 0), max(ids))
        for index, request_id in enumerate(ids):
            if early and request_id in early:
                early.discard(request_id)
                continue
            request = requests[index]
            key = request if keys is None else keys[index]
            item = by_key.get(key)
            if item is None:
                item = by_key[key] = _Item(key, request, client, request_id)
                self._queue.append(item)
                self.queued += 1
            else:
                item.subscribers.append((client, request_id))
                self.deduplicated += 1
                if item.batch is not None:
                    joined_running.append(item)
            mine[request_id] = item
        return joined_running

    def take(self, size: int) -> list[_Item]:
        """Removes up to ``size`` live items from the front of the queue.

        An item that was in a batch whose worker died goes alone, so that a request that
        kills its worker cannot take innocent batch-mates down with it again.
        """
        taken: list[_Item] = []
        queue = self._queue
        while queue and len(taken) < size:
            item = queue.popleft()
            if not item.subscribers:
                continue
            if item.attempts and taken:
                queue.appendleft(item)
                break
            taken.append(item)
            if item.attempts:
                break
        self.queued -= len(taken)
        return taken

    def abort(self, client: str, ids: Sequence[int]) -> list[_Item]:
        """Withdraws a client's requests; returns dispatched items nobody waits for now."""
        mine = self._by_client.get(client, {})
        highest = self._highest.get(client, 0)
        orphaned: list[_Item] = []
        for request_id in ids:
            item = mine.pop(request_id, None)
            if item is None:
                if request_id > highest:  # its submit is still on the way
                    self._early_aborts.setdefault(client, set()).add(request_id)
                continue  # else finished already
            item.subscribers.remove((client, request_id))
            if item.subscribers:
                continue
            if self._by_key.get(item.key) is item:
                del self._by_key[item.key]  # an equal request queued later is processed anew
            if item.batch is None:
                self.queued -= 1  # stays in the deque; take() drops it
            else:
                orphaned.append(item)
        return orphaned

    def drop_client(self, client: str) -> list[_Item]:
        """Withdraws every request of a client that went away."""
        mine = self._by_client.get(client)
        if not mine:
            self._by_client.pop(client, None)
            self._highest.pop(client, None)
            self._early_aborts.pop(client, None)
            return []
        orphaned = self.abort(client, list(mine))
        del self._by_client[client]
        self._highest.pop(client, None)
        self._early_aborts.pop(client, None)
        return orphaned

    def leave(self, client: str) -> None:
        """Keeps a departed client's requests queued; forgets the client once they finish."""
        self._early_aborts.pop(client, None)
        if self._by_client.get(client):
            self._left.add(client)
        else:
            self._by_client.pop(client, None)
            self._highest.pop(client, None)

    def finish(self, items: list[_Item]) -> None:
        """Forgets the items of a finished batch."""
        by_key = self._by_key
        by_client = self._by_client
        for item in items:
            if by_key.get(item.key) is item:
                del by_key[item.key]
            for client, request_id in item.subscribers:
                mine = by_client.get(client)
                if mine is not None:
                    mine.pop(request_id, None)
                    if not mine and client in self._left:
                        self._left.discard(client)
                        del by_client[client]
                        self._highest.pop(client, None)

    def requeue_front(self, items: list[_Item]) -> None:
        """Puts items back at the front of the queue, in order (their worker failed)."""
        for item in reversed(items):
            if item.subscribers:
                item.batch = None
                item.position = -1
                self._queue.appendleft(item)
                self.queued += 1


class Coordinator:
    """The service's coordinator actor: queue, dedup, dispatch and the clients' mailboxes.

    Args:
        processor_class: The user's :class:`~raypw.Processor` subclass.
        init_args: Positional arguments for the processor's constructor.
        init_kwargs: Keyword arguments for the processor's constructor.
        parallel_workers: Number of workers.
        worker_options: Ray actor options for each worker.
        target_batch_seconds: See :class:`~raypw.config.BatchingConfig`.
        max_batch_size: See :class:`~raypw.config.BatchingConfig`.
        max_batch_seconds: See :class:`~raypw.config.BatchingConfig`.
        max_retries: Times a request is dispatched again after its worker died.
        restart_timeout: Seconds to wait for Ray to restart a dead worker.
        service_info: What clients attaching by name learn from :meth:`info`.
        client_timeout: Seconds of silence after which a client is forgotten.
    """

    def __init__(
        self,
        processor_class: type,
        init_args: tuple[Any, ...],
        init_kwargs: dict[str, Any],
        parallel_workers: int,
        worker_options: dict[str, Any],
        target_batch_seconds: float,
        max_batch_size: int,
        max_batch_seconds: float,
        max_retries: int = 3,
        restart_timeout: float = 120.0,
        service_info: dict[str, Any] | None = None,
        client_timeout: float = CLIENT_TIMEOUT_SECONDS,
    ) -> None:
        if isinstance(processor_class, bytes):  # handed on by a client that attached by name
            from ray import cloudpickle

            processor_class = cloudpickle.loads(processor_class)
        self._processor_class = processor_class
        self._info = dict(service_info or {})
        self._starting: asyncio.Future[list[int]] | None = None
        self._init_args = init_args
        self._init_kwargs = init_kwargs
        self._parallel_workers = parallel_workers
        self._worker_options = worker_options
        self._queue = WorkQueue()
        self._sizer = BatchSizer(target_batch_seconds, max_batch_size, max_batch_seconds)
        self._workers: list[Any] = []
        # Worker index -> the batches sent to it and not yet reported, oldest first.
        self._running: dict[int, deque[_Batch]] = {}
        self._idle = 0  # serving loops waiting for work
        self._serving: list[asyncio.Task[None]] = []
        self._work_ready: asyncio.Event | None = None
        self._mailboxes: dict[str, list[tuple[Any, ...]]] = {}
        self._mail: dict[str, asyncio.Event] = {}
        self._client_timeout = client_timeout
        self._seen: dict[str, float] = {}  # client -> when it last polled (or connected)
        self._polling: dict[str, int] = {}  # client -> polls in progress
        self._forgotten: set[str] = set()  # clients dropped for silence, told so if they poll
        self._next_batch_id = 0
        self._processed = 0
        self._throughput = Throughput()
        self._max_retries = max_retries
        self._restart_timeout = restart_timeout
        self._restarts = 0
        self._pids: list[int] = []  # process id of each worker, 0 while it restarts
        self._alive = 0  # workers still serving
        self._dead: BaseException | None = None  # set once no worker is left

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

    async def info(self) -> dict[str, Any]:
        """Describes the service: name, processor, configuration, creator."""
        from ray import cloudpickle

        blob = cloudpickle.dumps(self._processor_class)  # type: ignore[no-untyped-call]
        return {
            **self._info,
            "processor_blob": blob,
            "init_args": self._init_kwargs or self._init_args or None,
        }

    async def _start(self, timeout: float) -> list[int]:
        import ray

        from raypw.worker import remote_worker_class

        self._work_ready = asyncio.Event()
        actor_class = remote_worker_class()
        # Ray restarts a dead worker (its processor is rebuilt); the coordinator, not Ray,
        # retries the requests it held, so each is counted against max_retries.
        options = {
            "scheduling_strategy": "SPREAD",
            "max_restarts": -1,
            "max_task_retries": 0,
            **self._worker_options,
        }
        self._workers = [
            actor_class.options(**options).remote(
                self._processor_class, self._init_args, self._init_kwargs
            )
            for _ in range(self._parallel_workers)
        ]
        try:
            pids = await asyncio.wait_for(
                asyncio.gather(*(worker.ready.remote() for worker in self._workers)), timeout
            )
        except BaseException:
            for worker in self._workers:
                ray.kill(worker)
            self._workers = []
            raise
        self._pids = list(pids)
        self._alive = len(self._workers)
        loop = asyncio.get_running_loop()
        self._serving = [
            loop.create_task(self._serve(index)) for index in range(len(self._workers))
        ]
        self._serving.append(loop.create_task(self._forget_silent_clients()))
        return list(pids)

    async def connect(self, client: str) -> None:
        """Opens a mailbox for a client."""
        self._forgotten.discard(client)
        self._seen[client] = time.monotonic()
        self._queue.add_client(client)
        self._mailboxes.setdefault(client, [])
        self._mail.setdefault(client, asyncio.Event())

    async def submit(
        self,
        client: str,
        ids: list[int],
        requests: list[Any],
        keys: list[Any] | None = None,
    ) -> None:
        """Queues a client's requests (``keys`` default to the requests themselves)."""
        if client in self._forgotten:
            return  # it learns so from poll() and submits everything pending again
        if client not in self._mailboxes:
            await self.connect(client)
        joined = self._queue.add(client, ids, requests, keys)
        if self._dead is not None:
            self._fail_queue(self._dead)
            return
        for item in joined:  # equal to a request already running: point at its batch
            batch = item.batch
            assert batch is not None
            request_id = item.subscribers[-1][1]
            self._post(client, (batch.outcome_ref, [item.position], [request_id]))
        if len(self._queue) and self._work_ready is not None:
            self._work_ready.set()

    async def abort(self, client: str, ids: list[int]) -> int:
        """Withdraws requests; returns how many were dropped before they started.

        Queued requests are dropped. Dispatched ones that nobody else waits for are skipped
        by their worker if they have not started, and the batch is cancelled with
        ``ray.cancel`` when none of its requests is wanted any more.
        """
        orphaned = self._queue.abort(client, ids)
        return len(ids) - await self._skip(orphaned)

    async def _skip(self, items: list[_Item]) -> int:
        """Tells workers to skip items; returns how many had started already."""
        import ray

        by_batch: dict[int, tuple[_Batch, list[int]]] = {}
        for item in items:
            batch = item.batch
            assert batch is not None
            by_batch.setdefault(batch.batch_id, (batch, []))[1].append(item.position)
        started = 0
        for batch, positions in by_batch.values():
            if batch not in self._running.get(batch.worker, ()):
                started += len(positions)  # finished meanwhile
                continue
            late = await self._workers[batch.worker].skip.remote(batch.batch_id, positions)
            started += len(late)
            if late and not batch.live():
                ray.cancel(batch.report_ref)  # lets a cooperative process() see is_canceled()
        return started

    async def poll(self, client: str, timeout: float = POLL_SECONDS) -> list[tuple[Any, ...]]:
        """Returns a client's news, waiting up to ``timeout`` seconds for some.

        Each entry is ``(outcome_ref, positions, ids)``: the requests ``ids`` are at
        ``positions`` of the batch whose outcomes ``outcome_ref`` will hold; or
        ``(None, ids, error)``: those requests failed with ``error``; or
        ``("closed", reason)``: the service was stopped; or ``("forgotten", reason)``: the
        client was silent for ``client_timeout`` and must connect and submit again.
        """
        mailbox = self._mailboxes.get(client)
        if mailbox is None:
            if client in self._forgotten:
                return [("forgotten", f"silent for over {self._client_timeout:.0f} s")]
            return []
        self._polling[client] = self._polling.get(client, 0) + 1
        try:
            if not mailbox:
                mail = self._mail[client]
                mail.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(mail.wait(), timeout)
        finally:
            if client in self._polling:  # not forgotten meanwhile
                self._polling[client] -= 1
                self._seen[client] = time.monotonic()
        news = self._mailboxes.get(client, [])
        if news:
            self._mailboxes[client] = []
        return news

    async def _forget_silent_clients(self) -> None:
        """Withdraws the requests of clients that stopped polling (a killed program), so a
        long-lived service neither processes work nobody waits for nor keeps its results."""
        while True:
            await asyncio.sleep(max(0.5, self._client_timeout / 4))
            now = time.monotonic()
            for client in list(self._mailboxes):
                silent = now - self._seen.get(client, now)
                if self._polling.get(client, 0) == 0 and silent > self._client_timeout:
                    logger.warning(
                        "a raypw client was silent for %.0f s; its requests are withdrawn",
                        silent,
                    )
                    await self.disconnect(client)
                    self._forgotten.add(client)

    async def disconnect(self, client: str) -> None:
        """Forgets a client and withdraws whatever it still waits for."""
        await self._skip(self._queue.drop_client(client))
        self._forget_client(client)

    def _forget_client(self, client: str) -> None:
        self._seen.pop(client, None)
        self._polling.pop(client, None)
        self._mailboxes.pop(client, None)
        mail = self._mail.pop(client, None)
        if mail is not None:
            mail.set()

    async def leave(self, client: str) -> None:
        """Forgets a client but keeps its queued requests: they are still processed, once,
        and their results dropped (a program exited while a detached service had its work)."""
        self._queue.leave(client)
        self._forget_client(client)

    async def worker_pids(self) -> list[int]:
        """Returns the process id of each worker (0 while one is being restarted)."""
        return list(self._pids)

    async def stats(self) -> dict[str, Any]:
        """Returns the service-wide counters: queued, running, processed, deduplicated,
        workers, workers_alive, throughput (requests/s, last 10 s), worker_restarts, clients."""
        return {
            "queued": len(self._queue),
            "running": sum(
                1
                for sent in self._running.values()
                for batch in sent
                for item in batch.items
                if item.batch is batch and item.subscribers
            ),
            "processed": self._processed,
            "deduplicated": self._queue.deduplicated,
            "workers": len(self._workers),
            "workers_alive": self._alive,
            "throughput": self._throughput.rate(),
            "worker_restarts": self._restarts,
            "clients": len(self._mailboxes),
        }

    async def shutdown(self, reason: str = "the service was stopped") -> None:
        """Stops serving and ends the workers; every client hears ``reason`` first."""
        import ray

        for client in list(self._mailboxes):
            self._post(client, ("closed", reason))
        deadline = time.monotonic() + 1.0  # let waiting clients collect the news
        while any(self._mailboxes.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for task in self._serving:
            task.cancel()
        for worker in self._workers:
            ray.kill(worker)
        self._workers = []
        for client in list(self._mail):
            self._mail[client].set()

    def _post(self, client: str, news: tuple[Any, ...]) -> None:
        mailbox = self._mailboxes.get(client)
        if mailbox is None:
            return
        mailbox.append(news)
        self._mail[client].set()

    async def _serve(self, index: int) -> None:
        """Feeds one worker: send it batches, await their reports, repeat.

        An idle worker gets a batch from the queue, or else takes back the unstarted requests
        of a batch a sibling holds behind the one it runs. A busy worker gets its next batch
        while it runs one, if no worker is idle and work is queued.

        If the worker dies, Ray restarts it (its processor is built anew) and the requests it
        held go back to the front of the queue. Those of the batch it was running count a
        retry and go one per batch from then on, so a request that kills its worker every
        time fails alone once it used up ``max_retries``.
        """
        from ray.exceptions import RayError, RayTaskError, TaskCancelledError

        worker = self._workers[index]
        work_ready = self._work_ready
        assert work_ready is not None
        sent = self._running[index] = deque()
        while True:
            self._top_up(index, worker, sent)
            if not sent:
                if await self._take_back(index):
                    continue
                work_ready.clear()
                self._idle += 1
                try:
                    await work_ready.wait()
                finally:
                    self._idle -= 1
                continue
            if len(self._queue):
                work_ready.set()  # let idle siblings take the rest
            batch = sent[0]
            try:
                seconds, skipped = await batch.report_ref
            except TaskCancelledError:
                done = batch.own(batch.items)
            except RayTaskError as exc:  # raypw's own worker code failed: not retryable
                done = batch.own(batch.items)
                self._fail(done, exc)
            except RayError as exc:  # the worker process or its node died
                self._pids[index] = 0
                self._retry([item for b in sent for item in b.own(b.items)], exc)
                sent.clear()
                if not await self._await_restart(index, exc):
                    return
                continue
            else:
                processed = len(batch.items) - len(skipped)
                # A batch sent behind another waited for it: its overhead is not measurable.
                overhead = None
                if not batch.queued_behind:
                    overhead = time.perf_counter() - batch.dispatched - seconds
                self._sizer.record(seconds, processed, overhead)
                self._processed += processed
                self._throughput.add(processed)
                if skipped:
                    left_out = set(skipped)  # aborted, or moved to another batch
                    done = [item for i, item in enumerate(batch.items) if i not in left_out]
                else:
                    done = batch.items
            sent.popleft()
            self._queue.finish(done)

    def _top_up(self, index: int, worker: Any, sent: deque[_Batch]) -> None:
        """Sends worker ``index`` a batch if it has none, and the next one while it is busy,
        every other worker is busy too, and work is queued."""
        while len(sent) < PIPELINE_DEPTH and not (sent and (self._idle or sent[-1].suspect)):
            size = self._sizer.next_size(len(self._queue), len(self._workers))
            items = self._queue.take(size)
            if not items:
                return
            if sent and items[0].attempts:
                # A request whose worker died goes to a worker holding nothing else, so a
                # death while it runs is charged to it alone.
                self._queue.requeue_front(items)
                return
            sent.append(self._dispatch(index, worker, items, queued_behind=bool(sent)))

    async def _take_back(self, index: int) -> bool:
        """For idle worker ``index``: requeues the unstarted requests of a batch that waits
        behind another one on a sibling. Returns whether any came back."""
        from ray.exceptions import RayError

        waiting = [
            sent[-1]
            for other, sent in self._running.items()
            if other != index and len(sent) > 1 and not sent[-1].taken_back
        ]
        for batch in sorted(waiting, key=lambda b: len(b.items), reverse=True):
            batch.taken_back = True
            positions = [i for i, item in enumerate(batch.items) if item.batch is batch]
            try:
                late = set(await self._workers[batch.worker].skip.remote(batch.batch_id, positions))
            except RayError:
                continue  # its worker died: its serving loop requeues the batch
            back = [batch.items[i] for i in positions if i not in late]
            back = batch.own(back)  # not requeued meanwhile by its worker's death
            if back:
                self._requeue(back)
                return True
        return False

    def _retry(self, items: list[_Item], cause: BaseException) -> None:
        """Requeues the requests a dead worker held, failing those out of retries.

        The death counts against every request it held: the coordinator cannot tell which
        batch was running (a report can die with its worker). A request charged once goes
        to a worker holding nothing else from then on, so later deaths are charged exactly.
        """
        from raypw.errors import WorkerDiedError

        again: list[_Item] = []
        spent: list[_Item] = []
        for item in items:
            item.attempts += 1
            (spent if item.attempts > self._max_retries else again).append(item)
        for item in spent:
            self._fail(
                [item],
                WorkerDiedError(
                    f"{item.request!r:.80} was in process when its worker died, "
                    f"{item.attempts} times (max_retries={self._max_retries}); last: "
                    f"{type(cause).__name__}",
                    request=item.request,
                    attempts=item.attempts,
                ),
            )
        self._queue.finish(spent)
        self._requeue(again)
        self._restarts += 1
        logger.warning(
            "a raypw worker died (%s); %d request(s) requeued, %d failed",
            type(cause).__name__,
            len(again),
            len(spent),
        )

    def _requeue(self, items: list[_Item]) -> None:
        """Puts items back at the front of the queue and wakes the idle serving loops."""
        self._queue.requeue_front(items)
        if items and self._work_ready is not None:
            self._work_ready.set()

    async def _await_restart(self, index: int, cause: BaseException) -> bool:
        """Waits until Ray restarted worker ``index``; False if it is gone for good."""
        from ray.exceptions import ActorDiedError, RayError

        from raypw.errors import WorkerDiedError

        deadline = time.monotonic() + self._restart_timeout
        while time.monotonic() < deadline:
            try:
                self._pids[index] = await self._workers[index].ready.remote()
                return True
            except ActorDiedError:
                break  # out of restarts, or its constructor failed on restart
            except RayError:
                await asyncio.sleep(0.2)  # restarting: unavailable for now
        self._alive -= 1
        logger.error("raypw worker %d is gone for good: %s", index, cause)
        if self._alive == 0:
            self._fail_queue(WorkerDiedError(f"every worker of the service died; last: {cause}"))
        return False

    def _dispatch(self, index: int, worker: Any, items: list[_Item], queued_behind: bool) -> _Batch:
        batch_id = self._next_batch_id
        self._next_batch_id += 1
        batch = _Batch(batch_id, index, items, queued_behind)
        batch.report_ref, batch.outcome_ref = worker.process_batch.remote(
            batch_id, [item.request for item in items]
        )
        news: dict[str, tuple[list[int], list[int]]] = {}
        for position, item in enumerate(items):
            item.batch = batch
            item.position = position
            for client, request_id in item.subscribers:
                entry = news.get(client)
                if entry is None:
                    entry = news[client] = ([], [])
                entry[0].append(position)
                entry[1].append(request_id)
        for client, (positions, ids) in news.items():
            self._post(client, (batch.outcome_ref, positions, ids))
        return batch

    def _fail_queue(self, error: BaseException) -> None:
        """Fails everything queued: no worker is left to process it."""
        self._dead = error
        items = self._queue.take(len(self._queue))
        self._fail(items, error)
        self._queue.finish(items)

    def _fail(self, items: list[_Item], error: BaseException) -> None:
        news: dict[str, list[int]] = {}
        for item in items:
            for client, request_id in item.subscribers:
                news.setdefault(client, []).append(request_id)
        for client, ids in news.items():
            self._post(client, (None, ids, error))
