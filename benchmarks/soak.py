"""Soak: a steady load with every kind of fault mixed in; nothing may be lost.

Usage:
    python -m benchmarks.soak --minutes 10

Faults injected while requests flow: workers killed with SIGKILL, poison requests that kill
their worker every time, the coordinator killed with ``ray.kill``, unpicklable and unhashable
requests, processor exceptions and aborts; and the cases raypw must end cleanly:

1. a result that cannot be pickled (``TransferError``) and an exception that cannot be
   rebuilt from its args (``RemoteError``), among batch-mates that complete;
2. requests that pickle but cannot be rebuilt in the worker (``TransferError``);
3. ``queue_requests`` failing or interrupted half-way (an ``__eq__`` that raises, a Ctrl-C
   from the request iterator or from a ``__hash__``): it raises and queues none of the call;
4. requests that hang for seconds (one for 25 s): those queued right behind one must finish
   well before it, taken over by the other worker;
13. a second, small service started from a short-lived thread (a web framework's startup
    hook), then used and stopped.

At the end every promise must have ended, each completed one with its right result and each
fault with its expected error. Prints the counts per kind and the peak memory of the process
tree (this driver, Ray's daemons and the actors); exits non-zero if a check failed.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

# Ray stays on the loopback address (shared/DESIGN.md section 5): set before Ray is imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402

from benchmarks.treemem import tree_rss  # noqa: E402
from raypw import (  # noqa: E402
    Processor,
    ProcessorService,
    Promise,
    PromiseAbortedError,
    PromiseSet,
    RemoteError,
    TransferError,
    WorkerDiedError,
)

# Seconds a hang probe's request sleeps, and how many requests are queued right behind it.
SHORT_HANG = 4.0
LONG_HANG = 25.0
FOLLOWERS = 10


class TwoArgError(Exception):
    """Cannot be rebuilt from its args: pickle calls it with one, its __init__ takes two."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")


class SoakProcessor(Processor[str, Any]):
    """Echoes ``request@pid``; the request's prefix picks a fault. Notes in ``log_dir`` every
    request it was never meant to see (of a refused ``queue_requests`` call), in
    ``unexpected.log``, and when each hang began, in ``hangs.log``."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir

    def note(self, name: str, line: str) -> None:
        with open(os.path.join(self.log_dir, name), "a") as log:
            log.write(f"{line}\n")

    def process(self, request: str) -> Any:
        if not isinstance(request, str) or request.startswith("doomed"):
            self.note("unexpected.log", repr(request))
        kind, _, value = str(request).partition(":")
        if kind == "poison":
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "error":
            raise ValueError(f"bad request {value}")
        if kind == "slow":
            time.sleep(0.05)
        if kind == "hang":
            self.note("hangs.log", f"{request} {time.time()!r}")
            time.sleep(float(value.rpartition(":")[2]))
        if kind == "lock":
            return threading.Lock()  # the result cannot be pickled
        if kind == "oddexc":
            raise TwoArgError(value, "odd failure")
        return f"{request}@{os.getpid()}"


def _refuse(tag: str) -> NoReturn:
    raise RuntimeError(f"{tag} refuses to be rebuilt")


@dataclass(frozen=True)
class ReduceBomb:
    """Pickles, but unpickling it calls a function that raises."""

    tag: str

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse, (self.tag,))


@dataclass(frozen=True)
class StateBomb:
    """Pickles, but its __setstate__ raises when it is rebuilt."""

    tag: str

    def __setstate__(self, state: object) -> None:
        raise RuntimeError("StateBomb refuses its state")


class EqBomb:
    """Hashes like every other EqBomb but cannot be compared: dedup must refuse the second."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __hash__(self) -> int:
        return 7

    def __eq__(self, other: object) -> bool:
        raise ValueError("EqBomb cannot be compared")

    def __repr__(self) -> str:
        return f"EqBomb({self.tag!r})"


