"""A service's status: :class:`ServiceStats`, and the throughput meter behind it."""

from __future__ import annotations

import dataclasses
import html
import time
from collections import deque
from collections.abc import Callable

__all__ = ["ServiceStats"]


@dataclasses.dataclass(frozen=True)
class ServiceStats:
    """A snapshot of a running service, as :meth:`raypw.ProcessorService.stats` returns it.

    The first group counts this program's own promises; the second describes the service as a
    whole, shared by every program attached to it.

    Attributes:
        pending: This program's promises not finished yet (queued or running).
        done: This program's promises finished with a result.
        failed: This program's promises finished with an error.
        aborted: This program's promises aborted.
        deduplicated: Requests that joined an equal pending one instead of being processed
            again (here and, across programs, at the coordinator).
        queued: Distinct requests waiting for a worker, including this program's requests not
            yet handed to the coordinator.
        running: Distinct requests sent to workers: in the batch each runs, or the one
            waiting behind it.
        processed: Requests the workers have processed (all programs, this coordinator).
        workers: Workers in the pool now: the configured number, or what
            :meth:`~raypw.ProcessorService.resize` made it (a worker being retired no longer
            counts).
        workers_alive: Workers not gone for good (retiring ones included), whether up or
            not: one starting, being restarted or waiting for a node to have its resources
            counts too.
        throughput: Requests processed per second over the last few seconds.
        worker_restarts: Workers Ray restarted after they died (this coordinator).
        coordinator_replacements: Times this program replaced a dead coordinator.
        timed_out: This program's promises that failed with
            :class:`~raypw.RequestTimeoutError` (counted in ``failed`` too).
        worker_recycles: Workers replaced after ``max_requests_per_worker`` requests.
        cache_hits: Requests answered from the result cache (``cache=``) without being
            processed (all programs, this coordinator).
        cache_entries: Results the cache holds now.
        cache_bytes: Bytes of keys and results the cache holds now (as pickled).
        workers_up: Workers up and taking work; below ``workers`` while some are starting,
            being restarted, or waiting for a place (on a cluster, a node with the resources
            they ask for).
        fast_path: This program's lone requests that went straight to an idle worker
            instead of through the coordinator (a service of one program, without a cache,
            recycling or metrics; see "The idle-pool fast path" in the README).
    """

    pending: int
    done: int
    failed: int
    aborted: int
    deduplicated: int
    queued: int
    running: int
    processed: int
    workers: int
    workers_alive: int
    throughput: float
    worker_restarts: int = 0
    coordinator_replacements: int = 0
    timed_out: int = 0
    worker_recycles: int = 0
    cache_hits: int = 0
    cache_entries: int = 0
    cache_bytes: int = 0
    workers_up: int = 0
    fast_path: int = 0

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(field.name)}</th>"
            f"<td style='text-align:right'>{_format(getattr(self, field.name))}</td></tr>"
            for field in dataclasses.fields(self)
        )
        return f"<table><caption>raypw service stats</caption>{rows}</table>"


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


class Throughput:
    """Events per second over a sliding window (the coordinator's recent throughput).

    Args:
        window: Seconds of history the rate is computed over.
        clock: Returns the time in seconds (injectable for tests).
    """

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._started = clock()
        self._events: deque[tuple[float, int]] = deque()
        self._in_window = 0

    def add(self, count: int) -> None:
        """Records ``count`` events now."""
        now = self._clock()
        self._events.append((now, count))
        self._in_window += count
        self._trim(now)

    def rate(self) -> float:
        """Events in the window divided by its length (or by the meter's age, if younger)."""
        now = self._clock()
        self._trim(now)
        span = min(self._window, now - self._started)
        return self._in_window / span if span > 0 else 0.0

    def _trim(self, now: float) -> None:
        start = now - self._window
        events = self._events
        while events and events[0][0] < start:
            self._in_window -= events.popleft()[1]
