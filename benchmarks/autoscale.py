"""Autoscale: work arriving in bursts, an autoscaled pool against a fixed pool of its maximum.

Usage:
    python -m benchmarks.autoscale                  # 4 bursts of 500 x sleep(20 ms), 1-8 workers
    python -m benchmarks.autoscale --bursts 2 --burst-size 200 --gap 8

The same schedule runs twice, on one local Ray: on ``parallel_workers=(min, max)`` through
``AutoscaleConfig`` (short ``idle_seconds``, so the pool shrinks between bursts within the
run), then on a fixed pool of ``max`` workers. A burst is one ``queue_requests`` call; burst k
is queued ``k x gap`` seconds after the first, whatever the pool is doing. Each pool is started
and warmed with a few requests before the first burst (so its usual time per request is
known, as in a service that has been running); its start-up is not counted.

A thread polls ``stats()`` every 0.2 s (``workers``, ``workers_alive``, ``queued``), and
``completed_callback`` notes when each result came in. Per pool: makespan (first burst queued
to last result), each burst's time from queued to its last result, and worker-seconds (the
integral of ``workers`` over the makespan). Writes ``benchmarks/autoscale.png``: workers over
time for both pools, with the requests waiting and the burst arrivals.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PNG = Path(__file__).resolve().parent / "autoscale.png"
POLL_SECONDS = 0.2
SLEEP_SECONDS = 0.02  # each request's work


@dataclass
class Run:
    """What one pool did with the schedule; times in seconds since the first burst."""

    name: str
    arrivals: list[float] = field(default_factory=list)  # when each burst was queued
    finished: list[list[float]] = field(default_factory=list)  # per burst, each result's time
    # Each poll of stats(): (time, workers, workers_alive, queued).
    polls: list[tuple[float, int, int, int]] = field(default_factory=list)

    @property
    def makespan(self) -> float:
        return max(max(times) for times in self.finished)

    def burst_seconds(self) -> list[float]:
        """Each burst's time from queued to its last result."""
        return [max(times) - at for at, times in zip(self.arrivals, self.finished, strict=True)]

    def grow_seconds(self) -> list[float | None]:
        """Per burst, the time from queued to the first poll with more workers than at its
        arrival (None: the pool did not grow)."""
        found: list[float | None] = []
        for at in self.arrivals:
            before = [p[1] for p in self.polls if p[0] <= at]
            start = before[-1] if before else self.polls[0][1]
            later = (p[0] - at for p in self.polls if p[0] > at and p[1] > start)
            found.append(next(later, None))
        return found

    def worker_seconds(self) -> float:
        """The integral of ``workers`` from the first burst to the last result (a step
        function: each poll's value holds until the next)."""
        end = self.makespan
        total = 0.0
        for (t, workers, _, _), (t_next, *_) in zip(self.polls, self.polls[1:], strict=False):
            low, high = max(t, 0.0), min(t_next, end)
            if high > low:
                total += workers * (high - low)
        return total


def _poll(service: Any, started: float, stop: threading.Event, run: Run) -> None:
    while True:
        stats = service.stats()
        run.polls.append(
            (time.perf_counter() - started, stats.workers, stats.workers_alive, stats.queued)
        )
        if stop.wait(POLL_SECONDS):
            return


def run_schedule(name: str, service: Any, bursts: int, size: int, gap: float) -> Run:
    """Queues ``bursts`` bursts of ``size`` requests, ``gap`` seconds apart, on a started
    ``service``; returns when every result is in."""
    from raypw import PromiseSet

    PromiseSet(service.queue_requests([f"warm{i}" for i in range(4)])).wait_for_all()
    run = Run(name)
    lock = threading.Lock()
    all_in = threading.Event()
    left = [bursts * size]
    started = time.perf_counter()

    def completed(burst: int) -> Any:
        def note(promise: Any) -> None:
            promise.get_result()
            with lock:
                run.finished[burst].append(time.perf_counter() - started)
                left[0] -= 1
                if not left[0]:
                    all_in.set()

        return note

    stop = threading.Event()
    poller = threading.Thread(
        target=_poll, args=(service, started, stop, run), name="stats-poller", daemon=True
    )
    poller.start()
    for burst in range(bursts):
        time.sleep(max(0.0, started + burst * gap - time.perf_counter()))
        run.finished.append([])
        run.arrivals.append(time.perf_counter() - started)
        requests = [f"{name}-{burst}-{i}" for i in range(size)]
        service.queue_requests(requests, completed(burst))
    all_in.wait()
    time.sleep(POLL_SECONDS * 2)  # one more poll after the last result
    stop.set()
    poller.join()
    return run


