"""W2's dispatch throughput with per-request controls in use, against without, in one run.

Usage:
    python -m benchmarks.controls                 # 100,000 no-op requests, 5 rounds
    python -m benchmarks.controls --n 20000 --rounds 3

One service of 2 workers; each round runs every variant once, in a rotated order, so the
machine's drift falls on all of them alike. Each request is queued with ``queue_request`` and
taken with ``PromiseSet.select()``, as W2 in ``benchmarks.run`` does; with ``--bulk``, with
``queue_requests`` in calls of 1,000 (the call's index picks the priority):

    plain        no keywords
    priorities   priority=i % 4 (four levels, interleaved: every level switch and take-back)
    deadlines    timeout=3600 (a deadline per request, none reached)
    both         priority=i % 4 and timeout=3600

Prints requests/s per variant (median over rounds) and its ratio to ``plain``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

VARIANTS: dict[str, Any] = {
    "plain": lambda i: {},
    "priorities": lambda i: {"priority": i % 4},
    "deadlines": lambda i: {"timeout": 3600.0},
    "both": lambda i: {"priority": i % 4, "timeout": 3600.0},
}


BULK = 1000


def _run(service: Any, n: int, keywords: Any, tag: str, bulk: bool) -> float:
    from raypw import PromiseSet

    started = time.perf_counter()
    if bulk:
        promises = []
        for k in range(0, n, BULK):
            chunk = [f"{tag}{i}" for i in range(k, min(n, k + BULK))]
            promises.extend(service.queue_requests(chunk, **keywords(k // BULK)))
    else:
        promises = [service.queue_request(f"{tag}{i}", **keywords(i)) for i in range(n)]
    count = sum(1 for _ in PromiseSet(promises).select())
    elapsed = time.perf_counter() - started
    assert count == n
    assert all(p.get_result() == f"{tag}{i} processed." for i, p in enumerate(promises))
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bulk", action="store_true", help="queue_requests, 1,000 a call")
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    from benchmarks import workloads
    from raypw import ProcessorService

    ray.init(address="local", include_dashboard=False, num_cpus=2)
    service = ProcessorService(
        workloads.BenchProcessor, parallel_workers=2, processor_class_init_args=("noop", None)
    ).start()
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    try:
        _run(service, 1000, VARIANTS["plain"], "warm", args.bulk)
        for round_ in range(args.rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                tag = f"{name}{round_}-"
                rates[name].append(_run(service, args.n, VARIANTS[name], tag, args.bulk))
    finally:
        service.stop()
        ray.shutdown()
    plain = statistics.median(rates["plain"])
    how = "queue_requests, 1,000 a call" if args.bulk else "queue_request each"
    print(f"{args.n:,} no-op requests ({how}), 2 workers, median of {args.rounds} rounds")
    print(f"{'variant':<12} {'requests/s':>11} {'vs plain':>9}   all rounds")
    for name, values in rates.items():
        median = statistics.median(values)
        rounds = ", ".join(f"{v:,.0f}" for v in values)
        print(f"{name:<12} {median:>11,.0f} {median / plain:>9.2f}   {rounds}")


if __name__ == "__main__":
    main()
