"""The scheduler: every rule of who runs what, in plain Python with no Ray in it.

The Coordinator actor feeds it events (a client submitted or aborted requests, a worker
streamed outcomes, a worker died or came back) and performs the actions it returns (send a
batch, ask a worker for unstarted requests back, cancel a batch). Clients' news collects in
their mailboxes here, for the Coordinator to hand out on ``poll``. Nothing here blocks or
sleeps, and time comes from an injected clock, so every rule is unit-tested with fake workers
and a fake clock (``tests/unit/test_scheduler.py``).

The rules:

- **Dedup.** A request joins an equal one (same key) that is queued or running, from any
  client; it is forgotten when it finishes, so a later equal request runs again.
- **The result cache** (if given one): a request equal to one that finished with a result is
  answered with that result at once, never queued; errors are not kept.
- **Workers compete.** A batch goes to a worker only when it holds none; while every worker
  is busy and work is queued, each gets its next batch ahead (``PIPELINE_DEPTH``).
- **A batch is not a unit of ownership.** A worker with nothing to do takes back unstarted
  requests wherever they wait: all of a batch waiting behind another, or the back half of the
  unstarted tail of a running one (:class:`TakeBack`).
- **Outcomes flow as produced.** Each :class:`~raypw.protocol.OutcomeChunk` settles its
  requests at once; the batch's end only frees its worker.
- **Retries.** A worker's death counts against every request it held; a request charged once
  goes alone to a worker holding nothing else, so later deaths are charged exactly; past
  ``max_retries`` it fails with :class:`~raypw.WorkerDiedError`.
- **Aborts** are order-independent: an abort that overtakes its submit is kept until the
  submit lands, and an id is "finished already" only if a submit covering it has arrived.
- **Deadlines.** Each waiter (a client's request id) may have its own deadline. At it, that
  waiter's promise fails (:class:`~raypw.protocol.TimedOut`) and the others keep waiting;
  when nobody waits any more the request is withdrawn: never started if it has not started
  (nothing is dispatched past its deadline; a worker holding it is told to skip it, with the
  unstarted requests behind it in its batch, which go back to the queue uncharged), and if
  it runs, its batch is cancelled (``ray.cancel``) and, if it still has not returned
  ``grace`` seconds later, its worker is killed (:class:`Kill`) and what it held goes back
  to the queue, uncharged. A timed-out request is never retried.
- **Aborts of unstarted requests only** (:meth:`Scheduler.abort_unstarted`, for
  ``raypw.compat``) withdraw a request only where it is known not to have started: queued,
  or a position its worker agreed to skip. A request that started keeps its subscriber and
  its result is delivered as usual.
"""

from __future__ import annotations

import dataclasses
import heapq
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from raypw.backlog import Backlog
from raypw.batching import BatchSizer
from raypw.cache import MISS, ResultCache
from raypw.deadlines import DeadlineBook
from raypw.errors import WorkerDiedError
from raypw.protocol import (
    Abort,
    Failed,
    FastPathReport,
    Forgotten,
    News,
    OutcomeChunk,
    Outcomes,
    Pickled,
    Submit,
    TimedOut,
    WorkBatch,
)

__all__ = [
    "Cancel",
    "Dispatch",
    "Expire",
    "Kill",
    "Scheduler",
    "Skip",
    "SkipUnstarted",
    "TakeBack",
]

# Batches a worker holds at most: the one it runs and the next, sent while the first runs.
PIPELINE_DEPTH = 2
# A worker that reported nothing for STALL_FACTOR times the usual time per request (and
# at least STALL_SECONDS) is stalled on a slow or hung request: the unstarted requests it
# holds go to other workers before newer ones from the queue.
STALL_FACTOR = 10.0
STALL_SECONDS = 0.1
# Outcomes leave a worker at most every chunk_seconds: MIN_CHUNK_SECONDS on a small pool, and
# on a wide one as often as keeps their handling under CHUNK_SHARE of the Coordinator's core,
# at CHUNK_COST_SECONDS each (the outcomes() call, settling, the client's poll; measured on the
# 2-core machine, README "Scaling").
MIN_CHUNK_SECONDS = 0.001
CHUNK_COST_SECONDS = 0.00025
CHUNK_SHARE = 0.5
# Under a steady stream, a chunk also gathers about CHUNK_REQUESTS requests' worth of the usual
# request time, up to MAX_CHUNK_SECONDS: each chunk costs about a millisecond of CPU over the
# worker, the Coordinator and the client, which on a laptop comes out of the workers' cores.
# Measured on 2 cores, 2,000 x 5 ms of pure-Python work (W5): efficiency 0.60-0.65 with a chunk
# per result (1 ms), 0.73 at 10 ms, 0.77-0.80 at 20 ms; the mixed-cost W7 (mostly 1 ms) kept
# its lag p99 under 50 ms. A result after a quiet spell still leaves at once.
CHUNK_REQUESTS = 4
MAX_CHUNK_SECONDS = 0.02
# Batch.taking_for of a TakeBack out for requests of a higher priority (not for a worker).
OVERTAKE = -2
# Lower-priority requests sent ahead to a worker are taken back for higher ones only if they
# would keep it at least this long (their count times the usual request time): a take-back
# costs a round trip to the worker and a dispatch, about what a few milliseconds of work
# cost. Measured (benchmarks.controls, priorities interleaved on every call, no-op requests):
# taking back every time cost 12% of the dispatch throughput.
OVERTAKE_SECONDS = 0.005

Subscriber = tuple[str, int]  # (client id, request id)
_NONE: frozenset[int] = frozenset()  # the pending ids of a client that is gone


# -- actions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Send ``batch`` to ``worker``; feed its chunks back with :meth:`Scheduler.chunk`."""

    worker: int
    batch: WorkBatch


@dataclass(frozen=True, slots=True)
class Skip:
    """Ask ``worker`` not to start ``positions`` of ``batch_id`` (aborted); answer with
    :meth:`Scheduler.skipped`."""

    worker: int
    batch_id: int
    positions: list[int]


@dataclass(frozen=True, slots=True)
class TakeBack:
    """Ask ``worker`` for ``positions`` of ``batch_id`` back (for an idle worker); answer with
    :meth:`Scheduler.taken_back`."""

    worker: int
    batch_id: int
    positions: list[int]


@dataclass(frozen=True, slots=True)
class Cancel:
    """``ray.cancel`` the batch: nobody waits for anything it still runs."""

    worker: int
    batch_id: int


@dataclass(frozen=True, slots=True)
class Expire:
    """Ask ``worker`` not to start ``positions`` of ``batch_id``: requests nobody waits for
    any more since their deadline passed, and the unstarted ones behind them, which go back
    to the queue; answer with :meth:`Scheduler.expired`."""

    worker: int
    batch_id: int
    positions: list[int]


@dataclass(frozen=True, slots=True)
class Kill:
    """Kill ``worker`` (Ray restarts it): it still runs a request past its deadline and
    grace period. The scheduler already took back what it held; answer with
    :meth:`Scheduler.worker_back` (or :meth:`Scheduler.worker_gone`)."""

    worker: int


