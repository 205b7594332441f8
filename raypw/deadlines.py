"""When each waiter's deadline passes: the Coordinator's book of deadlines.

Deadlines come a submit at a time, and a submit's requests were queued one after another with
the same timeout, so their deadlines are (nearly) in order. The book keeps each submit's
waiters as one group sorted by deadline, and a heap of groups by their next deadline: one
heap operation per submit, not per request. A group is walked from its front as its deadlines
pass. Waiters that finish are not looked for: the owner checks whether one still waits when
its deadline comes, and :meth:`DeadlineBook.compact` drops finished ones once the book holds
twice as many as after the last compaction, so a long stream of requests with far deadlines
keeps memory bounded.

:class:`DeadlineRuns` is the driver's counterpart for the requests still in its outbox: runs
of consecutive request ids sharing a deadline, one per ``queue()`` call.
"""

from __future__ import annotations

import collections
import heapq
import math
from collections.abc import Callable, Iterator, Set
from typing import Any

__all__ = [
    "EARLIEST",
    "MIN_COMPACT",
    "OVER_LIMIT",
    "TICK_SECONDS",
    "DeadlineBook",
    "DeadlineRuns",
    "round_up_to_tick",
]

# The book is compacted once it holds more than twice the waiters it held after the last
# compaction, and at least this many.
MIN_COMPACT = 4096


class _Group:
    """One submit's waiters, sorted by deadline; ``next`` is the first not yet due."""

    __slots__ = ("at", "client", "ids", "next")

    def __init__(self, client: str, ids: list[int], at: list[float]) -> None:
        self.client = client
        self.ids = ids
        self.at = at
        self.next = 0


class DeadlineBook:
    """Waiters (client, request id) by deadline."""

    __slots__ = ("_count", "_heap", "_held", "_limit")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Group]] = []
        self._count = 0  # ties in the heap go by insertion, never by comparing groups
        self._held = 0  # waiters in the book, due or finished ones not yet dropped
        self._limit = MIN_COMPACT

    def __len__(self) -> int:
        """Waiters held (some may have finished since)."""
        return self._held

    def __bool__(self) -> bool:
        return bool(self._heap)

    def add(self, client: str, ids: list[int], deadlines: list[float]) -> bool:
        """Adds one client's waiters with their deadlines (clock times). Returns whether the
        book has grown enough that the owner should :meth:`compact` it."""
        if not ids:
            return False
        if deadlines == sorted(deadlines):  # the usual case, checked without a Python loop
            group = _Group(client, list(ids), list(deadlines))
        else:
            order = sorted(range(len(ids)), key=deadlines.__getitem__)  # stable: ties keep order
            group = _Group(
                client, list(map(ids.__getitem__, order)), list(map(deadlines.__getitem__, order))
            )
        self._push(group)
        self._held += len(ids)
        return self._held > self._limit

    def _push(self, group: _Group) -> None:
        self._count += 1
        heapq.heappush(self._heap, (group.at[group.next], self._count, group))

    def next_due(self) -> float | None:
        """The earliest deadline held, or None."""
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[tuple[str, int]]:
        """Takes out the waiters whose deadline is ``now`` or earlier (a group's in order)."""
        heap = self._heap
        found: list[tuple[str, int]] = []
        while heap and heap[0][0] <= now:
            group = heapq.heappop(heap)[2]
            at, ids, k = group.at, group.ids, group.next
            start = k
            while k < len(ids) and at[k] <= now:
                k += 1
            found.extend((group.client, request_id) for request_id in ids[start:k])
            self._held -= k - start
            group.next = k
            if k < len(ids):
                self._push(group)
        return found

    def compact(self, pending: Callable[[str], Set[int]]) -> None:
        """Keeps only the waiters whose id is in ``pending(client)``."""
        groups = [entry[2] for entry in self._heap]
        self._heap = []
        self._held = 0
        for group in groups:
            ids = pending(group.client)
            waiting = group.ids[group.next :]
            # All finished, or none (the usual cases, e.g. the submit just added): without a
            # Python loop per waiter.
            if ids.isdisjoint(waiting):
                continue
            if all(map(ids.__contains__, waiting)):
                group.at = group.at[group.next :]
                group.ids = waiting
            else:
                rest = zip(group.at[group.next :], waiting, strict=True)
                kept = [(at, request_id) for at, request_id in rest if request_id in ids]
                group.at = [at for at, _ in kept]
                group.ids = [request_id for _, request_id in kept]
            group.next = 0
            self._push(group)
            self._held += len(group.ids)
        self._limit = max(MIN_COMPACT, 2 * self._held)


# DeadlineRuns keeps deadlines rounded up to this grid, so that the requests queued one at a
# time within one tick make one run: a request in the outbox fails at most this much after
# its deadline, never before it.
TICK_SECONDS = 0.001

# What DeadlineRuns.add() tells its owner, as bits.
EARLIEST = 1  # the run added is now the earliest deadline held: wake the watcher
OVER_LIMIT = 2  # more runs are held than ``limit``: compact


