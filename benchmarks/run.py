"""raypw against its peers: one command, one table, one JSON file.

Usage:
    python -m benchmarks.run                  # everything, median of 3 (about 15 minutes)
    python -m benchmarks.run --repeats 1 --only W2,latency --systems raypw,mpire
    python -m benchmarks.run --repeats 1 --only W5 --n 200  # smoke: fewer requests

--n replaces the request count of every workload but W1 and W3 (for smoke runs; the figures
are then not comparable with full runs).

Every measurement runs in a fresh child process (its own Ray where the system uses Ray), so
systems do not share warm state and the W3 memory figure is the peak RSS of that child's whole
process tree: the driver, Ray's daemons and the workers. Timings start at the first request
queued and stop at the last result taken, after the pool is up and warmed.

Workloads (2 workers each, but W6):
    W1       4 requests of sleep(5): seconds from queueing to each result
    W2       100,000 no-op requests (20,000 for the per-call systems): requests/s
    W3       1,000,000 and 100,000 no-op requests: wall time and peak RSS of the process tree
    W4       100,000 requests over 1,000 distinct values, shuffled, 1 ms each (raypw: dedup)
    W5       2,000 requests of 5 ms pure-Python work: efficiency = ideal / measured, the ideal
             from the item's cost measured with the pool idle right before and after each run
    W6       32 workers (more than cores, like I/O-bound work), 20,000 requests of sleep(10 ms):
             efficiency = ideal / measured, ideal = 20,000 x 10 ms / 32 = 6.25 s. Ray actors,
             raypw's and the peers' alike, keep Ray's default resources (one CPU to place an
             actor, none held while it runs), so all 32 fit on 2 CPUs
    W7       2,000 requests of 1 ms, but every 100th sleeps 0.5 s (ideal makespan 5.99 s):
             delivery lag = time the caller got a result - time process() returned in the
             worker (both wall clock). Per system: lag p50 and p99, results more than 100 ms
             late, seconds from queueing to the first result, makespan; ratio column: makespan
             / ProcessPoolExecutor's. raypw is timed twice in each run: in completed_callback
             and as PromiseSet.select() yields. mpire uses its own default chunks (16 items
             here). Ray actor calls go round robin, so with 2 workers every slow request lands
             on the same actor
    latency  1,000 sequential single requests on an idle pool: p50 and p99 round trip
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORKERS = 2
# Systems that make one Ray or IPC call per request: W2 uses fewer requests for them (the
# rate is what is compared) and W3 skips them (1M requests would take minutes each).
PER_CALL = {"ray ActorPool", "ray actor calls", "ProcessPoolExecutor"}
W3_SYSTEMS = {"raypw", "mpire", "multiprocessing.Pool chunksize=tuned", "Ray Data map_batches"}
W6_WORKERS = 32
W6_SLEEP = 0.01
W7_SYSTEMS = {
    "raypw",
    "ray actor calls",
    "mpire",
    "multiprocessing.Pool chunksize=1",
    "ProcessPoolExecutor",
}
W7_LATE = 0.1  # seconds: a result later than this counts as late


# -- child side: one system, one workload ---------------------------------------------------


def _system(name: str) -> Any:
    from benchmarks.systems import all_systems

    for system in all_systems():
        if system.name == name:
            return system
    raise SystemExit(f"unknown system {name!r}")


def _timed_stream(system: Any, requests: list[Any]) -> float:
    started = time.perf_counter()
    count = sum(1 for _ in system.stream(requests))
    elapsed = time.perf_counter() - started
    assert count == len(requests), (count, len(requests))
    return elapsed


def child(job: dict[str, Any]) -> dict[str, Any]:
    from benchmarks import workloads

    system = _system(job["system"])
    workload, n, repeats = job["workload"], job["n"], job["repeats"]
    workers = job.get("workers", WORKERS)
    out: dict[str, Any] = {}
    if workload == "W1":
        system.start("sleep", 5.0, workers)
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            runs.append(
                [
                    time.perf_counter() - started
                    for _ in system.stream(["hola", "hola2", "hola3", "hola4"])
                ]
            )
        out["result_times"] = runs
    elif workload in ("W2", "W3"):
        system.start("noop", None, workers)
        _timed_stream(system, [f"warm{i}" for i in range(1000)])
        requests = [f"hola{i}" for i in range(n)]
        if workload == "W3" and job["system"] == "raypw":
            out.update(_raypw_w3(system, requests))
        else:
            out["seconds"] = [_timed_stream(system, requests) for _ in range(repeats)]
    elif workload == "W4":
        log = tempfile.NamedTemporaryFile(delete=False)  # noqa: SIM115
        system.start("dedup", log.name, workers)
        values = [f"value{i % 1000}" for i in range(n)]
        seconds, calls = [], []
        for _ in range(repeats):
            random.shuffle(values)
            before = os.path.getsize(log.name)
            if job["system"] == "raypw":
                seconds.append(_raypw_bulk(system, values))
            else:
                seconds.append(_timed_stream(system, values))
            calls.append(os.path.getsize(log.name) - before)
        out.update(seconds=seconds, process_calls=calls)
        os.unlink(log.name)
    elif workload == "W5":
        iterations = workloads.calibrate_busy(0.005)
        system.start("busy", iterations, workers)
        _timed_stream(system, list(range(workers * 4)))
        seconds, items = [], []
        for _ in range(repeats):
            # The item's cost with the pool idle, right before and after each run: this
            # shared machine's speed drifts by tens of percent over minutes, so one figure
            # taken minutes away from a run says little about that run.
            before = _item_seconds(iterations)
            seconds.append(_timed_stream(system, list(range(n))))
            items.append((before + _item_seconds(iterations)) / 2)
        system.stop()
        efficiency = [n * item / workers / s for item, s in zip(items, seconds, strict=True)]
        out.update(seconds=seconds, item_seconds=items, efficiency=efficiency)
        return out
    elif workload == "W6":
        system.start("sleep", W6_SLEEP, workers)
        _timed_stream(system, [f"warm{i}" for i in range(workers * 2)])
        seconds = [_timed_stream(system, list(range(n))) for _ in range(repeats)]
        ideal = n * W6_SLEEP / workers
        out.update(seconds=seconds, ideal_seconds=ideal, efficiency=[ideal / s for s in seconds])
    elif workload == "W7":
        system.start("mixed", None, workers)
        # Cheap (multiples of 100) and distinct from the measured requests range(n).
        _timed_stream(system, [workloads.MIXED_EVERY * (n + i) for i in range(workers * 4)])
        if job["system"] == "mpire":
            system.default_chunks = True
        w7 = _raypw_w7 if job["system"] == "raypw" else _w7
        out.update(
            runs=[w7(system, list(range(n))) for _ in range(repeats)],
            ideal_seconds=workloads.mixed_seconds(n) / workers,
        )
    elif workload == "latency":
        system.start("noop", None, workers)
        for i in range(50):
            system.one(f"warm{i}")
        samples = []
        for i in range(n):
            started = time.perf_counter()
            system.one(f"one{i}")
            samples.append(time.perf_counter() - started)
        samples.sort()
        out.update(p50=samples[len(samples) // 2], p99=samples[int(len(samples) * 0.99)])
    system.stop()
    return out


def _w7(system: Any, requests: list[int]) -> dict[str, dict[str, float]]:
    """One W7 run: a result is available when the system's stream yields it."""
    started = time.time()
    arrivals = [(time.time(), finished) for _, finished in system.stream(requests)]
    assert len(arrivals) == len(requests), (len(arrivals), len(requests))
    name = "mpire default chunks" if system.name == "mpire" else system.name
    return {name: _lags(started, arrivals)}