def plot(runs: list[Run], title: str, path: Path = PNG) -> None:
    """Writes workers over time (top) and requests waiting (bottom) for each run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6), height_ratios=(2, 1))
    for run, color in zip(runs, ("tab:blue", "tab:orange"), strict=False):
        times = [p[0] for p in run.polls]
        top.step(times, [p[1] for p in run.polls], where="post", color=color, label=run.name)
        bottom.step(times, [p[3] for p in run.polls], where="post", color=color, label=run.name)
    for at in runs[0].arrivals:
        for axes in (top, bottom):
            axes.axvline(at, color="grey", linestyle=":", linewidth=1)
    top.set_ylabel("workers")
    top.set_title(title)
    top.legend(loc="upper right")
    top.set_ylim(bottom=0)
    bottom.set_ylabel("requests queued")
    bottom.set_xlabel("seconds since the first burst (dotted: a burst arrives)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bursts", type=int, default=4)
    parser.add_argument("--burst-size", type=int, default=500)
    parser.add_argument("--gap", type=float, default=12.0, help="seconds between bursts")
    parser.add_argument("--min", type=int, default=1)
    parser.add_argument("--max", type=int, default=8)
    parser.add_argument("--idle-seconds", type=float, default=3.0)
    parser.add_argument("--target-wait-seconds", type=float, default=1.0)
    parser.add_argument("--check-seconds", type=float, default=0.5)
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    from benchmarks.workloads import BenchProcessor
    from raypw import AutoscaleConfig, ProcessorService

    autoscale = AutoscaleConfig(
        min_workers=args.min,
        max_workers=args.max,
        target_wait_seconds=args.target_wait_seconds,
        idle_seconds=args.idle_seconds,
        check_seconds=args.check_seconds,
    )
    pools = {
        f"autoscaled {args.min}-{args.max}": {"autoscale": autoscale},
        f"fixed {args.max}": {"parallel_workers": args.max},
    }
    ray.init(address="local", include_dashboard=False, num_cpus=2)
    runs = []
    try:
        for name, sizing in pools.items():
            service = ProcessorService(
                BenchProcessor, processor_class_init_args=("sleep", SLEEP_SECONDS), **sizing
            ).start()
            try:
                runs.append(run_schedule(name, service, args.bursts, args.burst_size, args.gap))
            finally:
                service.stop()
    finally:
        ray.shutdown()
    work = args.bursts * args.burst_size
    print(
        f"{args.bursts} bursts of {args.burst_size} x sleep({SLEEP_SECONDS * 1000:.0f} ms), "
        f"{args.gap:g} s apart; autoscale: target_wait {args.target_wait_seconds:g} s, "
        f"idle {args.idle_seconds:g} s, check {args.check_seconds:g} s"
    )
    print(f"work: {work * SLEEP_SECONDS:.0f} worker-seconds of sleep")
    bursts = "  ".join(f"{'burst ' + str(k + 1) + ' s':>9}" for k in range(args.bursts))
    print(f"{'pool':<16} {'makespan s':>10} {'worker-s':>9} {'max workers':>11}  {bursts}")
    for run in runs:
        seconds = "  ".join(f"{s:>9.2f}" for s in run.burst_seconds())
        most = max(p[1] for p in run.polls)
        print(
            f"{run.name:<16} {run.makespan:>10.2f} {run.worker_seconds():>9.1f} {most:>11}  "
            f"{seconds}"
        )
    grows = "  ".join("-".rjust(9) if g is None else f"{g:>9.2f}" for g in runs[0].grow_seconds())
    print(f"{'grew after s':<51}{grows}   ({runs[0].name}: burst queued -> more workers)")
    plot(
        runs,
        f"{work:,} x {SLEEP_SECONDS * 1000:.0f} ms in {args.bursts} bursts: "
        f"autoscaled {args.min}-{args.max} against fixed {args.max}",
    )
    print(f"wrote {PNG}")


if __name__ == "__main__":
    main()