@dataclass(frozen=True, slots=True)
class Retire:
    """End ``worker`` for good (the pool shrinks): it holds nothing any more."""

    worker: int


@dataclass(frozen=True, slots=True)
class Recycle:
    """Replace ``worker`` with a fresh one (it processed ``max_requests_per_worker``): it
    holds nothing any more; answer with :meth:`Scheduler.worker_back` once the new one is up
    (or :meth:`Scheduler.worker_gone`)."""

    worker: int


Action = Dispatch | Skip | TakeBack | Cancel | Expire | Kill | Retire | Recycle


@dataclass(frozen=True, slots=True)
class SkipUnstarted:
    """Ask ``worker`` not to start ``positions`` of ``batch_id``, for an abort that withdraws
    only requests that have not started; answer with :meth:`Scheduler.skipped_unstarted`.

    Attributes:
        subscribers: One per position: the (client, request id) whose abort waits on it.
    """

    worker: int
    batch_id: int
    positions: list[int]
    subscribers: list[Subscriber]


# -- state ---------------------------------------------------------------------------------


class _Item:
    """One distinct pending request and the (client, request id) pairs waiting for it."""

    __slots__ = (
        "aborting",
        "attempts",
        "batch",
        "key",
        "priority",
        "received_at",
        "request",
        "subscribers",
    )

    def __init__(
        self,
        key: Hashable,
        request: Any,
        subscriber: Subscriber,
        received_at: float,
        priority: int = 0,
    ) -> None:
        self.key = key
        self.request = request
        self.received_at = received_at  # when its first submit reached the scheduler
        self.priority = priority  # the highest of its waiters'
        self.subscribers: list[Subscriber] = [subscriber]
        self.batch: _Batch | None = None  # set while dispatched
        self.attempts = 0  # times a worker died while it held this request
        # Subscribers whose abort-if-unstarted waits for the worker's answer (a SkipUnstarted).
        self.aborting: list[Subscriber] | None = None


class _Batch:
    """A batch sent to a worker."""

    __slots__ = (
        "batch_id",
        "behind",
        "chunks",
        "expired",
        "items",
        "lowest",
        "reported",
        "sent_at",
        "started_upto",
        "suspect",
        "taking_for",
        "timing_out",
        "worker",
    )

    def __init__(
        self,
        batch_id: int,
        worker: int,
        items: list[_Item],
        behind: bool,
        now: float,
        suspect: bool,
    ) -> None:
        self.batch_id = batch_id
        self.worker = worker
        self.items = items
        self.behind = behind  # sent while the worker ran another batch
        self.sent_at = now
        self.chunks = 0
        self.reported = 0  # positions finished so far (chunks arrive in position order)
        self.started_upto = -1  # highest position known to have started
        # The idle worker a TakeBack of this batch is out for; -1: none; OVERTAKE: for
        # requests of a higher priority than some it holds unstarted.
        self.taking_for = -1
        self.lowest = min(item.priority for item in items) if items else 0
        self.suspect = suspect  # holds a request whose worker died before (alone, then)
        self.expired: set[int] = set()  # positions past their deadline that had started
        # position -> waiters whose deadline passed, told so once the worker answered the
        # Expire of that position (so a request said to have timed out never starts later)
        self.timing_out: dict[int, list[Subscriber]] = {}

    def hung(self) -> bool:
        """True while a position that ran past its deadline has not reported."""
        return any(p >= self.reported for p in self.expired)

    def owns(self, item: _Item) -> bool:
        return item.batch is self

    def live(self) -> bool:
        """True while a client still waits for an item this batch holds."""
        return any(item.subscribers for item in self.items if item.batch is self)

    def surely_unstarted(self, running: bool) -> list[int]:
        """:meth:`unstarted` but, on a worker's running batch, the position it is probably
        on (asking that back costs a round trip for nothing)."""
        first = max(self.reported, self.started_upto) if running else -1
        return [p for p in self.unstarted() if p > first]

    def unstarted(self) -> list[int]:
        """Positions this batch still holds that may not have started."""
        first = max(self.reported, self.started_upto + 1)
        if self.chunks:  # running: the first unreported position is probably under way
            first = max(first, self.reported + 1)
        return [
            p
            for p in range(first, len(self.items))
            if self.items[p].batch is self and self.items[p].subscribers
        ]


class _Worker:
    __slots__ = (
        "alive",
        "batches",
        "idle_since",
        "index",
        "leaving",
        "processed",
        "progress_at",
        "recycling",
        "reserved",
        "up",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.progress_at = 0.0  # when it last reported outcomes, or got work while idle
        self.idle_since = 0.0  # when it last held nothing (while it holds nothing)
        self.up = False  # True once started; False while Ray restarts it
        self.alive = True  # False once it is gone for good, or retired
        # Takes no more work: it is retired (or, with ``recycling``, replaced) once it holds
        # nothing.
        self.leaving = False
        self.recycling = False
        self.processed = 0  # requests it reported since it (re)started
        self.batches: deque[_Batch] = deque()
        # (client, request id) of a fast-path request a client said it runs: no work meanwhile
        self.reserved: tuple[str, int] | None = None

    def held(self) -> int:
        return sum(len(batch.items) for batch in self.batches)


class _Client:
    """What the scheduler knows of one client (one program's connection)."""

    __slots__ = (
        "early_aborts",
        "epoch",
        "fast_path_upto",
        "items",
        "left",
        "mail",
        "polling",
        "seen",
        "spans",
    )

    def __init__(self, epoch: int, now: float) -> None:
        self.epoch = epoch
        self.items: dict[int, _Item] = {}
        self.mail: list[News] = []
        self.seen = now
        self.polling = 0
        self.left = False  # gone, but its requests are still processed (results dropped)
        self.early_aborts: set[int] = set()
        self.fast_path_upto = 0  # its fast-path requests up to this id have ended
        # Numbers of the submits received from this client: (first, last) spans, merged,
        # ascending. Submits leave one at a time, so out of order only by a few.
        self.spans: list[tuple[int, int]] = []

    def receive(self, seq: int) -> None:
        spans = self.spans
        spans.append((seq, seq))
        spans.sort()
        merged = [spans[0]]
        for low, high in spans[1:]:
            if low <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], high))
            else:
                merged.append((low, high))
        self.spans = merged

    def received(self, seq: int) -> bool:
        return any(low <= seq <= high for low, high in self.spans)


