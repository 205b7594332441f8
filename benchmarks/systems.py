"""raypw and its peers behind one small interface.

Every system keeps one :class:`~benchmarks.workloads.State` per worker process and hands each
result back individually, in completion order where the system can.
"""

from __future__ import annotations

import concurrent.futures
import functools
import multiprocessing
from collections.abc import Iterator
from typing import Any

from benchmarks import workloads

RAY_INIT = {"address": "local", "num_cpus": 2, "include_dashboard": False}


class System:
    """One pool under test."""

    name = ""
    uses_ray = False

    def start(self, kind: str, arg: Any, workers: int) -> None:
        raise NotImplementedError

    def stream(self, requests: list[Any]) -> Iterator[Any]:
        """Submits all requests; yields each result as it arrives."""
        raise NotImplementedError

    def one(self, request: Any) -> Any:
        """One request on an idle pool, round trip."""
        return next(iter(self.stream([request])))

    def stop(self) -> None:
        raise NotImplementedError


def _ensure_ray() -> None:
    import ray

    if not ray.is_initialized():
        ray.init(**RAY_INIT)


class Raypw(System):
    name = "raypw"
    uses_ray = True

    def start(self, kind: str, arg: Any, workers: int) -> None:
        from raypw import ProcessorService

        _ensure_ray()
        self.service = ProcessorService(
            workloads.BenchProcessor,
            parallel_workers=workers,
            processor_class_init_args=(kind, arg),
        ).start()

    def stream(self, requests: list[Any]) -> Iterator[Any]:
        from raypw import PromiseSet

        promises = [self.service.queue_request(r) for r in requests]
        for promise in PromiseSet(promises).select():
            yield promise.get_result()

    def one(self, request: Any) -> Any:
        return self.service.queue_request(request).get_result()

    def stop(self) -> None:
        self.service.stop()


def _ray_actor_class() -> Any:
    import ray

    @ray.remote
    class StateActor:
        def __init__(self, kind: str, arg: Any) -> None:
            self.state = workloads.State(kind, arg)

        def handle(self, request: Any) -> Any:
            return self.state.handle(request)

    return StateActor


class RayActorPool(System):
    name = "ray ActorPool"
    uses_ray = True

    def start(self, kind: str, arg: Any, workers: int) -> None:
        import ray
        from ray.util import ActorPool

        _ensure_ray()
        actor = _ray_actor_class()
        self.actors = [actor.remote(kind, arg) for _ in range(workers)]
        ray.get([a.__ray_ready__.remote() for a in self.actors])
        self.pool = ActorPool(self.actors)

    def stream(self, requests: list[Any]) -> Iterator[Any]:
        yield from self.pool.map_unordered(lambda a, r: a.handle.remote(r), requests)

    def stop(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)


class RayCalls(System):
    """Plain actor calls, round robin, at most 1,000 in flight, ray.wait(num_returns=1)."""

    name = "ray actor calls"
    uses_ray = True
    window = 1000

    def start(self, kind: str, arg: Any, workers: int) -> None:
        import ray

        _ensure_ray()
        actor = _ray_actor_class()
        self.actors = [actor.remote(kind, arg) for _ in range(workers)]
        ray.get([a.__ray_ready__.remote() for a in self.actors])

    def stream(self, requests: list[Any]) -> Iterator[Any]:
        import ray

        actors = self.actors
        pending: list[Any] = []
        submitted = 0
        while submitted < len(requests) or pending:
            while submitted < len(requests) and len(pending) < self.window:
                actor = actors[submitted % len(actors)]
                pending.append(actor.handle.remote(requests[submitted]))
                submitted += 1
            ready, pending = ray.wait(pending, num_returns=1)
            yield ray.get(ready[0])

    def stop(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)


class ProcessPool(System):
    name = "ProcessPoolExecutor"

    def start(self, kind: str, arg: Any, workers: int) -> None:
        self.pool = concurrent.futures.ProcessPoolExecutor(
            workers, initializer=workloads.init_state, initargs=(kind, arg)
        )
        list(self.pool.map(workloads.pid, range(workers * 4)))  # workers up

    def stream(self, requests: list[Any]) -> Iterator[Any]:
        futures = [self.pool.submit(workloads.call_state, r) for r in requests]
        for future in concurrent.futures.as_completed(futures):
            yield future.result()

    def one(self, request: Any) -> Any:
        return self.pool.submit(workloads.call_state, request).result()

    def stop(self) -> None:
        self.pool.shutdown()


