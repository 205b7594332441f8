"""Requests waiting their turn: higher priority first, first in first out within one.

A bucket queue: a FIFO per priority level and a heap of the levels in use, so adding and
taking cost O(1) amortised, plus O(log levels) when a level appears or empties. Without
priorities it is a single deque. Entries are not removed from the middle: the owner skips
the ones that no longer count when it takes them (aborted, timed out, or moved to a higher
level by a deduplicated request), which keeps every operation cheap. Hot loops may work on a
level's deque itself (:meth:`level`, :meth:`front`).
"""

from __future__ import annotations

import collections
import heapq
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["Backlog"]

T = TypeVar("T")


class Backlog(Generic[T]):
    """Entries by priority (higher first), each level first in first out."""

    __slots__ = ("_levels", "_order")

    def __init__(self) -> None:
        self._levels: dict[int, collections.deque[T]] = {}
        self._order: list[int] = []  # negated levels in use: a min-heap of -priority

    def __len__(self) -> int:
        return sum(map(len, self._levels.values()))

    def __bool__(self) -> bool:
        return any(self._levels.values())

    def __iter__(self) -> Iterator[T]:
        """Every entry, highest level first."""
        for level in sorted(self._levels, reverse=True):
            yield from self._levels[level]

    def level(self, priority: int) -> collections.deque[T]:
        """The deque of one priority, made if needed: append to it, or take from its front."""
        level = self._levels.get(priority)
        if level is None:
            level = self._levels[priority] = collections.deque()
            heapq.heappush(self._order, -priority)
        return level

    def append(self, entry: T, priority: int = 0) -> None:
        """Adds an entry behind the others of its priority."""
        self.level(priority).append(entry)

    def extend(self, entries: Iterable[T], priority: int = 0) -> None:
        """Adds entries, in order, behind the others of their priority."""
        self.level(priority).extend(entries)

    def appendleft(self, entry: T, priority: int = 0) -> None:
        """Puts an entry ahead of the others of its priority (work that comes back)."""
        self.level(priority).appendleft(entry)

    def front(self) -> tuple[int, collections.deque[T]] | None:
        """The highest priority waiting and its deque (not empty), or None when empty."""
        self._drop_empty()
        if not self._order:
            return None
        priority = -self._order[0]
        return priority, self._levels[priority]

    def top(self) -> int | None:
        """The highest priority waiting, or None when empty."""
        self._drop_empty()
        return -self._order[0] if self._order else None

    def peek(self) -> T:
        """The next entry. Raises IndexError when empty."""
        self._drop_empty()
        if not self._order:
            raise IndexError("peek from an empty backlog")
        return self._levels[-self._order[0]][0]

    def popleft(self) -> T:
        """Takes the next entry. Raises IndexError when empty."""
        self._drop_empty()
        if not self._order:
            raise IndexError("pop from an empty backlog")
        return self._levels[-self._order[0]].popleft()

    def clear(self) -> None:
        self._levels.clear()
        self._order.clear()

    def _drop_empty(self) -> None:
        order = self._order
        while order and not self._levels[-order[0]]:
            del self._levels[-heapq.heappop(order)]
