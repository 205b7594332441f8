"""When each waiter's deadline passes: the Coordinator's book of deadlines.

Deadlines come a submit at a time, and a submit's requests were queued one after another with
the same timeout, so their deadlines are (nearly) in order. The book keeps each submit's
waiters as one group sorted by deadline, and a heap of groups by their next deadline: one
heap operation per submit, not per request. A group is walked from its front as its deadlines
pass. Waiters that finish are not looked for: the owner checks whether one still waits when
its deadline comes, and :meth:`DeadlineBook.compact` drops finished ones once the book holds
twice as many as after the last compaction, so a long stream of requests with far deadlines
keeps memory bounded.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Set

__all__ = ["MIN_COMPACT", "DeadlineBook"]

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