class MultiprocessingPool(System):
    def __init__(self, chunksize: int | None) -> None:
        self.chunksize = chunksize  # None: tuned to the workload
        self.name = f"multiprocessing.Pool chunksize={'tuned' if chunksize is None else chunksize}"

    def start(self, kind: str, arg: Any, workers: int) -> None:
        self.workers = workers
        self.pool = multiprocessing.get_context("fork").Pool(
            workers, initializer=workloads.init_state, initargs=(kind, arg)
        )
        self.pool.map(workloads.pid, range(workers * 4))

    def stream(self, requests: list[Any]) -> Iterator[Any]:
        chunksize = self.chunksize or max(1, min(1000, len(requests) // (self.workers * 20)))
        yield from self.pool.imap_unordered(workloads.call_state, requests, chunksize)

    def one(self, request: Any) -> Any:
        return self.pool.apply(workloads.call_state, (request,))

    def stop(self) -> None:
        self.pool.close()
        self.pool.join()


class Mpire(System):
    name = "mpire"
    default_chunks = False  # True: mpire's own chunks, as untuned: n / (64 x workers) for a list

    def start(self, kind: str, arg: Any, workers: int) -> None:
        from mpire import WorkerPool

        self.args = (kind, arg)
        self.workers = workers
        self.pool = WorkerPool(n_jobs=workers, use_worker_state=True, keep_alive=True)
        self.pool.__enter__()
        list(self.stream(["warm"] * workers) if kind == "noop" else [])

    def stream(self, requests: list[Any]) -> Iterator[Any]:
        init = functools.partial(_mpire_init, self.args)
        chunksize: int | None = max(1, min(1000, len(requests) // (self.workers * 20)))
        if self.default_chunks:
            chunksize = None
        yield from self.pool.imap_unordered(
            workloads.mpire_call, requests, chunk_size=chunksize, worker_init=init
        )

    def one(self, request: Any) -> Any:
        return self.pool.apply(workloads.mpire_call, (request,))

    def stop(self) -> None:
        self.pool.__exit__(None, None, None)


def _mpire_init(args: tuple[Any, ...], worker_state: dict[str, Any]) -> None:
    worker_state["args"] = args


class RayData(System):
    """Ray Data map_batches over an actor pool: Ray's own bulk path (no per-item futures)."""

    name = "Ray Data map_batches"
    uses_ray = True

    def start(self, kind: str, arg: Any, workers: int) -> None:
        _ensure_ray()
        self.args = (kind, arg)
        self.workers = workers

    def stream(self, requests: list[Any]) -> Iterator[Any]:
        import ray

        kind, arg = self.args
        batch = max(1, min(4096, len(requests) // (self.workers * 4)))
        dataset = ray.data.from_items([{"r": r} for r in requests]).map_batches(
            _DataState,
            fn_constructor_args=(kind, arg),
            batch_size=batch,
            concurrency=self.workers,
            batch_format="pyarrow" if kind == "noop" else "default",
        )
        for row in dataset.iter_rows():
            yield row["r"]

    def one(self, request: Any) -> Any:
        return next(iter(self.stream([request])))

    def stop(self) -> None:
        pass


class _DataState:
    def __init__(self, kind: str, arg: Any) -> None:
        self.state = workloads.State(kind, arg)

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        if isinstance(batch, pa.Table):
            values = batch.column("r").to_pylist()
            return pa.table({"r": [self.state.handle(v) for v in values]})
        batch["r"] = [self.state.handle(v) for v in batch["r"]]
        return batch


def all_systems() -> list[System]:
    systems: list[System] = [
        Raypw(),
        RayActorPool(),
        RayCalls(),
        ProcessPool(),
        MultiprocessingPool(1),
        MultiprocessingPool(None),
        RayData(),
    ]
    try:
        import mpire  # noqa: F401

        systems.append(Mpire())
    except ImportError:
        pass
    return systems