class Scheduler:
    """The queue, dedup, dispatch, take-back, retry and abort rules of one service.

    Args:
        workers: Number of workers, indexed from 0.
        sizer: Chooses batch sizes from measured costs.
        max_retries: Times a request is dispatched again after its worker died.
        clock: Seconds, monotonic (``time.monotonic`` by default; a fake one in tests).
        grace: Seconds a request still running at its deadline has, once cancelled, to
            return before its worker is killed.
        max_requests_per_worker: A worker that processed this many is replaced once it
            holds nothing (its batches are cut to fit); None: never.
        cache: Where finished results are kept for equal requests queued later; None: none.
    """

    def __init__(
        self,
        workers: int,
        sizer: BatchSizer,
        max_retries: int,
        clock: Callable[[], float] = time.monotonic,
        grace: float = 5.0,
        max_requests_per_worker: int | None = None,
        cache: ResultCache | None = None,
    ) -> None:
        self._sizer = sizer
        self.cache = cache
        self._max_per_worker = max_requests_per_worker
        self._max_retries = max_retries
        self._clock = clock
        self._grace = grace
        # Waiters' deadlines; a waiter still counts when its deadline comes if its client
        # still has it pending.
        self._deadlines = DeadlineBook()
        self._graces: list[tuple[float, int]] = []  # (kill time, batch id) of hung batches
        self._workers = [_Worker(index) for index in range(workers)]
        self._queue: Backlog[_Item] = Backlog()
        self._prioritised = False  # a request with a priority other than 0 was queued
        self._queued = 0  # live items in the queue (aborted ones stay until taken)
        self._by_key: dict[Hashable, _Item] = {}
        self._batches: dict[int, _Batch] = {}
        self._clients: dict[str, _Client] = {}
        self._next_batch_id = 0
        self._next_epoch = 0
        self.processed = 0
        self.failed = 0  # distinct requests that ended with an error
        self.deduplicated = 0
        self.worker_restarts = 0
        self.worker_recycles = 0
        self.timed_out = 0  # waiters whose deadline passed
        self.dead: BaseException | None = None  # set once no worker is left
        self.woken: set[str] = set()  # clients with new mail since the shell last looked
        # Aborts-if-unstarted settled before their worker answered: the batch ended, or gave
        # the position back, without starting it. skipped_unstarted() reports them.
        self._withdrawn_unstarted: set[Subscriber] = set()

    def workers_started(self) -> list[Action]:
        """Every worker is built: work may go out."""
        for worker in self._workers:
            worker.up = True
        return self.fill()

    def has_batch(self, batch_id: int) -> bool:
        """True while the batch is out (not ended, not requeued after its worker died)."""
        return batch_id in self._batches

    def mail_waiting(self) -> bool:
        """True while some client has news it has not collected."""
        return any(state.mail for state in self._clients.values())

    # -- clients -------------------------------------------------------------------------

    def connect(self, client: str) -> tuple[int, list[Action]]:
        """Registers a client (anew: what it had pending here is withdrawn, since it
        submits it again); returns its epoch and the actions to perform."""
        actions = self.disconnect(client) if client in self._clients else []
        self._next_epoch += 1
        self._clients[client] = _Client(self._next_epoch, self._clock())
        return self._next_epoch, actions

    def disconnect(self, client: str) -> list[Action]:
        """Forgets a client and withdraws whatever it still waits for."""
        state = self._clients.get(client)
        if state is None:
            return []
        actions = self._withdraw(client, list(state.items), None)
        del self._clients[client]
        self.woken.add(client)
        return actions + self._unreserve(client, None)

    def leave(self, client: str) -> None:
        """Forgets a client but keeps its requests: each is still processed, once, and its
        result dropped (a program exited while a detached service held its work)."""
        state = self._clients.get(client)
        if state is None:
            return
        if state.items:
            state.left = True
            state.mail.clear()
        else:
            del self._clients[client]
        self.woken.add(client)

    def knows(self, client: str) -> bool:
        state = self._clients.get(client)
        return state is not None and not state.left

    def take_mail(self, client: str) -> list[News]:
        """Returns and clears a client's news; a client not known here is told so."""
        state = self._clients.get(client)
        if state is None or state.left:
            return [
                Forgotten(
                    "this service does not know the client (silent too long, or a new coordinator)"
                )
            ]
        state.seen = self._clock()
        mail, state.mail = state.mail, []
        return mail

    def polling(self, client: str, delta: int) -> None:
        """Counts the polls a client has waiting (a waiting client is not silent)."""
        state = self._clients.get(client)
        if state is not None:
            state.polling += delta
            state.seen = self._clock()

    def silent_clients(self, timeout: float) -> list[str]:
        """Clients with no poll waiting and none for ``timeout`` seconds (a killed program)."""
        now = self._clock()
        return [
            client
            for client, state in self._clients.items()
            if not state.left and state.polling == 0 and now - state.seen > timeout
        ]

    def close_all(self, news: News) -> None:
        """Posts ``news`` to every client."""
        for client in self._clients:
            self._post(client, news)

    @property
    def clients(self) -> int:
        return sum(1 for state in self._clients.values() if not state.left)

    # -- requests ------------------------------------------------------------------------

    def submit(self, message: Submit) -> list[Action]:
        """Queues a client's requests. A submit of an unknown client or an old epoch is
        dropped: that client learns from its next poll to connect and submit again."""
        state = self._clients.get(message.client)
        if state is None or state.left or state.epoch != message.epoch:
            return []
        state.receive(message.seq)
        if self.cache is not None:
            message = self._answer_from_cache(message, state)
        client = message.client
        requests = message.requests
        keys = requests if message.keys is None else message.keys
        every_id = not state.early_aborts  # none is dropped: every id will be pending
        if message.priorities is None:
            added = self._add(message.ids, requests, keys, client, state)
        else:
            self._prioritised = True
            added = self._add_prioritised(message, keys, state)
        self._queued += added
        if message.timeouts is not None:
            self._set_deadlines(state, client, message.ids, message.timeouts, every_id)
        if message.died is not None:
            self._died_on_fast_path(state, [run.request_id for run in message.died])
        reserved = message.reserved
        if (
            reserved is not None
            and reserved.request_id > state.fast_path_upto  # else its report came first
            and 0 <= reserved.worker < len(self._workers)
        ):
            self._workers[reserved.worker].reserved = (client, reserved.request_id)
        if self.dead is not None:
            self._fail_queue(self.dead)
            return []
        actions = self.fill()
        if self._prioritised:
            self._overtake(actions)
        return actions

    def _died_on_fast_path(self, state: _Client, ids: list[int]) -> None:
        """Counts the death of the worker a client sent each of these requests to itself:
        as after any death, each travels alone, and one out of retries fails now."""
        spent: list[_Item] = []
        for request_id in ids:
            item = state.items.get(request_id)
            if item is None or item.batch is not None or item.attempts:
                continue
            item.attempts = 1
            if item.attempts > self._max_retries:
                spent.append(item)
        self._queued -= len(spent)  # they stay in the backlog; _take drops them
        for item in spent:
            self._fail([item], self._out_of_retries(item, None))

    def _answer_from_cache(self, message: Submit, state: _Client) -> Submit:
        """Answers the requests of ``message`` the cache holds a result for; returns the
        submit of the others."""
        assert self.cache is not None
        get = self.cache.get
        early = state.early_aborts
        keys = message.requests if message.keys is None else message.keys
        hits = Outcomes([], [], {})
        missed: list[int] = []  # indexes into the message
        for index, (request_id, key) in enumerate(zip(message.ids, keys, strict=True)):
            result = MISS if early and request_id in early else get(key)
            if result is MISS:
                missed.append(index)
            else:
                hits.ids.append(request_id)
                hits.results.append(result)
        if not hits.ids:
            return message
        self._post(message.client, hits)

        def kept(values: list[Any] | None) -> Any:
            return None if values is None else [values[i] for i in missed]

        return dataclasses.replace(
            message,
            ids=kept(message.ids),
            requests=kept(message.requests),
            keys=kept(message.keys),
            timeouts=kept(message.timeouts),
            priorities=kept(message.priorities),
        )

    def _add(
        self, ids: list[int], requests: list[Any], keys: list[Any], client: str, state: _Client
    ) -> int:
        """Queues requests of priority 0; returns how many are new (not deduplicated)."""
        early = state.early_aborts
        by_key = self._by_key
        mine = state.items
        append = self._queue.level(0).append
        now = self._clock()
        added = 0
        for request_id, request, key in zip(ids, requests, keys, strict=True):
            if early and request_id in early:
                early.discard(request_id)
                continue
            item = by_key.get(key)
            if item is None:
                item = by_key[key] = _Item(key, request, (client, request_id), now)
                append(item)
                added += 1
            else:
                item.subscribers.append((client, request_id))
                self.deduplicated += 1
            mine[request_id] = item
        return added

    def _add_prioritised(self, message: Submit, keys: list[Any], state: _Client) -> int:
        """Queues requests with priorities; an equal request pending already takes the
        higher priority of the two (queued again at that level, its old entry skipped)."""
        assert message.priorities is not None
        early = state.early_aborts
        by_key = self._by_key
        mine = state.items
        queue = self._queue
        levels: dict[int, Any] = {}  # priority -> its deque's append, looked up once
        client = message.client
        now = self._clock()
        added = 0
        for request_id, request, key, priority in zip(
            message.ids, message.requests, keys, message.priorities, strict=True
        ):
            if early and request_id in early:
                early.discard(request_id)
                continue
            item = by_key.get(key)
            if item is None:
                item = by_key[key] = _Item(key, request, (client, request_id), now, priority)
                append = levels.get(priority)
                if append is None:
                    append = levels[priority] = queue.level(priority).append
                append(item)
                added += 1
            else:
                item.subscribers.append((client, request_id))
                self.deduplicated += 1
                if priority > item.priority:
                    item.priority = priority
                    if item.batch is None:
                        queue.append(item, priority)
            mine[request_id] = item
        return added

    def _overtake(self, actions: list[Action]) -> None:
        """Takes back, from batches sent to workers, unstarted requests of a lower priority
        than the highest still queued, so that it runs first wherever they waited; unless
        they would be done within about ``OVERTAKE_SECONDS`` anyway."""
        top = self._queue.top() if self._queued else None
        if top is None:
            return
        typical = self._sizer.typical_seconds
        for batch in self._batches.values():
            if batch.taking_for != -1 or batch.lowest >= top:
                continue
            running = batch is self._workers[batch.worker].batches[0]
            positions = [
                p for p in batch.surely_unstarted(running) if batch.items[p].priority < top
            ]
            if typical is not None and len(positions) * typical < OVERTAKE_SECONDS:
                continue  # cheap enough to let run: untimed work is always taken back
            if positions:
                batch.taking_for = OVERTAKE
                actions.append(TakeBack(batch.worker, batch.batch_id, positions))

    def _set_deadlines(
        self,
        state: _Client,
        client: str,
        ids: list[int],
        timeouts: list[float | None],
        every_id: bool,
    ) -> None:
        """Records each waiter's deadline: ``timeouts`` seconds from now (None: none).
        ``every_id``: each of ``ids`` is pending (no early abort dropped one)."""
        now = self._clock()
        book = self._deadlines
        # The usual submit: every id pending, each with a timeout; no Python loop per id.
        if every_id and len(timeouts) == len(ids) and None not in timeouts:
            deadlines: list[float] = list(map(now.__add__, timeouts))  # type: ignore[arg-type]
            grew = book.add(client, ids, deadlines)
        else:
            mine = state.items
            timed = [
                (request_id, now + timeout)
                for request_id, timeout in zip(ids, timeouts, strict=True)
                if timeout is not None and request_id in mine
            ]
            grew = book.add(client, [i for i, _ in timed], [d for _, d in timed])
        if grew:
            clients = self._clients
            book.compact(lambda c: _NONE if (st := clients.get(c)) is None else st.items.keys())

    def next_timer(self) -> float | None:
        """When :meth:`tick` has something to do next (clock time), or None."""
        due = self._deadlines.next_due()
        if self._graces and (due is None or self._graces[0][0] < due):
            due = self._graces[0][0]
        return due

    def tick(self) -> list[Action]:
        """Time passed: fails waiters whose deadline passed, frees what nobody waits for any
        more, and kills workers still running a request past its deadline and grace."""
        actions = self._expire_due()
        now = self._clock()
        graces = self._graces
        while graces and graces[0][0] <= now:
            _, batch_id = heapq.heappop(graces)
            batch = self._batches.get(batch_id)
            if batch is not None and batch.hung():
                actions.extend(self._kill(batch.worker))
        return actions + self.fill()

    def _expire_due(self) -> list[Action]:
        """Ends every waiter whose deadline passed (:class:`~raypw.protocol.TimedOut`); a
        request nobody waits for any more is dropped from the queue or, if dispatched,
        withdrawn from its worker (:class:`Expire`)."""
        due = self._deadlines.due(self._clock())
        if not due:
            return []
        clients = self._clients
        timed_out: dict[str, list[int]] = {}
        expiring: dict[_Batch, list[tuple[_Item, Subscriber]]] = {}
        for client, request_id in due:
            state = clients.get(client)
            item = None if state is None else state.items.pop(request_id, None)
            if state is None or item is None:
                continue  # finished, or withdrawn
            subscriber = (client, request_id)
            item.subscribers.remove(subscriber)
            if item.aborting and subscriber in item.aborting:
                item.aborting.remove(subscriber)
            self.timed_out += 1
            if state.left and not state.items:
                del clients[client]
            if not item.subscribers:
                if self._by_key.get(item.key) is item:
                    del self._by_key[item.key]  # an equal request queued later runs anew
                if item.batch is None:
                    self._queued -= 1  # stays in the backlog; _take drops it
                else:  # told once its worker answered: it must not start after that news
                    expiring.setdefault(item.batch, []).append((item, subscriber))
                    continue
            timed_out.setdefault(client, []).append(request_id)
        actions: list[Action] = []
        for batch, pairs in expiring.items():
            expired = {id(item) for item, _ in pairs}
            first = min(p for p, item in enumerate(batch.items) if id(item) in expired)
            positions = [
                p
                for p in range(max(first, batch.reported), len(batch.items))
                if batch.items[p].batch is batch
                and (id(batch.items[p]) in expired or batch.items[p].subscribers)
            ]
            where = {id(batch.items[p]): p for p in positions}
            for item, (client, request_id) in pairs:
                position = where.get(id(item))
                if position is None:
                    timed_out.setdefault(client, []).append(request_id)
                else:
                    batch.timing_out.setdefault(position, []).append((client, request_id))
            if positions:
                actions.append(Expire(batch.worker, batch.batch_id, positions))
        for client, ids in timed_out.items():
            self._post(client, TimedOut(ids))
        return actions

    def _tell_timed_out(self, batch: _Batch, positions: Iterable[int] | None = None) -> None:
        """Posts the deferred :class:`~raypw.protocol.TimedOut` of a batch's positions (all
        of them when None): their worker answered, or the batch ended or lost its worker."""
        if not batch.timing_out:
            return
        keys = list(batch.timing_out) if positions is None else positions
        news: dict[str, list[int]] = {}
        for position in keys:
            for client, request_id in batch.timing_out.pop(position, ()):
                news.setdefault(client, []).append(request_id)
        for client, ids in news.items():
            self._post(client, TimedOut(ids))

    def expired(self, batch_id: int, positions: list[int], late: list[int]) -> list[Action]:
        """A worker answered an :class:`Expire`: ``late`` positions had started. The others
        are withdrawn (those still wanted go back to the queue's front, uncharged); an expired
        one that started and has not reported is cancelled, and its worker killed if it has
        not returned after the grace period."""
        batch = self._batches.get(batch_id)
        if batch is None:
            return self.fill()  # it ended, or its worker died: settled there
        self._tell_timed_out(batch, positions)
        if late:
            batch.started_upto = max(batch.started_upto, max(late))
        stay = set(late)
        back: list[_Item] = []
        hung = False
        for position in positions:
            item = batch.items[position]
            if item.batch is not batch:
                continue  # taken back meanwhile
            if position in stay:
                if not item.subscribers and position >= batch.reported:
                    batch.expired.add(position)
                    hung = True
                continue
            if item.aborting:
                self._settle_aborting(item)
            item.batch = None
            if item.subscribers:
                back.append(item)
        self._requeue(back)
        actions: list[Action] = []
        if hung:
            actions.append(Cancel(batch.worker, batch_id))
            heapq.heappush(self._graces, (self._clock() + self._grace, batch_id))
        return actions + self.fill()

    def _kill(self, worker: int) -> list[Action]:
        """Takes back everything a worker holds, uncharged (its requests only shared a worker
        with one that overran its deadline), and asks for the worker to be killed."""
        state = self._workers[worker]
        if not state.up:
            return []
        state.up = False
        back: list[_Item] = []
        for batch in state.batches:
            self._tell_timed_out(batch)
            for item in batch.items:
                if item.batch is batch:
                    item.batch = None
                    if item.subscribers:
                        back.append(item)
            del self._batches[batch.batch_id]
        state.batches.clear()
        self.worker_restarts += 1
        self._requeue(back)
        return [Kill(worker)]

    def abort(self, message: Abort) -> list[Action]:
        """Withdraws a client's requests: queued ones are dropped, dispatched ones nobody
        else waits for are skipped by their worker (:class:`Skip`)."""
        state = self._clients.get(message.client)
        if state is None or state.epoch != message.epoch:
            return []
        return self._withdraw(message.client, message.ids, message.seqs)

    def _withdraw(self, client: str, ids: list[int], seqs: list[int] | None) -> list[Action]:
        """Withdraws a client's requests; ``seqs`` (None: all arrived) are the submits that
        carried them."""
        state = self._clients[client]
        orphaned: dict[_Batch, set[_Item]] = {}
        for index, request_id in enumerate(ids):
            item = state.items.pop(request_id, None)
            if item is None:
                if seqs is not None and not state.received(seqs[index]):
                    state.early_aborts.add(request_id)  # its submit is still on the way
                continue  # else finished already
            item.subscribers.remove((client, request_id))
            if item.aborting and (client, request_id) in item.aborting:
                item.aborting.remove((client, request_id))
            if item.subscribers:
                continue
            if self._by_key.get(item.key) is item:
                del self._by_key[item.key]  # an equal request queued later runs anew
            batch = item.batch
            if batch is None:
                self._queued -= 1  # stays in the backlog; _take drops it
            else:
                orphaned.setdefault(batch, set()).add(item)
        return [
            Skip(batch.worker, batch.batch_id, [p for p, i in enumerate(batch.items) if i in gone])
            for batch, gone in orphaned.items()
        ]

    def skipped(self, batch_id: int, late: list[int]) -> list[Action]:
        """A worker answered a :class:`Skip`: ``late`` positions had started already."""
        batch = self._batches.get(batch_id)
        if batch is None:
            return []
        if late:
            batch.started_upto = max(batch.started_upto, max(late))
            if not batch.live():
                return [Cancel(batch.worker, batch_id)]
        return []

    def abort_unstarted(self, message: Abort) -> tuple[list[int], list[SkipUnstarted]]:
        """Withdraws those of a client's requests that have not started.

        Queued ones (and ones whose submit has not arrived) are withdrawn at once. For one
        sent to a worker that nobody else waits for, the worker is asked (the answer goes to
        :meth:`skipped_unstarted`); until it answers, the request keeps its subscriber, so an
        outcome that comes meanwhile is delivered. A request that is known to have started,
        or that another client also waits for and that is on a worker, is left to finish.

        Returns:
            The ids withdrawn now, and the questions to ask the workers.
        """
        client = message.client
        state = self._clients.get(client)
        if state is None or state.epoch != message.epoch:
            return [], []
        withdrawn: list[int] = []
        asks: dict[_Batch, list[tuple[int, Subscriber]]] = {}
        where: dict[_Batch, dict[int, int]] = {}  # batch -> id(item) -> position
        for request_id, seq in zip(message.ids, message.seqs, strict=True):
            item = state.items.get(request_id)
            if item is None:
                if not state.received(seq):
                    state.early_aborts.add(request_id)  # its submit is still on the way
                    withdrawn.append(request_id)
                continue  # else finished already
            batch = item.batch
            if batch is None:
                self._unsubscribe(state, (client, request_id), item, queued=True)
                withdrawn.append(request_id)
            elif item.subscribers == [(client, request_id)]:
                positions = where.get(batch)
                if positions is None:
                    positions = where[batch] = {id(it): p for p, it in enumerate(batch.items)}
                position = positions[id(item)]
                if position > batch.started_upto and position >= batch.reported:
                    item.aborting = [(client, request_id)]
                    asks.setdefault(batch, []).append((position, (client, request_id)))
        return withdrawn, [_ask(batch, pairs) for batch, pairs in asks.items()]

    def skipped_unstarted(
        self, ask: SkipUnstarted, late: list[int]
    ) -> tuple[list[int], list[SkipUnstarted]]:
        """A worker answered a :class:`SkipUnstarted`: ``late`` positions had started.

        Returns:
            The ids withdrawn (never started), and further questions for requests that
            moved to another worker meanwhile (taken back, or requeued after a death).
        """
        batch = self._batches.get(ask.batch_id)
        started = set(late)
        withdrawn: list[int] = []
        asks: dict[_Batch, list[tuple[int, Subscriber]]] = {}
        for position, subscriber in zip(ask.positions, ask.subscribers, strict=True):
            client, request_id = subscriber
            if subscriber in self._withdrawn_unstarted:
                self._withdrawn_unstarted.discard(subscriber)
                withdrawn.append(request_id)
                continue
            state = self._clients.get(client)
            item = None if state is None else state.items.get(request_id)
            if state is None or item is None or not item.aborting:
                continue  # finished (its outcome is on the way), or withdrawn otherwise
            if subscriber not in item.aborting:
                continue
            if item.batch is not None and item.batch is batch:
                item.aborting.remove(subscriber)
                if position in started:
                    continue  # it runs: its result is delivered
                self._unsubscribe(state, subscriber, item, queued=False)
                withdrawn.append(request_id)
            elif item.batch is None:  # requeued: its worker died
                item.aborting.remove(subscriber)
                self._unsubscribe(state, subscriber, item, queued=True)
                withdrawn.append(request_id)
            else:  # moved to another worker's batch: ask that one
                moved = item.batch
                asks.setdefault(moved, []).append((moved.items.index(item), subscriber))
        return withdrawn, [_ask(batch, pairs) for batch, pairs in asks.items()]

    def _unsubscribe(
        self, state: _Client, subscriber: Subscriber, item: _Item, queued: bool
    ) -> None:
        """Removes one subscriber of an item that has not started. ``queued``: the item is in
        the queue (it stays there, dropped when taken, if nobody else waits for it)."""
        state.items.pop(subscriber[1], None)
        item.subscribers.remove(subscriber)
        if item.aborting and subscriber in item.aborting:
            item.aborting.remove(subscriber)
        if not item.subscribers:
            if self._by_key.get(item.key) is item:
                del self._by_key[item.key]
            if queued:
                self._queued -= 1

    def _settle_aborting(self, item: _Item) -> None:
        """``item`` left its batch unstarted: the aborts-if-unstarted waiting on it hold."""
        for subscriber in item.aborting or ():
            state = self._clients.get(subscriber[0])
            if state is not None and subscriber in item.subscribers:
                state.items.pop(subscriber[1], None)
                item.subscribers.remove(subscriber)
                self._withdrawn_unstarted.add(subscriber)
        item.aborting = None
        if not item.subscribers and self._by_key.get(item.key) is item:
            del self._by_key[item.key]

    # -- dispatch ------------------------------------------------------------------------

    def fill(self) -> list[Action]:
        """Gives work to every worker that should have some.

        A worker with room takes first the unstarted requests of a worker stalled on a slow
        request (they were queued before anything in the queue), then a batch from the
        queue: an idle worker always, a busy one (its next batch, sent ahead) while no worker
        is idle. An idle worker with an empty queue takes back unstarted work from a busy one.
        """
        actions = self._expire_due() if self._deadlines else []
        up = [w for w in self._workers if w.up and not w.leaving and w.reserved is None]
        stalled = self._stalled([w for w in self._workers if w.up])
        for worker in up:
            if not worker.batches and not (
                stalled and self._take_back_for(worker, actions, stalled)
            ):
                self._send(worker, actions)
        if not self._queued:
            holders = [w for w in self._workers if w.up]
            for worker in up:
                if not worker.batches:
                    self._take_back_for(worker, actions, [w for w in holders if w is not worker])
            return actions
        if all(worker.batches for worker in up):
            for worker in up:
                head = worker.batches[0]
                room = (
                    len(worker.batches) < PIPELINE_DEPTH
                    and not worker.batches[-1].suspect
                    and not (head.expired and head.hung())  # it may be killed: send none
                )
                if room and not (stalled and self._take_back_for(worker, actions, stalled)):
                    self._send(worker, actions)
        return actions

    def _stalled(self, up: list[_Worker]) -> list[_Worker]:
        """Workers that reported nothing for much longer than a request takes."""
        limit = max(STALL_SECONDS, STALL_FACTOR * (self._sizer.typical_seconds or 0.0))
        now = self._clock()
        return [w for w in up if w.batches and now - w.progress_at > limit]

    def _send(self, worker: _Worker, actions: list[Action]) -> None:
        size = self._sizer.next_size(self._queued, sum(1 for w in self._workers if w.up))
        if self._max_per_worker is not None:  # no more than it may still process
            size = min(size, self._max_per_worker - worker.processed - worker.held())
            if size <= 0:
                return
        items = self._take(size, alone_ok=not worker.batches)
        if items:
            actions.append(self._dispatch(worker, items))

    def _dispatch(self, worker: _Worker, items: list[_Item]) -> Dispatch:
        if not worker.batches:
            worker.progress_at = self._clock()
        batch_id = self._next_batch_id
        self._next_batch_id += 1
        suspect = len(items) == 1 and items[0].attempts > 0  # such requests travel alone
        batch = _Batch(batch_id, worker.index, items, bool(worker.batches), self._clock(), suspect)
        for item in items:
            item.batch = batch
        worker.batches.append(batch)
        self._batches[batch_id] = batch
        return Dispatch(worker.index, WorkBatch(batch_id, [i.request for i in items]))

    def _take(self, size: int, alone_ok: bool) -> list[_Item]:
        """Removes up to ``size`` live items from the front of the queue. A request whose
        worker died before goes alone, and only to a worker holding nothing else."""
        taken: list[_Item] = []
        while len(taken) < size and (front := self._queue.front()) is not None:
            priority, level = front
            while level and len(taken) < size:
                item = level[0]
                if not item.subscribers or item.batch is not None or item.priority != priority:
                    level.popleft()  # withdrawn, or moved to a higher level by an equal one
                    continue
                if item.attempts and (taken or not alone_ok):
                    self._queued -= len(taken)
                    return taken
                level.popleft()
                taken.append(item)
                if item.attempts:
                    self._queued -= len(taken)
                    return taken
        self._queued -= len(taken)
        return taken

    def _take_back_for(self, taker: _Worker, actions: list[Action], holders: list[_Worker]) -> bool:
        """Asks the holder of the most unstarted work for some back, for ``taker``: all of
        a batch that has not reported yet, or of a stalled worker's, else the back half of
        a running batch's unstarted tail. Returns whether it asked (or already had)."""
        if any(b.taking_for == taker.index for b in self._batches.values()):
            return True  # one request at a time per taker
        best: tuple[int, _Batch, list[int]] | None = None
        for worker in holders:
            if worker is taker or not worker.up:
                continue
            for batch in worker.batches:
                if batch.taking_for != -1:
                    continue
                unstarted = batch.unstarted()
                if unstarted and (best is None or len(unstarted) > best[0]):
                    best = (len(unstarted), batch, unstarted)
        if best is None:
            return False
        _, batch, unstarted = best
        holder = self._workers[batch.worker]
        running = batch is holder.batches[0] and (batch.chunks or batch.started_upto >= 0)
        if running and holder not in self._stalled([holder]):
            unstarted = unstarted[len(unstarted) // 2 :]  # the back half: both keep working
        batch.taking_for = taker.index
        actions.append(TakeBack(batch.worker, batch.batch_id, unstarted))
        return True

    def taken_back(self, batch_id: int, positions: list[int], late: list[int]) -> list[Action]:
        """A worker answered a :class:`TakeBack`: every position asked for but ``late`` is
        released to the queue's front; ``late`` ones had started and stay."""
        batch = self._batches.get(batch_id)
        if batch is None:
            return self.fill()  # it ended meanwhile; its worker's news settled it
        idle = None if batch.taking_for == OVERTAKE else self._workers[batch.taking_for]
        batch.taking_for = -1
        if late:
            batch.started_upto = max(batch.started_upto, max(late))
        stay = set(late)
        released = [batch.items[p] for p in positions if p not in stay]
        for item in released:
            if item.aborting and item.batch is batch:
                self._settle_aborting(item)
        back = [
            item
            for item in released
            if item.batch is batch and item.subscribers  # not aborted meanwhile
        ]
        actions: list[Action] = []
        if back and idle is not None and idle.up and not idle.batches:
            actions.append(self._dispatch(idle, back))  # straight to the worker that asked
        else:
            self._requeue(back)
        return actions + self.fill()

    # -- outcomes ------------------------------------------------------------------------

    def chunk(self, worker: int, chunk: OutcomeChunk) -> list[Action]:
        """Settles the requests of a streamed chunk; at the batch's end frees its worker."""
        batch = self._batches.get(chunk.batch_id)
        if batch is None:
            return []  # its worker died meanwhile: the batch was requeued or failed
        if not batch.chunks and not batch.behind:
            overhead = self._clock() - batch.sent_at - chunk.seconds
            self._sizer.record(chunk.seconds, len(chunk.positions), overhead)
        else:
            self._sizer.record(chunk.seconds, len(chunk.positions))
        batch.chunks += 1
        holder = self._workers[batch.worker]
        holder.progress_at = self._clock()
        if self._max_per_worker is not None:
            holder.processed += len(chunk.positions)
            if holder.processed >= self._max_per_worker and not holder.leaving:
                holder.leaving = holder.recycling = True  # replaced once it holds nothing
        if chunk.positions:
            batch.reported = chunk.positions[-1] + 1
            batch.started_upto = max(batch.started_upto, chunk.positions[-1])
        self.processed += len(chunk.positions)
        errors = chunk.errors
        if errors:
            self.failed += len(errors)
        news: dict[str, Outcomes] = {}
        results = chunk.results
        items = batch.items
        by_key = self._by_key
        clients = self._clients
        cache = self.cache
        last: str | None = None  # the client of the previous request: usually the same
        outcomes: Outcomes | None = None
        state: _Client | None = None
        for index, position in enumerate(chunk.positions):
            item = items[position]
            if item.batch is not batch:
                continue  # taken back for another worker
            result = results[index]
            for client, request_id in item.subscribers:
                if client != last:
                    last = client
                    outcomes = news.get(client)
                    if outcomes is None:
                        outcomes = news[client] = Outcomes([], [], {})
                    state = clients.get(client)
                assert outcomes is not None
                if errors and index in errors:
                    outcomes.errors[len(outcomes.ids)] = errors[index]
                outcomes.ids.append(request_id)
                outcomes.results.append(result)
                if state is not None:
                    state.items.pop(request_id, None)
                    if state.left and not state.items:
                        del clients[client]
                        state = None
            key = item.key
            if by_key.get(key) is item:
                del by_key[key]
            if cache is not None and not (errors and index in errors):
                cache.put(key, result)
            item.batch = None
            item.subscribers = []
            item.aborting = None  # it ran: those aborts came too late
        for client, outcomes in news.items():
            self._post(client, outcomes)
        if chunk.final:
            return self._end(batch)
        return []

    def waited(self, chunk: OutcomeChunk) -> float | None:
        """Seconds from the scheduler receiving the first request of ``chunk`` to now (call
        before :meth:`chunk`); None if the chunk carries nothing still known here."""
        batch = self._batches.get(chunk.batch_id)
        if batch is None or not chunk.positions:
            return None
        return self._clock() - batch.items[chunk.positions[0]].received_at

    def batch_failed(self, batch_id: int, error: BaseException, retry: bool) -> list[Action]:
        """A batch ended without its outcomes: raypw's own worker code failed (``retry``
        False: its requests fail with ``error``), or its outcomes were lost (``retry``: they
        go again, charged as a death)."""
        batch = self._batches.get(batch_id)
        if batch is None:
            return []
        held = [item for item in batch.items if item.batch is batch and item.subscribers]
        if retry:
            self._charge(held, error)
        else:
            self._fail(held, error)
        return self._end(batch)

    def _end(self, batch: _Batch) -> list[Action]:
        del self._batches[batch.batch_id]
        self._tell_timed_out(batch)
        worker = self._workers[batch.worker]
        if batch in worker.batches:
            worker.batches.remove(batch)
        again = []
        for item in batch.items:
            if item.batch is batch:  # skipped: aborted (no subscribers) or never started
                if item.aborting:
                    self._settle_aborting(item)
                item.batch = None
                if item.subscribers:
                    again.append(item)
        self._requeue(again)  # in their order, at the front
        if not worker.batches:
            worker.idle_since = self._clock()
            if worker.leaving and worker.up:
                return self._leave(worker) + self.fill()
        return self.fill()

    def _finish(self, item: _Item) -> None:
        """Forgets a finished item: a later equal request runs again."""
        if self._by_key.get(item.key) is item:
            del self._by_key[item.key]
        item.batch = None
        item.aborting = None
        clients = self._clients
        for client, request_id in item.subscribers:
            state = clients.get(client)
            if state is not None:
                state.items.pop(request_id, None)
                if state.left and not state.items:
                    del clients[client]
        item.subscribers = []

    # -- workers -------------------------------------------------------------------------

    def worker_died(self, worker: int, cause: BaseException) -> list[Action]:
        """Requeues what a dead worker held (Ray restarts it), failing the requests out of
        retries. Call :meth:`worker_back` or :meth:`worker_gone` later."""
        state = self._workers[worker]
        if not state.up:
            return []
        state.up = False
        state.reserved = None  # the fast-path request failed with it: its client resends it
        held: list[_Item] = []
        for batch in state.batches:
            self._tell_timed_out(batch)
            held.extend(item for item in batch.items if item.batch is batch and item.subscribers)
            for item in batch.items:
                if item.batch is batch:
                    item.batch = None
            del self._batches[batch.batch_id]
        state.batches.clear()
        self.worker_restarts += 1
        self._charge(held, cause)
        return self.fill()

    def fast_path_done(self, report: FastPathReport) -> list[Action]:
        """Counts requests a client sent to a worker itself (the idle-pool fast path; the
        scheduler never held them), and gives work to the worker that ran them."""
        self.processed += report.processed
        self.failed += report.failed
        state = self._clients.get(report.client)
        if state is not None:
            state.fast_path_upto = max(state.fast_path_upto, report.finished)
        return self._unreserve(report.client, report.finished)

    def _unreserve(self, client: str, upto: int | None) -> list[Action]:
        """Frees the workers reserved for ``client``'s fast-path requests up to id ``upto``
        (None: all): they take work again, or go if they are leaving."""
        actions: list[Action] = []
        freed = False
        for worker in self._workers:
            held = worker.reserved
            if held is not None and held[0] == client and (upto is None or held[1] <= upto):
                worker.reserved = None
                freed = True
                if worker.leaving and worker.up and not worker.batches:
                    actions.extend(self._leave(worker))
        return actions + self.fill() if freed else actions

    def worker_back(self, worker: int) -> list[Action]:
        """A worker (re)started, after a death or a recycling, or one just added: it takes
        work (unless it is leaving: then it goes at once)."""
        state = self._workers[worker]
        state.up = True
        state.idle_since = self._clock()
        if state.recycling:
            state.recycling = state.leaving = False
            state.processed = 0
        if state.leaving:
            return self._leave(state) + self.fill()
        return self.fill()

    # -- the pool's size -----------------------------------------------------------------

    @property
    def workers(self) -> int:
        """Workers in the pool: alive and not being retired (recycled ones count)."""
        return sum(1 for w in self._workers if w.alive and not (w.leaving and not w.recycling))

    def add_workers(self, count: int) -> list[int]:
        """Makes room for ``count`` more workers; returns their indices (slots of retired
        ones first). Start each, then call :meth:`worker_back` with its index."""
        free = [w.index for w in self._workers if not w.alive]
        indices: list[int] = []
        for _ in range(count):
            if free:
                index = free.pop(0)
                self._workers[index] = _Worker(index)
            else:
                index = len(self._workers)
                self._workers.append(_Worker(index))
            indices.append(index)
        return indices

    def retire_workers(self, count: int) -> list[Action]:
        """Shrinks the pool by ``count`` (never below one): workers not yet started or idle
        go first, then those holding the least; each takes no more work, gives back what it
        has not started, finishes what it has, and then goes (:class:`Retire`)."""
        active = [w for w in self._workers if w.alive and not w.leaving]
        count = min(count, len(active) - 1)
        if count <= 0:
            return []
        chosen = sorted(
            active, key=lambda w: (w.up, w.held() + (w.reserved is not None), -w.index)
        )[:count]
        actions: list[Action] = []
        for worker in chosen:
            worker.leaving = True
            if not worker.up and not worker.batches:  # starting, or restarting
                actions.extend(self._leave(worker))
                continue
            for batch in worker.batches:
                positions = batch.surely_unstarted(running=batch is worker.batches[0])
                if positions and batch.taking_for == -1:
                    batch.taking_for = OVERTAKE
                    actions.append(TakeBack(worker.index, batch.batch_id, positions))
            if not worker.batches and worker.reserved is None:
                actions.extend(self._leave(worker))
        return actions + self.fill()

    def _leave(self, worker: _Worker) -> list[Action]:
        """A leaving worker holds nothing: it is retired, or replaced."""
        worker.up = False
        if worker.recycling:
            self.worker_recycles += 1
            return [Recycle(worker.index)]
        worker.alive = False
        return [Retire(worker.index)]

    def idle_workers(self) -> list[float]:
        """When each worker taking work that holds nothing became idle."""
        return [
            w.idle_since
            for w in self._workers
            if w.up and not w.leaving and not w.batches and w.reserved is None
        ]

    def worker_gone(self, worker: int, cause: BaseException) -> list[Action]:
        """A worker is gone for good. With none left, everything queued fails."""
        state = self._workers[worker]
        actions = self.worker_died(worker, cause) if state.up else []
        state.alive = False
        if not any(w.alive for w in self._workers):
            self._fail_queue(WorkerDiedError(f"every worker of the service died; last: {cause}"))
        return actions

    def _charge(self, items: list[_Item], cause: BaseException) -> None:
        """Counts a death against each item; requeues those with retries left."""
        again: list[_Item] = []
        spent: list[_Item] = []
        for item in items:
            item.batch = None
            item.attempts += 1
            (spent if item.attempts > self._max_retries else again).append(item)
        for item in spent:
            self._fail([item], self._out_of_retries(item, cause))
        self._requeue(again)

    def _out_of_retries(self, item: _Item, cause: BaseException | None) -> WorkerDiedError:
        """The error of a request whose worker died under it once more than max_retries
        allows (``cause``: of the last death, if known)."""
        last = "" if cause is None else f"; last: {type(cause).__name__}"
        return WorkerDiedError(
            f"{_describe(item.request)} was in process when its worker died, "
            f"{item.attempts} times (max_retries={self._max_retries}){last}",
            request=item.request,
            attempts=item.attempts,
        )

    def _requeue(self, items: list[_Item]) -> None:
        """Puts items back at the front of the queue, in order."""
        for item in reversed(items):
            if item.subscribers:
                item.batch = None
                self._queue.appendleft(item, item.priority)
                self._queued += 1

    def _fail_queue(self, error: BaseException) -> None:
        """Fails everything queued: no worker is left to run it."""
        self.dead = error
        # An item raised to a higher priority is in the backlog twice: count it once.
        items = list(
            {
                id(item): item for item in self._queue if item.subscribers and item.batch is None
            }.values()
        )
        self._queue.clear()
        self._queued = 0
        self._fail(items, error)

    def _fail(self, items: list[_Item], error: BaseException) -> None:
        self.failed += len(items)
        news: dict[str, list[int]] = {}
        for item in items:
            for client, request_id in item.subscribers:
                news.setdefault(client, []).append(request_id)
            self._finish(item)
        for client, ids in news.items():
            self._post(client, Failed(ids, error))

    def _post(self, client: str, news: News) -> None:
        state = self._clients.get(client)
        if state is None or state.left:
            return
        state.mail.append(news)
        self.woken.add(client)

    # -- status --------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def running(self) -> int:
        return sum(
            1
            for batch in self._batches.values()
            for item in batch.items
            if item.batch is batch and item.subscribers
        )

    @property
    def chunk_seconds(self) -> float:
        """How often each worker sends outcomes at most, under a steady stream.

        About ``CHUNK_REQUESTS`` usual requests' time (1 ms for cheap requests, at most
        ``MAX_CHUNK_SECONDS``), so that a chunk's cost stays small beside the work it carries;
        and longer on a wide pool, so the Coordinator keeps up (README "Scaling").
        """
        typical = self._sizer.typical_seconds or 0.0
        steady = min(CHUNK_REQUESTS * typical, MAX_CHUNK_SECONDS)
        wide = self.workers * CHUNK_COST_SECONDS / CHUNK_SHARE
        return max(MIN_CHUNK_SECONDS, steady, wide)

    @property
    def typical_seconds(self) -> float | None:
        """The usual time one request takes; None before any was timed."""
        return self._sizer.typical_seconds

    @property
    def waiting(self) -> int:
        """Requests not started: queued, or sent to a worker behind the one it runs."""
        busy = sum(1 for w in self._workers if w.batches)
        return self._queued + max(0, self.running - busy)

    @property
    def workers_up(self) -> int:
        return sum(1 for w in self._workers if w.up)

    @property
    def workers_alive(self) -> int:
        return sum(1 for w in self._workers if w.alive)


def _ask(batch: _Batch, pairs: list[tuple[int, Subscriber]]) -> SkipUnstarted:
    return SkipUnstarted(batch.worker, batch.batch_id, [p for p, _ in pairs], [s for _, s in pairs])


def _describe(request: Any, limit: int = 80) -> str:
    """The request for an error message (the Coordinator never unpickles a request)."""
    if isinstance(request, Pickled):
        return "the request"
    text = repr(request)
    return text if len(text) <= limit else text[: limit - 3] + "..."
