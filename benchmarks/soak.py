"""Soak: a steady load with every kind of fault mixed in; nothing may be lost.

Usage:
    python -m benchmarks.soak --minutes 10

Faults injected while requests flow: workers killed with SIGKILL, poison requests that kill
their worker every time, the coordinator killed with ``ray.kill``, unpicklable and unhashable
requests, processor exceptions and aborts. At the end every promise must have ended, each
completed one with its right result. Prints the counts and the peak memory of the process
tree (this driver, Ray's daemons and the actors).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import threading
import time
from collections import Counter

# Ray stays on the loopback address (shared/DESIGN.md section 5): set before Ray is imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402

from benchmarks.treemem import tree_rss  # noqa: E402
from raypw import (  # noqa: E402
    Processor,
    ProcessorService,
    PromiseAbortedError,
    PromiseSet,
    WorkerDiedError,
)


class SoakProcessor(Processor):
    def process(self, request):
        kind, _, value = request.partition(":")
        if kind == "poison":
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "error":
            raise ValueError(f"bad request {value}")
        if kind == "slow":
            time.sleep(0.05)
        return f"{request}@{os.getpid()}"


def main() -> None:
    parser = argparse.ArgumentParser(description="raypw soak test")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=2000, help="requests queued per second")
    args = parser.parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    service = ProcessorService(SoakProcessor, parallel_workers=2, max_retries=2).start()
    rng = random.Random(2026)
    promises = []
    faults: Counter[str] = Counter()
    aborted_true = 0
    peak = 0
    peak_lock = threading.Lock()
    stop_sampling = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop_sampling.wait(1.0):
            with peak_lock:
                peak = max(peak, tree_rss(os.getpid()))

    threading.Thread(target=sample, daemon=True).start()
    started = time.monotonic()
    deadline = started + args.minutes * 60
    tick = 0.1
    next_worker_kill = started + 20
    next_coordinator_kill = started + 75
    serial = 0
    while time.monotonic() < deadline:
        batch = []
        for _ in range(int(args.rate * tick)):
            serial += 1
            roll = rng.random()
            if roll < 0.000025:  # about one every 20 s: each costs three worker restarts
                batch.append(f"poison:{serial}")
            elif roll < 0.01:
                batch.append(f"error:{serial}")
            elif roll < 0.03:
                batch.append(f"slow:{serial}")
            elif roll < 0.3:
                batch.append(f"repeat:{rng.randrange(500)}")  # equal requests: dedup
            else:
                batch.append(f"plain:{serial}")
        faults["poison requests"] += sum(r.startswith("poison") for r in batch)
        faults["process() errors"] += sum(r.startswith("error") for r in batch)
        new = service.queue_requests(batch)
        promises.extend(new)
        for promise in rng.sample(new, k=len(new) // 20):
            aborted_true += promise.abort()
        if rng.random() < 0.02:
            for bad in (threading.Lock(), {"unhashable": 1}):
                try:
                    service.queue_request(bad)
                except TypeError:
                    faults["bad input rejected"] += 1
        now = time.monotonic()
        if now >= next_worker_kill:
            pids = [pid for pid in service.worker_pids if pid]
            if pids:
                try:
                    os.kill(rng.choice(pids), signal.SIGKILL)
                    faults["workers killed"] += 1
                except ProcessLookupError:
                    pass
            next_worker_kill = now + rng.uniform(10, 30)
        if now >= next_coordinator_kill:
            ray.kill(service._coordinator)
            faults["coordinator killed"] += 1
            next_coordinator_kill = now + rng.uniform(60, 120)
        time.sleep(tick)

    try:
        PromiseSet(promises).wait_for_all(timeout=300)
    except TimeoutError as exc:
        print("final wait:", exc)
    stop_sampling.set()
    outcome: Counter[str] = Counter()
    wrong = 0
    for promise in set(promises):
        if not promise.done():
            outcome["lost"] += 1
            continue
        try:
            result = promise.get_result()
        except PromiseAbortedError:
            outcome["aborted"] += 1
        except WorkerDiedError:
            outcome["failed: worker died"] += 1
        except ValueError:
            outcome["failed: process() error"] += 1
        else:
            outcome["completed"] += 1
            wrong += not result.startswith(promise.request + "@")
    service.stop()
    print(f"minutes                  {args.minutes:g}")
    print(f"requests queued          {len(promises):,} ({len(set(promises)):,} distinct promises)")
    for name in ("completed", "failed: process() error", "failed: worker died", "aborted"):
        print(f"{name:<25}{outcome[name]:,}")
    print(f"abort() -> True          {aborted_true:,}")
    print("faults injected          " + ", ".join(f"{k} {v:,}" for k, v in sorted(faults.items())))
    print(f"wrong results            {wrong:,}")
    print(f"lost                     {outcome['lost']:,}")
    print(f"peak memory              {peak / 2**30:.2f} GiB (process tree)")


if __name__ == "__main__":
    main()