def _raypw_w7(system: Any, requests: list[int]) -> dict[str, dict[str, float]]:
    """One W7 run of raypw, timed both in completed_callback and as select() yields."""
    from raypw import Promise, PromiseSet

    called: list[tuple[float, Promise[Any]]] = []

    def completed(promise: Promise[Any]) -> None:
        called.append((time.time(), promise))

    queue = system.service.queue_request
    started = time.time()
    promises = [queue(request, completed) for request in requests]
    selected = [(time.time(), promise) for promise in PromiseSet(promises).select()]
    deadline = time.monotonic() + 60
    while len(called) < len(requests) and time.monotonic() < deadline:
        time.sleep(0.01)  # the callback thread may still be behind select()
    assert len(called) == len(selected) == len(requests), (len(called), len(selected))
    return {
        "raypw completed_callback": _lags(started, [(t, p.get_result()[1]) for t, p in called]),
        "raypw select()": _lags(started, [(t, p.get_result()[1]) for t, p in selected]),
    }


def _lags(started: float, arrivals: list[tuple[float, float]]) -> dict[str, float]:
    """W7 figures from (time the caller got a result, time process() returned) pairs."""
    lags = sorted(got - finished for got, finished in arrivals)
    return {
        "lag_p50": lags[len(lags) // 2],
        "lag_p99": lags[int(len(lags) * 0.99)],
        "late": sum(lag > W7_LATE for lag in lags),
        "first": min(got for got, _ in arrivals) - started,
        "makespan": max(got for got, _ in arrivals) - started,
    }


def _item_seconds(iterations: int) -> float:
    from benchmarks import workloads

    samples = []
    for _ in range(40):
        started = time.perf_counter()
        workloads.busy(iterations)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _raypw_w3(system: Any, requests: list[str]) -> dict[str, Any]:
    """W3 for raypw, timing every queue_request call on the way."""
    from raypw import PromiseSet

    service = system.service
    costs = array("q", bytes(8 * len(requests)))
    clock = time.perf_counter_ns
    queue = service.queue_request
    promises = []
    append = promises.append
    started = time.perf_counter()
    for index, request in enumerate(requests):
        before = clock()
        append(queue(request))
        costs[index] = clock() - before
    queued = time.perf_counter() - started
    count = sum(1 for p in PromiseSet(promises).select() if p.get_result())
    elapsed = time.perf_counter() - started
    assert count == len(requests)
    ordered = sorted(costs)
    return {
        "seconds": [elapsed],
        "queue_seconds": queued,
        "queue_request_us_median": ordered[len(ordered) // 2] / 1000,
        "queue_request_us_p99": ordered[int(len(ordered) * 0.99)] / 1000,
    }


def _raypw_bulk(system: Any, requests: list[str]) -> float:
    from raypw import PromiseSet

    started = time.perf_counter()
    promises = system.service.queue_requests(requests)
    for promise in PromiseSet(promises).select():
        promise.get_result()
    return time.perf_counter() - started


# -- parent side: schedule children, print the table ----------------------------------------


def _jobs(
    workloads: list[str], systems: list[str], repeats: int, n: int | None = None
) -> list[dict[str, Any]]:
    """One job per workload and system; ``n`` replaces the request counts but W1's and W3's."""
    jobs = []
    for workload in workloads:
        for name in systems:
            job = {"workload": workload, "system": name, "repeats": repeats, "n": 0}
            if workload == "W2":
                job["n"] = 20_000 if name in PER_CALL else 100_000
            elif workload == "W3":
                if name not in W3_SYSTEMS:
                    continue
                sizes = (100_000, 1_000_000) if name == "raypw" else (1_000_000,)
                for size in sizes:
                    for _ in range(repeats):  # one child each: peak memory per run
                        jobs.append({**job, "n": size, "repeats": 1})
                continue
            elif workload == "W4":
                if name != "raypw":
                    continue  # no peer deduplicates: each would make 100,000 calls
                job["n"] = 100_000
            elif workload == "W5":
                job["n"] = 2_000
            elif workload == "W6":
                if name == "Ray Data map_batches":
                    continue  # no per-request results to stream
                job.update(n=20_000, workers=W6_WORKERS)
            elif workload == "W7":
                if name not in W7_SYSTEMS:
                    continue
                job["n"] = 2_000
            elif workload == "latency":
                if name == "Ray Data map_batches":
                    continue  # a dataset per request is not a request/response system
                job["n"] = 1_000
            if n is not None and workload not in ("W1", "W3"):
                job["n"] = n
            jobs.append(job)
    return jobs


def _run_child(job: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.treemem import tree_rss

    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONPATH": str(ROOT)}
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        command = [sys.executable, "-m", "benchmarks.run", "--child", json.dumps(job), out.name]
        started = time.monotonic()
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        peak = 0
        # Walking /proc costs CPU the measured systems would miss: only W3 samples memory.
        sample = job["workload"] == "W3"
        while process.poll() is None:
            if sample:
                peak = max(peak, tree_rss(process.pid))
            time.sleep(0.1)
        stderr = process.stderr.read() if process.stderr else ""
        if process.returncode != 0:
            return {"error": stderr.strip().splitlines()[-1] if stderr.strip() else "failed"}
        result: dict[str, Any] = json.loads(Path(out.name).read_text())
    result["peak_rss_bytes"] = peak
    result["child_seconds"] = time.monotonic() - started
    return result


def _median_range(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def _rows(results: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """Table rows: workload, system, value (median [min-max]), ratio to raypw."""
    rows: list[tuple[str, str, str, str]] = []
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for entry in results:
        by.setdefault((entry["job"]["workload"], entry["job"]["system"]), []).append(entry)

    def fmt(values: list[float], unit: str, scale: float = 1.0, digits: int = 2) -> str:
        med, lo, hi = _median_range([v * scale for v in values])
        return f"{med:,.{digits}f} {unit} [{lo:,.{digits}f}-{hi:,.{digits}f}]"

    raypw: dict[str, float] = {}
    ppe_w7 = [
        run["ProcessPoolExecutor"]["makespan"]
        for e in by.get(("W7", "ProcessPoolExecutor"), [])
        if "error" not in e["out"]
        for run in e["out"]["runs"]
    ]
    for (workload, system), entries in by.items():
        if any("error" in e["out"] for e in entries):
            rows.append((workload, system, "error: " + entries[0]["out"].get("error", ""), ""))
            continue
        outs = [e["out"] for e in entries]
        if workload == "W1":
            runs = outs[0]["result_times"]
            per_result = [statistics.median(run[i] for run in runs) for i in range(4)]
            text = ", ".join(f"{t:.2f}" for t in per_result) + " s"
            rows.append((workload, system, text, ""))
        elif workload == "W2":
            n = entries[0]["job"]["n"]
            rates = [n / s for s in outs[0]["seconds"]]
            med = statistics.median(rates)
            if system == "raypw":
                raypw["W2"] = med
            rows.append(
                (
                    workload,
                    system,
                    fmt(rates, "req/s", digits=0) + f" (n={n:,})",
                    _ratio(raypw.get("W2"), med),
                )
            )
        elif workload == "W3":
            for size in sorted({e["job"]["n"] for e in entries}):
                sized = [e for e in entries if e["job"]["n"] == size]
                secs = [e["out"]["seconds"][0] for e in sized]
                rss = [e["out"]["peak_rss_bytes"] / 2**30 for e in sized]
                extra = ""
                if "queue_request_us_median" in sized[0]["out"]:
                    us = [e["out"]["queue_request_us_median"] for e in sized]
                    extra = f"; queue_request median {statistics.median(us):.2f} us"
                key = f"W3-{size}"
                med = statistics.median(secs)
                if system == "raypw":
                    raypw[key] = med
                rows.append(
                    (
                        f"W3 {size:,}",
                        system,
                        fmt(secs, "s") + "; peak RSS " + fmt(rss, "GiB") + extra,
                        _ratio(med, raypw.get(key)) if system != "raypw" else "",
                    )
                )
        elif workload == "W4":
            rows.append(
                (
                    workload,
                    system,
                    fmt(outs[0]["seconds"], "s") + f"; process() calls {outs[0]['process_calls']}",
                    "",
                )
            )
        elif workload in ("W5", "W6"):
            eff = outs[0]["efficiency"]
            med = statistics.median(eff)
            if system == "raypw":
                raypw[workload] = med
            text = fmt(eff, "efficiency") + f" ({statistics.median(outs[0]['seconds']):.2f} s"
            if workload == "W6":
                job = entries[0]["job"]
                text += f"; ideal {outs[0]['ideal_seconds']:.2f} s, n={job['n']:,}"
            rows.append((workload, system, text + ")", _ratio(raypw.get(workload), med)))
        elif workload == "W7":
            for label in outs[0]["runs"][0]:
                runs = [run[label] for run in outs[0]["runs"]]
                makespans = [run["makespan"] for run in runs]
                med = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
                text = (
                    f"makespan {fmt(makespans, 's')} (ideal {outs[0]['ideal_seconds']:.2f} s);"
                    f" lag p50 {med['lag_p50'] * 1000:.1f} ms, p99 {med['lag_p99'] * 1000:.1f} ms,"
                    f" {med['late']:.0f} late > {W7_LATE * 1000:.0f} ms;"
                    f" first result {med['first']:.3f} s"
                )
                ratio = f"{med['makespan'] / statistics.median(ppe_w7):.2f}x PPE" if ppe_w7 else ""
                rows.append((workload, label, text, ratio))
        elif workload == "latency":
            out = outs[0]
            rows.append(
                (
                    workload,
                    system,
                    f"p50 {out['p50'] * 1000:.2f} ms, p99 {out['p99'] * 1000:.2f} ms",
                    "",
                )
            )
    return rows


def _ratio(raypw: float | None, other: float | None) -> str:
    """How many times raypw's figure is the other's (higher is better for raypw)."""
    if not raypw or not other:
        return ""
    return f"{raypw / other:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="W1,W2,W3,W4,W5,W6,W7,latency")
    parser.add_argument("--systems", default="")
    parser.add_argument("--n", type=int, default=None, help="requests per run (smoke runs)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.child:
        job, path = json.loads(args.child[0]), args.child[1]
        Path(path).write_text(json.dumps(child(job)))
        return

    from benchmarks.systems import all_systems

    names = [s.name for s in all_systems()]
    if args.systems:
        wanted = args.systems.split(",")
        names = [n for n in names if any(w.lower() in n.lower() for w in wanted)]
    jobs = _jobs(args.only.split(","), names, args.repeats, args.n)
    results = []
    for index, job in enumerate(jobs, 1):
        print(
            f"[{index}/{len(jobs)}] {job['workload']} {job['system']} n={job['n']:,}",
            file=sys.stderr,
            flush=True,
        )
        results.append({"job": job, "out": _run_child(job)})
    rows = _rows(results)
    widths = [
        max(len(r[i]) for r in rows + [("workload", "system", "median [min-max]", "raypw vs it")])
        for i in range(4)
    ]
    header = ("workload", "system", "median [min-max]", "raypw vs it")
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = args.json or RESULTS / f"run-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(
        json.dumps(
            {"machine": {"cpus": os.cpu_count()}, "results": results, "table": rows}, indent=1
        )
    )
    print(f"\nJSON: {path}")


if __name__ == "__main__":
    main()