class HashBomb:
    """Ctrl-C in the middle of queue_requests: its second hash raises KeyboardInterrupt."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.hashed = 0

    def __hash__(self) -> int:
        self.hashed += 1
        if self.hashed >= 2:
            raise KeyboardInterrupt
        return hash(self.tag)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HashBomb) and other.tag == self.tag

    def __repr__(self) -> str:
        return f"HashBomb({self.tag!r})"


def _interrupted(requests: list[str]) -> Iterator[str]:
    """Yields the requests, then Ctrl-C, as if the user pressed it while they were queued."""
    yield from requests
    raise KeyboardInterrupt


# What each kind of request must end with: None for its result, else this error.
EXPECTED: dict[str, type[BaseException] | None] = {
    "error": ValueError,
    "poison": WorkerDiedError,
    "lock": TransferError,
    "oddexc": RemoteError,
    "ReduceBomb": TransferError,
    "StateBomb": TransferError,
}


def read_log(log_dir: str, name: str) -> list[str]:
    path = Path(log_dir, name)
    return path.read_text().splitlines() if path.exists() else []


def kind_of(request: Any) -> str:
    if isinstance(request, str):
        return request.partition(":")[0]
    return type(request).__name__


def _worker(promise: Promise[Any]) -> str:
    """The pid in a completed promise's result."""
    try:
        return str(promise.get_result(timeout=0)).rpartition("@")[2]
    except Exception:
        return "?"


def problem_with(promise: Promise[Any], aborted: bool) -> str | None:
    """What is wrong with how a finished promise ended, or None."""
    request = promise.request
    kind = kind_of(request)
    expected = EXPECTED.get(kind)
    try:
        result = promise.get_result(timeout=0)
    except PromiseAbortedError:
        return None if aborted else "aborted, though nobody aborted it"
    except Exception as exc:
        if aborted:
            return f"abort() said True, yet it failed with {type(exc).__name__}"
        if kind == "hang" and isinstance(exc, WorkerDiedError):
            # A 25 s hang outlives several of the soak's worker kills: when its worker died
            # with it more often than max_retries allows, this is the promised error.
            return None if exc.attempts > 2 else f"WorkerDiedError after {exc.attempts}"
        if expected is None or not isinstance(exc, expected):
            return f"failed with {type(exc).__name__}: {str(exc)[:200]}"
        if isinstance(exc, TransferError):
            what = "result" if kind == "lock" else "request"
            return None if exc.what == what else f"TransferError about the {exc.what!r}"
        if isinstance(exc, RemoteError):
            text = str(exc)
            named = "TwoArgError" in text and "odd failure" in text
            return None if named else f"RemoteError without the class and text: {text[:200]}"
        return None
    if aborted:
        return "abort() said True, yet it completed"
    if expected is not None:
        return f"completed ({result!r:.80}) instead of failing with {expected.__name__}"
    pid = str(result).removeprefix(f"{request}@")
    return None if isinstance(result, str) and pid.isdigit() else f"wrong result {result!r:.80}"


@dataclass
class HangProbe:
    """A hanging request and the ones queued right behind it (case 4)."""

    seconds: float
    queued_at: float
    hang: Promise[Any]
    followers: list[Promise[Any]]