class DeadlineRuns:
    """Runs of consecutive ids (deadline, first id, count), earliest deadline first.

    Deadlines mostly come in order (each call's is its clock time plus the same timeout):
    a run whose deadline is no earlier than the last one added goes to the back of a deque,
    flat, three slots a run, so adding one makes no object the garbage collector tracks and
    costs no heap operation. Only a run that comes out of order goes to a heap. The earliest
    run is the earlier of the deque's front and the heap's top.

    Deadlines are kept rounded up to :data:`TICK_SECONDS`, and a run that continues the last
    one (its ids follow on, its rounded deadline is the same) extends it: requests queued one
    at a time with the same timeout make one run per tick, not one each.

    Args:
        limit: Runs held past which :meth:`add` reports :data:`OVER_LIMIT` (see
            :meth:`set_limit`).
    """

    __slots__ = ("_heap", "_lane", "_slots_limit")

    def __init__(self, limit: int = MIN_COMPACT) -> None:
        # deadline, first id, count, deadline, ...: deadlines not decreasing.
        self._lane: collections.deque[Any] = collections.deque()
        self._heap: list[tuple[float, int, int]] = []
        self._slots_limit = 3 * limit

    def set_limit(self, limit: int) -> None:
        """Sets the runs held past which :meth:`add` reports :data:`OVER_LIMIT`."""
        self._slots_limit = 3 * limit

    def __len__(self) -> int:
        """Runs held."""
        return len(self._lane) // 3 + len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._lane) or bool(self._heap)

    def add(self, deadline: float, first: int, count: int) -> int:
        """Adds a run of ``count`` ids from ``first``, due at ``deadline`` (kept rounded up
        to :data:`TICK_SECONDS`).

        Returns:
            :data:`EARLIEST` if its deadline is now the earliest held (strictly earlier than
            every other), plus :data:`OVER_LIMIT` if more than ``limit`` runs are held.
        """
        lane = self._lane
        heap = self._heap
        # The usual call: the ids follow on the last run's and the deadline rounds up to its
        # (it lies in the tick before it), so it extends that run without rounding.
        if lane and lane[-3] - TICK_SECONDS < deadline <= lane[-3] and first == lane[-2] + lane[-1]:
            lane[-1] += count  # one store: an interrupt leaves no half
            return OVER_LIMIT if len(lane) + 3 * len(heap) > self._slots_limit else 0
        if math.isfinite(deadline):
            deadline = round_up_to_tick(deadline)
        if lane and deadline == lane[-3] and first == lane[-2] + lane[-1]:
            lane[-1] += count
            return OVER_LIMIT if len(lane) + 3 * len(heap) > self._slots_limit else 0
        if not lane or deadline >= lane[-3]:
            lane.extend((deadline, first, count))  # one C call: an interrupt leaves no half
            flags = EARLIEST if len(lane) == 3 and (not heap or deadline < heap[0][0]) else 0
        else:
            earliest = deadline < lane[0] and (not heap or deadline < heap[0][0])
            heapq.heappush(heap, (deadline, first, count))
            flags = EARLIEST if earliest else 0
        if len(lane) + 3 * len(heap) > self._slots_limit:
            flags |= OVER_LIMIT
        return flags

    def next_due(self) -> float | None:
        """The earliest deadline held, or None."""
        lane = self._lane
        heap = self._heap
        if lane:
            return min(lane[0], heap[0][0]) if heap else lane[0]  # type: ignore[no-any-return]
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[tuple[int, int]]:
        """Takes out the runs due at ``now`` or earlier: (first id, count) each, earliest
        deadline first."""
        lane = self._lane
        heap = self._heap
        due: list[tuple[int, int]] = []
        while True:
            if lane and lane[0] <= now and (not heap or lane[0] <= heap[0][0]):
                lane.popleft()
                first = lane.popleft()
                due.append((first, lane.popleft()))
            elif heap and heap[0][0] <= now:
                _, first, count = heapq.heappop(heap)
                due.append((first, count))
            else:
                return due

    def keep(self, live: Callable[[int, int], bool]) -> None:
        """Keeps only the runs (first id, count) for which ``live`` is true, in order."""
        kept: collections.deque[Any] = collections.deque()
        for run in _triples(self._lane):
            if live(run[1], run[2]):
                kept.extend(run)
        self._lane = kept
        heap = [entry for entry in self._heap if live(entry[1], entry[2])]
        heapq.heapify(heap)
        self._heap = heap

    def runs(self) -> list[tuple[float, int, int]]:
        """Every run held, (deadline, first id, count), earliest first (ties: the deque's
        first)."""
        return sorted([*_triples(self._lane), *self._heap], key=lambda run: run[0])


def round_up_to_tick(deadline: float) -> float:
    """The earliest multiple of :data:`TICK_SECONDS` (as a float) not before ``deadline``.

    A deadline that is such a multiple already stays as it is, so rounding twice changes
    nothing (ceiling division alone moved about half of them one tick later).
    """
    ticks = round(deadline / TICK_SECONDS)
    rounded = ticks * TICK_SECONDS
    return rounded if rounded >= deadline else (ticks + 1) * TICK_SECONDS


def _triples(lane: collections.deque[Any]) -> Iterator[tuple[float, int, int]]:
    """The runs of a flat deque, in order (indexing a deque's middle is not O(1))."""
    slots = iter(lane)
    return zip(slots, slots, slots, strict=True)
