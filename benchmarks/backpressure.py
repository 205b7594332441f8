"""Backpressure: a long generator through ``queue_requests`` with ``max_queued``, memory over time.

Usage:
    python -m benchmarks.backpressure                       # 10,000,000 no-op requests
    python -m benchmarks.backpressure --n 1000000 --max-queued 10000
    python -m benchmarks.backpressure --mode slices
    python -m benchmarks.backpressure --mode one-call --n 2000000

One service of 2 workers with ``max_queued``; the requests come from a generator, and each
result is taken in ``completed_callback``, which only counts it. Three ways to feed the
generator:

    stream    (default) ``queue_requests(generator, callback, keep_promises=False)`` once:
              the call returns a count, not promises, and holds only those still pending
    slices    ``queue_requests(islice(generator, 10_000), callback)`` until the
              generator is empty, dropping each returned list: no promise is kept, so memory
              can stay flat
    one-call  ``queue_requests(generator, callback)`` once, as the issue words it: the call
              takes the generator lazily, but returns one promise per request, each holding
              its result, so the list (and memory) grows with the stream

A thread samples the RSS of this process's whole tree (the driver, Ray's daemons and the
workers, ``benchmarks.treemem.tree_rss``) every 0.5 s, with the results counted so far and
the service's ``stats()``. Prints wall time, requests/s, peak tree RSS, and a table of the RSS
when 10%, 50%, 90% and 100% of the results were in (with the peak up to then), so a flat
profile shows as equal rows.
"""

from __future__ import annotations

import argparse
import itertools
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from benchmarks.treemem import tree_rss

SAMPLE_SECONDS = 0.5
SLICE = 10_000  # requests per queue_requests call in the slices mode: bounds the list held
FRACTIONS = (0.1, 0.5, 0.9, 1.0)


@dataclass(frozen=True)
class Sample:
    """The state of the run at one moment."""

    seconds: float  # since the first request was queued
    done: int  # results counted by the callback
    rss: int  # bytes, the whole process tree
    pending: int  # this program's pending promises (stats().pending)
    delivered_not_called: int  # stats().done minus callbacks run: the callback backlog


class Counter:
    """Counts results from the callback thread; sets ``finished`` at ``n``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.done = 0
        self.finished = threading.Event()

    def __call__(self, promise: Any) -> None:
        promise.get_result()  # raises if the request failed; the result itself is dropped
        self.done += 1  # one callback thread: no lock needed
        if self.done == self.n:
            self.finished.set()


def requests(n: int) -> Iterator[str]:
    """The stream: ``n`` distinct requests, made one at a time."""
    return (f"r{i}" for i in range(n))


def sample_until(
    service: Any, counter: Counter, started: float, stop: threading.Event, out: list[Sample]
) -> None:
    """Appends a :class:`Sample` every ``SAMPLE_SECONDS`` until ``stop`` is set."""
    me = os.getpid()

    def take() -> None:
        done = counter.done
        stats = service.stats()
        out.append(
            Sample(
                seconds=time.perf_counter() - started,
                done=done,
                rss=tree_rss(me),
                pending=stats.pending,
                delivered_not_called=max(0, stats.done - done),
            )
        )

    take()
    while not stop.wait(SAMPLE_SECONDS):
        take()
    take()


def feed(service: Any, n: int, counter: Counter, mode: str) -> int:
    """Queues the stream; returns the most promises held at once by this function."""
    stream = requests(n)
    if mode == "stream":
        service.queue_requests(stream, counter, keep_promises=False)
        return 0
    if mode == "one-call":
        promises = service.queue_requests(stream, counter)
        return len(promises)
    held = 0
    while chunk := service.queue_requests(itertools.islice(stream, SLICE), counter):
        held = max(held, len(chunk))
    return held


def _gib(value: int) -> str:
    return f"{value / 2**30:.2f}"


def report(n: int, samples: list[Sample], seconds: float, held: int, idle_rss: int) -> None:
    """Prints the summary and the RSS at each fraction of the results."""
    peak = max(s.rss for s in samples)
    print(f"wall {seconds:.1f} s, {n / seconds:,.0f} requests/s, peak tree RSS {_gib(peak)} GiB")
    print(f"tree RSS with the pool up and idle, before the first request: {_gib(idle_rss)} GiB")
    print(f"promises held at once by the feeding code: {held:,}")
    print(
        f"most pending promises seen: {max(s.pending for s in samples):,}; "
        f"largest callback backlog seen: {max(s.delivered_not_called for s in samples):,}"
    )
    print(f"{'results':>8} {'done':>12} {'at s':>7} {'RSS GiB':>8} {'peak so far GiB':>16}")
    peak_so_far = 0
    fractions = iter(FRACTIONS)
    fraction = next(fractions)
    for sample in samples:
        peak_so_far = max(peak_so_far, sample.rss)
        while sample.done >= fraction * n:
            print(
                f"{fraction:>8.0%} {sample.done:>12,} {sample.seconds:>7.1f} "
                f"{_gib(sample.rss):>8} {_gib(peak_so_far):>16}"
            )
            fraction = next(fractions, 2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--max-queued", type=int, default=100_000)
    parser.add_argument("--mode", choices=("stream", "slices", "one-call"), default="stream")
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    from benchmarks.workloads import BenchProcessor
    from raypw import ProcessorService, PromiseSet

    ray.init(address="local", include_dashboard=False, num_cpus=2)
    service = ProcessorService(
        BenchProcessor,
        parallel_workers=2,
        processor_class_init_args=("noop", None),
        max_queued=args.max_queued,
    ).start()
    try:
        PromiseSet(service.queue_requests(f"warm{i}" for i in range(1000))).wait_for_all()
        idle_rss = tree_rss(os.getpid())
        counter = Counter(args.n)
        samples: list[Sample] = []
        stop = threading.Event()
        started = time.perf_counter()
        sampler = threading.Thread(
            target=sample_until,
            args=(service, counter, started, stop, samples),
            name="rss-sampler",
            daemon=True,
        )
        sampler.start()
        held = feed(service, args.n, counter, args.mode)
        counter.finished.wait()
        seconds = time.perf_counter() - started
        stop.set()
        sampler.join()
    finally:
        service.stop()
        ray.shutdown()
    how = {
        "stream": "one queue_requests call, keep_promises=False",
        "one-call": "one queue_requests call",
        "slices": f"slices of {SLICE:,}",
    }[args.mode]
    print(
        f"{args.n:,} no-op requests from a generator, {how}, max_queued={args.max_queued:,}, "
        "2 workers, results taken in completed_callback"
    )
    report(args.n, samples, seconds, held, idle_rss)


if __name__ == "__main__":
    main()