@dataclass
class Soak:
    """The state of one soak run."""

    service: ProcessorService[Any, Any]
    log_dir: str
    rng: random.Random
    promises: list[Promise[Any]] = field(default_factory=list)
    aborted: set[int] = field(default_factory=set)  # ids of promises abort() ended
    faults: Counter[str] = field(default_factory=Counter)
    refusals: list[str] = field(default_factory=list)  # what went wrong in case 3
    probes: list[HangProbe] = field(default_factory=list)
    finished_at: dict[int, float] = field(default_factory=dict)  # promise id -> time.time()
    pid_changes: list[float] = field(default_factory=list)  # time.time() of each seen
    side_promises: list[Promise[Any]] = field(default_factory=list)  # case 13, one at a time
    side_problems: list[str] = field(default_factory=list)
    pids: tuple[int, ...] = ()
    serial: int = 0

    def tag(self) -> str:
        self.serial += 1
        return str(self.serial)

    def run(self, seconds: float, rate: int) -> None:
        """Queues ``rate`` requests a second for ``seconds``, with every fault among them."""
        rng, service = self.rng, self.service
        started = time.monotonic()
        deadline = started + seconds
        tick = 0.1
        next_worker_kill = started + 20
        next_coordinator_kill = started + 75
        next_refusal = started + 3
        next_side = started + 15
        next_long_hang = started + 40
        next_short_hang = started + 8
        hang_until = 0.0  # one hang at a time, so the other worker is free to take over
        side_runs: list[threading.Thread] = []
        while time.monotonic() < deadline:
            self.load(int(rate * tick))
            now = time.monotonic()
            if now >= next_refusal:
                self.refused_call()
                next_refusal = now + rng.uniform(1, 5)
            if now >= next_long_hang and now >= hang_until:
                self.hang_probe(LONG_HANG)
                hang_until = now + LONG_HANG + 5
                next_long_hang = now + rng.uniform(150, 210)
            elif now >= next_short_hang and now >= hang_until:
                self.hang_probe(SHORT_HANG)
                hang_until = now + SHORT_HANG + 5
                next_short_hang = now + rng.uniform(20, 40)
            if now >= next_side and not any(run.is_alive() for run in side_runs):
                side_run = threading.Thread(target=self.side_service, args=(self.tag(),))
                side_run.start()
                side_runs.append(side_run)
                self.faults["services started from a thread"] += 1
                next_side = now + rng.uniform(20, 40)
            if now >= next_worker_kill:
                pids = [pid for pid in service.worker_pids if pid]
                if pids:
                    try:
                        os.kill(rng.choice(pids), signal.SIGKILL)
                        self.faults["workers killed"] += 1
                    except ProcessLookupError:
                        pass
                next_worker_kill = now + rng.uniform(10, 30)
            if now >= next_coordinator_kill:
                ray.kill(service._coordinator)
                self.faults["coordinator killed"] += 1
                next_coordinator_kill = now + rng.uniform(60, 120)
            time.sleep(tick)
        for side_run in side_runs:
            side_run.join(timeout=120)

    # -- the steady load, with faults among it (cases 1 and 2 ride along) ----------------

    def load(self, count: int) -> None:
        rng = self.rng
        batch: list[Any] = []
        for _ in range(count):
            tag = self.tag()
            roll = rng.random()
            if roll < 0.000025:  # about one every 20 s: each costs three worker restarts
                batch.append(f"poison:{tag}")
            elif roll < 0.01:
                batch.append(f"error:{tag}")
            elif roll < 0.03:
                batch.append(f"slow:{tag}")
            elif roll < 0.3:
                batch.append(f"repeat:{rng.randrange(500)}")  # equal requests: dedup
            else:
                batch.append(f"plain:{tag}")
        if rng.random() < 0.1:  # about one a second of each
            for fault in (f"lock:{self.tag()}", f"oddexc:{self.tag()}"):
                batch.insert(rng.randrange(len(batch) + 1), fault)
            bomb = rng.choice((ReduceBomb, StateBomb))(self.tag())
            batch.insert(rng.randrange(len(batch) + 1), bomb)
        for request in batch:
            if kind_of(request) in EXPECTED:
                self.faults[kind_of(request)] += 1
        new = self.service.queue_requests(batch)
        self.promises.extend(new)
        for promise in rng.sample(new, k=len(new) // 20):
            if promise.abort():
                self.aborted.add(id(promise))
        if rng.random() < 0.02:
            for bad in (threading.Lock(), {"unhashable": 1}):
                try:
                    self.service.queue_request(bad)
                except TypeError:
                    self.faults["bad input rejected"] += 1

    # -- case 3: queue_requests fails or is interrupted half-way -------------------------

    def refused_call(self) -> None:
        """Queues a call that must raise and queue nothing: the processor logs any of its
        requests it sees, and this program's pending count must not grow."""
        doomed = [f"doomed:{self.tag()}" for _ in range(self.rng.randrange(1, 20))]
        cut = self.rng.randrange(len(doomed) + 1)
        how = self.rng.choice(("equal hash, __eq__ raises", "Ctrl-C in iterator", "Ctrl-C in hash"))
        requests: Iterable[Any]
        expected: type[BaseException]
        if how == "equal hash, __eq__ raises":
            bombs: list[Any] = [EqBomb(self.tag()), EqBomb(self.tag())]
            requests, expected = doomed[:cut] + bombs + doomed[cut:], TypeError
        elif how == "Ctrl-C in iterator":
            requests, expected = _interrupted(doomed), KeyboardInterrupt
        else:
            requests = [*doomed[:cut], HashBomb(self.tag()), *doomed[cut:]]
            expected = KeyboardInterrupt
        client = self.service._client  # the only way to see this program's pending count
        assert client is not None
        before = client.pending  # only this thread queues, so it can only shrink meanwhile
        try:
            self.service.queue_requests(requests)
        except expected:
            pass
        except BaseException as exc:
            self.refusals.append(f"{how}: raised {type(exc).__name__} ({exc})")
        else:
            self.refusals.append(f"{how}: queue_requests did not raise")
        after = client.pending
        if after > before:
            self.refusals.append(f"{how}: pending grew from {before} to {after}")
        self.faults[f"queue_requests refused ({how})"] += 1

    # -- case 4: a hanging request must not hold those queued behind it ------------------

    def hang_probe(self, seconds: float) -> None:
        tag = self.tag()
        requests = [f"hang:{tag}:{seconds:g}"] + [f"after:{tag}:{i}" for i in range(FOLLOWERS)]
        finished_at = self.finished_at

        def note(promise: Promise[Any]) -> None:
            finished_at[id(promise)] = time.time()

        queued_at = time.time()
        hang, *followers = self.service.queue_requests(requests, note)
        self.promises.extend([hang, *followers])
        self.probes.append(HangProbe(seconds, queued_at, hang, followers))
        self.faults["long hangs" if seconds >= LONG_HANG else "short hangs"] += 1

    def judge_probes(self) -> Counter[str]:
        """A probe is held when a follower finished less than half the hang before the hang
        did on the hang's own worker (it waited for the hang); inconclusive when a worker
        restarted while the hang ran (the followers may have waited for that instead). Late
        followers that all ran on other workers were taken over, as they must be, and were
        late only behind the soak's backlog."""
        verdicts: Counter[str] = Counter()
        noted = [id(p) for probe in self.probes for p in (probe.hang, *probe.followers)]
        deadline = time.monotonic() + 10  # callbacks run just after their promise ends
        while not all(key in self.finished_at for key in noted) and time.monotonic() < deadline:
            time.sleep(0.05)
        began: dict[str, float] = {}  # the last start counts: a restarted worker runs it again
        for line in read_log(self.log_dir, "hangs.log"):
            request, _, at = line.rpartition(" ")
            began[request] = float(at)
        for probe in self.probes:
            hang_done = self.finished_at.get(id(probe.hang))
            done = [self.finished_at.get(id(p), math.inf) for p in probe.followers]
            if hang_done is None or math.inf in done:
                verdicts["unfinished"] += 1
                continue
            due = hang_done - probe.seconds / 2
            late = [p for p, t in zip(probe.followers, done, strict=True) if t > due]
            if not late:
                verdicts["followers done first"] += 1
                continue
            start = began.get(probe.hang.request, probe.queued_at)
            restarted = any(start - 1 <= t <= hang_done + 1 for t in self.pid_changes)
            on_its_worker = sum(_worker(p) == _worker(probe.hang) for p in late)
            if not on_its_worker:
                # Another worker took them over, as it must; they were late only because the
                # soak queues more than two workers keep up with (its backlog).
                verdict = "taken over, late behind the backlog"
            elif restarted:
                verdict = "inconclusive: a worker restarted"
            else:
                verdict = "held behind"
            verdicts[verdict] += 1
            print(
                f"hang probe {probe.hang.request}: {len(late)} of {len(done)} followers done "
                f"late ({on_its_worker} on the hang's worker), the last {max(done) - start:.1f} s "
                f"after the hang began, the hang {hang_done - start:.1f} s after"
                + (" (a worker restarted meanwhile)" if restarted else "")
            )
        return verdicts

    # -- case 13: a service started from a thread that then ends --------------------------

    def side_service(self, tag: str) -> None:
        box: list[Any] = []

        def startup_hook() -> None:
            try:
                box.append(
                    ProcessorService(
                        SoakProcessor,
                        parallel_workers=1,
                        processor_class_init_args=(self.log_dir,),
                    ).start()
                )
            except BaseException as exc:
                box.append(exc)

        hook = threading.Thread(target=startup_hook, name=f"startup-hook-{tag}")
        hook.start()
        hook.join()
        side = box[0]
        if isinstance(side, BaseException):
            self.side_problems.append(f"start() from a thread raised {side!r}")
            return
        try:
            promises = side.queue_requests([f"side:{tag}:{i}" for i in range(5)])
            self.side_promises.extend(promises)
            for promise in promises:
                promise.get_result(timeout=60)  # problem_with() checks it at the end
        except Exception as exc:
            self.side_problems.append(f"using it raised {exc!r:.200}")
        finally:
            side.stop(timeout=30)

    # -- background sampling ------------------------------------------------------------

    def watch_workers(self) -> None:
        """Notes when the set of worker processes changed (a restart)."""
        pids = tuple(self.service.worker_pids)
        if self.pids and pids != self.pids:
            self.pid_changes.append(time.time())
        self.pids = pids


def wait_while_ending(promises: list[Promise[Any]], patience: float) -> None:
    """Waits for every promise while some keep ending: the load outruns the workers, so a
    backlog drains after the run; a promise still pending after ``patience`` seconds in
    which none ended is lost."""
    pending = [p for p in promises if not p.done()]
    while pending:
        try:
            PromiseSet(pending).wait_for_all(timeout=patience)
        except TimeoutError:
            still = [p for p in pending if not p.done()]
            if len(still) == len(pending):
                return
            pending = still
        else:
            return


def main() -> None:
    parser = argparse.ArgumentParser(description="raypw soak test")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=2000, help="requests queued per second")
    args = parser.parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    log_dir = tempfile.mkdtemp(prefix="raypw-soak-")
    service = ProcessorService(
        SoakProcessor, parallel_workers=2, max_retries=2, processor_class_init_args=(log_dir,)
    ).start()
    soak = Soak(service, log_dir, random.Random(2026))
    peak = 0
    stop_sampling = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop_sampling.wait(1.0):
            peak = max(peak, tree_rss(os.getpid()))
            soak.watch_workers()

    threading.Thread(target=sample, daemon=True).start()
    soak.run(args.minutes * 60, args.rate)
    ended = time.monotonic()
    wait_while_ending(soak.promises + soak.side_promises, patience=120)
    waited = time.monotonic() - ended
    stop_sampling.set()
    probes = soak.judge_probes()
    service.stop()
    print(f"minutes                  {args.minutes:g}")
    failures = report(soak, probes)
    print(f"backlog drained in       {waited:.0f} s after the run")
    print(f"peak memory              {peak / 2**30:.2f} GiB (process tree)")
    for failure in failures[:20]:
        print("FAIL", failure)
    print("verdict                  " + ("FAIL" if failures else "OK"))
    sys.exit(1 if failures else 0)


