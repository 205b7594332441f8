"""Results of finished requests, kept for equal requests queued later: the result cache.

The Coordinator keeps one :class:`ResultCache` per service (``cache=CacheConfig(...)``), so
every program attached to a named service shares it. Entries are keyed like dedup (the
request, or what the service's ``key=`` makes of it; a value that is not plain by its pickle
bytes) and hold the result as it came from the worker, plain or pickled: the Coordinator
never unpickles a user's value. Only results are kept, never errors. The cache is bounded
in entries and in bytes, least recently used first out, and an entry older than its
time to live is never served.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Final

from raypw.protocol import Pickled

__all__ = ["MISS", "ResultCache"]

MISS: Final = object()
"""What :meth:`ResultCache.get` returns for a key it holds no fresh result for."""

# Bytes counted for an entry beyond its values' own: the dict slot, the tuple, the objects.
ENTRY_OVERHEAD = 200


class ResultCache:
    """Results by request key, least recently used first out.

    Args:
        max_entries: Entries kept at most.
        max_bytes: Bytes of keys and results kept at most (as they travel: pickle bytes, or
            the plain value's length); a larger result is not kept.
        ttl_seconds: Seconds an entry is served after its result was stored; None: no limit.
        clock: Seconds, monotonic (a fake one in tests).
    """

    __slots__ = (
        "_clock",
        "_entries",
        "_max_bytes",
        "_max_entries",
        "_ttl",
        "bytes",
        "hits",
        "stored",
    )

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        ttl_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._ttl = ttl_seconds
        self._clock = clock
        # key -> (result, expiry time or None, bytes counted)
        self._entries: OrderedDict[Hashable, tuple[Any, float | None, int]] = OrderedDict()
        self.bytes = 0  # bytes counted for the entries held
        self.hits = 0  # results served
        self.stored = 0  # results stored

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Any:
        """Returns the result stored for ``key``, or :data:`MISS` (none, or expired)."""
        entry = self._entries.get(key)
        if entry is None:
            return MISS
        result, expires, size = entry
        if expires is not None and self._clock() >= expires:
            del self._entries[key]
            self.bytes -= size
            return MISS
        self._entries.move_to_end(key)
        self.hits += 1
        return result

    def put(self, key: Hashable, result: Any) -> None:
        """Stores ``result`` for ``key`` (replacing an older one), then evicts the least
        recently used entries beyond the bounds."""
        size = ENTRY_OVERHEAD + _size(key) + _size(result)
        if size > self._max_bytes:
            return
        entries = self._entries
        old = entries.pop(key, None)
        if old is not None:
            self.bytes -= old[2]
        expires = None if self._ttl is None else self._clock() + self._ttl
        entries[key] = (result, expires, size)
        self.bytes += size
        self.stored += 1
        while len(entries) > self._max_entries or self.bytes > self._max_bytes:
            _, (_, _, evicted) = entries.popitem(last=False)
            self.bytes -= evicted


def _size(value: Any) -> int:
    """Bytes a key or result takes as it travels (plain or :class:`Pickled`)."""
    if type(value) is Pickled:
        return len(value.data)
    if isinstance(value, str | bytes):
        return len(value)
    return 8
