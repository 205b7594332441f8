"""Start-up: where a program's time goes before its first result, phase by phase.

Usage:
    python -m benchmarks.startup                  # 2 and 10 workers, 5 rounds
    python -m benchmarks.startup --workers 2 --rounds 3

Each round is a fresh Python process doing what a ported parallel-workers script does: start
Ray, start a ``ProcessorService``, queue one request and wait for its result, stop. Phases:

    ray.init()       Ray's own start (``address="local"``: never someone else's cluster)
    coordinator up   start() called -> the coordinator actor built (its process taken or
                     started by Ray, raypw imported there, the processor class unpickled)
    workers ready    -> every worker actor's processor built (worker processes, their
                     imports, the processor's ``__init__``) and the client connected
    start()          the two above together, as the program sees it
    first result     queue_request() -> get_result() of the first request

Coordinator up is read from the coordinator's own clock (a subclass notes when it was built);
every process runs on this machine, so the wall clocks agree. Beside the rounds, in fresh
processes too: ``python -c "import raypw"`` (and ``python -c pass`` for the interpreter's own
part), and what a worker process pays for raypw: ``import raypw.worker`` after ``import ray``.

Prints the median over rounds of each, in seconds, with the range.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MARK = "startup-json:"

IMPORTS = {
    "python -c pass": "pass",
    'python -c "import raypw"': "import raypw",
}
WORKER_IMPORT = (
    "import time, ray; t = time.perf_counter(); import raypw.worker; print(time.perf_counter() - t)"
)


def _one(workers: int) -> dict[str, float]:
    """One round, in this (fresh) process: every phase's seconds."""
    import ray

    from benchmarks.workloads import BenchProcessor
    from raypw import ProcessorService, coordinator

    class TimedCoordinator(coordinator.Coordinator):
        """The coordinator, noting on its own clock when it was built."""

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.built_at = time.time()

        async def built(self) -> float:
            return self.built_at

    started = time.perf_counter()
    ray.init(address="local", logging_level=logging.WARNING)
    inited = time.perf_counter()
    coordinator.Coordinator = TimedCoordinator  # type: ignore[misc]  # start() looks it up
    service = ProcessorService(
        BenchProcessor, parallel_workers=workers, processor_class_init_args=("noop", None)
    )
    try:
        asked = time.time()
        before = time.perf_counter()
        service.start()
        up = time.perf_counter()
        result = service.queue_request("first").get_result(timeout=60)
        first = time.perf_counter()
        assert result == "first processed.", result
        built = ray.get(service._coordinator.built.remote())
    finally:
        service.stop()
        ray.shutdown()
    return {
        "ray.init()": inited - started,
        "coordinator up": built - asked,
        "workers ready": (up - before) - (built - asked),
        "start()": up - before,
        "first result": first - up,
    }


def _child(workers: int) -> dict[str, float]:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    command = [sys.executable, "-m", "benchmarks.startup", "--child", str(workers)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"round failed:\n{done.stderr[-2000:]}")
    measured: dict[str, float] = json.loads(lines[-1][len(MARK) :])
    return measured


def _wall(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return time.perf_counter() - started


def _worker_import() -> float:
    done = subprocess.run(
        [sys.executable, "-c", WORKER_IMPORT], cwd=ROOT, check=True, capture_output=True, text=True
    )
    return float(done.stdout)


def _line(name: str, values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"  {name:<32} {statistics.median(values):>7.3f}   [{low:.3f}-{high:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="2,10", help="pool sizes, comma separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        print(MARK + json.dumps(_one(args.child)), flush=True)
        return
    import raypw

    print(f"raypw from {Path(raypw.__file__).parent}, median of {args.rounds} [min-max], seconds")
    print("imports (fresh processes)")
    for name, code in IMPORTS.items():
        print(_line(name, [_wall(code) for _ in range(args.rounds)]))
    print(_line("import raypw.worker after ray", [_worker_import() for _ in range(args.rounds)]))
    for workers in (int(w) for w in args.workers.split(",")):
        rounds = [_child(workers) for _ in range(args.rounds)]
        print(f"{workers} workers (a fresh process and Ray each round)")
        for name in rounds[0]:
            print(_line(name, [r[name] for r in rounds]))


if __name__ == "__main__":
    main()