def report(soak: Soak, probes: Counter[str]) -> list[str]:
    """Prints how every promise ended, per kind, and the faults; returns what failed."""
    promises = soak.promises + soak.side_promises
    table: dict[str, Counter[str]] = {}
    failures: list[str] = []
    for promise in set(promises):
        kind = kind_of(promise.request)
        row = table.setdefault(kind, Counter())
        row["promises"] += 1
        if not promise.done():
            row["lost"] += 1
            continue
        problem = problem_with(promise, id(promise) in soak.aborted)
        if problem is not None:
            row["wrong"] += 1
            failures.append(f"{promise.request!r:.60}: {problem}")
        elif id(promise) in soak.aborted:
            row["aborted"] += 1
        elif EXPECTED.get(kind) is None:
            row["completed"] += 1
        else:
            row["expected error"] += 1
    lost = sum(row["lost"] for row in table.values())
    wrong = sum(row["wrong"] for row in table.values())
    unexpected = read_log(soak.log_dir, "unexpected.log")
    print(f"requests queued          {len(promises):,} ({len(set(promises)):,} distinct promises)")
    columns = ("promises", "completed", "expected error", "aborted", "wrong", "lost")
    print(f"{'kind':<12}" + "".join(f"{name:>16}" for name in columns))
    for kind in sorted(table):
        print(f"{kind:<12}" + "".join(f"{table[kind][name]:>16,}" for name in columns))
    print("faults injected")
    for name, count in sorted(soak.faults.items()):
        print(f"  {name:<52}{count:,}")
    print("hang probes              " + ", ".join(f"{k} {v}" for k, v in sorted(probes.items())))
    print(f"refused calls wrong      {len(soak.refusals):,}")
    print(f"refused requests run     {len(unexpected):,}")
    print(f"side service problems    {len(soak.side_problems):,}")
    print(f"wrong outcomes           {wrong:,}")
    print(f"lost                     {lost:,}")
    failures += soak.refusals + [f"processed a refused request: {r}" for r in unexpected]
    failures += soak.side_problems
    if probes["held behind"]:
        failures.append(f"{probes['held behind']} hang probe(s) held their followers")
    if lost:
        failures.append(f"{lost} promise(s) never ended")
    return failures


if __name__ == "__main__":
    main()
