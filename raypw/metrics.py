"""A service's metrics in Ray's own metrics system (``ray.util.metrics``).

::

    Coordinator                                     Ray                          you
    every METRICS_SECONDS: Counts --> update() -->  Gauge.set / Counter.inc  --> metrics agent
    each outcome chunk: chunk() ---------------->   Histogram.observe            (Prometheus
                                                                                  endpoint,
                                                                                  Grafana)

Ray prefixes every name with ``ray_`` and counters gain ``_total``, so ``raypw_requests_processed``
is scraped as ``ray_raypw_requests_processed_total``. Every series carries the tags ``service``
(the service's name, or ``unnamed-`` and a short id) and ``processor`` (the processor class).

Recording costs 1.4 us (``Gauge.set``) to 2.2 us (``Histogram.observe``) a call in Ray 2.60,
measured in an actor: too much for a call per request on a path that handles ~100,000 requests
a second. So nothing here runs per request: gauges and counters are set from the scheduler's
own counters on a timer (counters by the difference since the last time), and the histograms
take one observation per outcome chunk (a few milliseconds of work), so their ``_count`` counts
chunks, not requests.

Ray exports only where its metrics agent runs, which comes with ``ray[default]``; with a
minimal ``ray`` the calls still work and record nothing anyone can read.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

__all__ = [
    "METRICS",
    "METRICS_SECONDS",
    "Counts",
    "MetricSpec",
    "ServiceMetrics",
    "ray_metric",
    "service_tags",
]

# How often the gauges and counters are brought up to date. Ray's agent exports every ~10 s,
# so a finer step would show nothing more.
METRICS_SECONDS = 1.0

logger = logging.getLogger("raypw")

Kind = Literal["gauge", "counter", "histogram"]

# Bucket bounds of both histograms, in seconds: 1 ms to 10 min, about three a decade.
SECONDS_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 25.0, 60.0, 150.0, 600.0,
)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class MetricSpec:
    """One exported metric.

    Attributes:
        name: Its name as given to Ray (scraped with a ``ray_`` prefix, counters with a
            ``_total`` suffix).
        kind: ``gauge``, ``counter`` or ``histogram``.
        description: Its help text.
        boundaries: A histogram's bucket bounds, else empty.
    """

    name: str
    kind: Kind
    description: str
    boundaries: tuple[float, ...] = ()


METRICS = (
    MetricSpec("raypw_requests_queued", "gauge", "Distinct requests waiting for a worker."),
    MetricSpec("raypw_requests_running", "gauge", "Distinct requests sent to workers."),
    MetricSpec("raypw_workers", "gauge", "Workers in the pool: alive and not being retired."),
    MetricSpec(
        "raypw_workers_alive",
        "gauge",
        "Workers not gone for good, counting any that Ray is restarting.",
    ),
    MetricSpec(
        "raypw_requests_processed", "counter", "Requests the workers processed (ok or raised)."
    ),
    MetricSpec(
        "raypw_requests_failed",
        "counter",
        "Requests that ended with an error: process() raised, or raypw gave up on them.",
    ),
    MetricSpec(
        "raypw_requests_timed_out", "counter", "Waiters whose request's deadline passed first."
    ),
    MetricSpec(
        "raypw_requests_deduplicated",
        "counter",
        "Requests that joined an equal pending one at the coordinator.",
    ),
    MetricSpec("raypw_worker_restarts", "counter", "Workers Ray restarted after they died."),
    MetricSpec(
        "raypw_cache_hits",
        "counter",
        "Requests answered from the result cache without being processed (cache= on).",
    ),
    MetricSpec(
        "raypw_request_process_seconds",
        "histogram",
        "Seconds process() took a request: the mean of each outcome chunk, one observation "
        "a chunk.",
        SECONDS_BUCKETS,
    ),
    MetricSpec(
        "raypw_request_latency_seconds",
        "histogram",
        "Seconds from the coordinator receiving a request to its outcome: the first request "
        "of each outcome chunk.",
        SECONDS_BUCKETS,
    ),
)


@dataclasses.dataclass(frozen=True, slots=True)
class Counts:
    """The scheduler's counters at one moment; names as in :data:`METRICS` without the
    ``raypw_`` and ``requests_`` prefixes."""

    queued: int
    running: int
    workers: int
    workers_alive: int
    processed: int
    failed: int
    timed_out: int
    deduplicated: int
    worker_restarts: int
    cache_hits: int = 0


MetricFactory = Callable[[MetricSpec, Mapping[str, str]], Any]
"""Builds the metric of a spec with its default tags (Ray's by default; a fake in tests)."""


def ray_metric(spec: MetricSpec, tags: Mapping[str, str]) -> Any:
    """Builds ``spec`` as a ``ray.util.metrics`` object with ``tags`` as its default tags."""
    from ray.util import metrics

    keys = tuple(tags)
    metric: Any
    if spec.kind == "gauge":
        metric = metrics.Gauge(spec.name, spec.description, tag_keys=keys)
    elif spec.kind == "counter":
        metric = metrics.Counter(spec.name, spec.description, tag_keys=keys)
    else:
        metric = metrics.Histogram(
            spec.name, spec.description, boundaries=list(spec.boundaries), tag_keys=keys
        )
    return metric.set_default_tags(dict(tags))


def service_tags(name: str | None, creator: str, processor: str) -> dict[str, str]:
    """The tags of a service's metrics: its name (or ``unnamed-`` and the first 8 characters
    of its creator's id) and its processor class's qualified name."""
    return {"service": name or f"unnamed-{creator[:8]}", "processor": processor}


class ServiceMetrics:
    """Exports one service's counters and timings as Ray metrics. Not thread-safe: the
    coordinator calls it from its event loop only.

    Args:
        tags: Default tags of every series (see :func:`service_tags`).
        factory: Builds each metric; :func:`ray_metric` by default.

    Example:
        >>> metrics = ServiceMetrics({"service": "s", "processor": "p"})  # doctest: +SKIP
        >>> metrics.update(counts)  # doctest: +SKIP
        >>> metrics.chunk(requests=4, seconds=0.004, waited=0.2)  # doctest: +SKIP
    """

    def __init__(self, tags: Mapping[str, str], factory: MetricFactory = ray_metric) -> None:
        made = {spec.name: factory(spec, tags) for spec in METRICS}
        self._gauges: Sequence[tuple[str, Any]] = [
            (_field(spec.name), made[spec.name]) for spec in METRICS if spec.kind == "gauge"
        ]
        self._counters: Sequence[tuple[str, Any]] = [
            (_field(spec.name), made[spec.name]) for spec in METRICS if spec.kind == "counter"
        ]
        self._process_seconds = made["raypw_request_process_seconds"]
        self._latency_seconds = made["raypw_request_latency_seconds"]
        self._last: dict[str, int] = {}
        self._chunk_failed = False

    def update(self, counts: Counts) -> None:
        """Sets the gauges and adds to each counter what its count grew by since last time.

        Args:
            counts: The scheduler's counters now. They only grow; one found lower anyway adds
                nothing and is the base from then on.
        """
        for field, gauge in self._gauges:
            gauge.set(getattr(counts, field))
        last = self._last
        for field, counter in self._counters:
            value: int = getattr(counts, field)
            grown = value - last.get(field, 0)
            if grown > 0:
                counter.inc(grown)
            last[field] = value

    def chunk(self, requests: int, seconds: float, waited: float | None) -> None:
        """Observes one outcome chunk: one observation in each histogram, whatever its size.

        Args:
            requests: Requests the chunk reports.
            seconds: Time the worker spent processing them (their mean is observed).
            waited: Seconds since the scheduler received the chunk's first request; None if
                not known (then the latency histogram is left alone).

        Never raises: it runs on the path that delivers outcomes, which a metrics failure
        must not break. The first failure is logged.
        """
        try:
            if requests:
                self._process_seconds.observe(seconds / requests)
            if waited is not None:
                self._latency_seconds.observe(waited)
        except Exception:
            if not self._chunk_failed:
                self._chunk_failed = True
                logger.exception("raypw: observing an outcome chunk in the metrics failed")


def _field(name: str) -> str:
    """The :class:`Counts` field of a metric name."""
    return name.removeprefix("raypw_").removeprefix("requests_")
