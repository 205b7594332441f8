"""The Coordinator's own loops, run without Ray on an asyncio loop."""

from __future__ import annotations

import asyncio

from raypw import Processor
from raypw.config import ServiceConfig
from raypw.coordinator import Coordinator
from raypw.protocol import Submit, TimedOut


class Nothing(Processor):
    def process(self, request):
        return request


def test_forgetting_silent_clients_survives_a_failure_and_carries_on():
    coordinator = Coordinator(Nothing, ServiceConfig(parallel_workers=1, client_timeout=1.0), {})
    calls: list[float] = []

    async def main() -> None:
        second = asyncio.Event()

        def silent_clients(timeout: float) -> list[str]:
            calls.append(timeout)
            if len(calls) == 1:
                raise RuntimeError("a worker was restarting")
            second.set()
            return []

        coordinator._scheduler.silent_clients = silent_clients  # type: ignore[method-assign]
        task = asyncio.get_running_loop().create_task(coordinator._forget_silent_clients())
        await asyncio.wait_for(second.wait(), timeout=30)
        task.cancel()

    asyncio.run(main())
    assert len(calls) >= 2


def test_the_deadline_timer_ticks_the_scheduler_and_wakes_the_client():
    coordinator = Coordinator(Nothing, ServiceConfig(parallel_workers=1), {})

    async def main() -> list:
        epoch = await coordinator.connect("a")
        # No worker is up, so the request waits in the queue until its deadline.
        await coordinator.submit(Submit("a", epoch, 1, [1], ["x"], None, [0.01]))
        assert coordinator._timer is not None
        return await coordinator.poll("a", timeout=30)

    assert asyncio.run(main()) == [TimedOut([1])]
    assert coordinator._scheduler.queued == 0


def test_the_metrics_loop_exports_the_schedulers_counts_and_survives_a_failure():
    coordinator = Coordinator(Nothing, ServiceConfig(parallel_workers=3, name="m"), {})
    exported: list = []

    async def main() -> None:
        second = asyncio.Event()

        class Metrics:
            def update(self, counts) -> None:
                exported.append(counts)
                if len(exported) == 1:
                    raise RuntimeError("the metrics agent is away")
                second.set()

        epoch = await coordinator.connect("a")
        # No worker is up, so both requests stay queued.
        await coordinator.submit(Submit("a", epoch, 1, [1, 2], ["x", "y"], None, None))
        task = asyncio.get_running_loop().create_task(coordinator._export_metrics(Metrics()))
        await asyncio.wait_for(second.wait(), timeout=30)
        task.cancel()

    asyncio.run(main())
    counts = exported[-1]
    assert (counts.queued, counts.running, counts.processed, counts.failed) == (2, 0, 0, 0)
    assert counts.workers == counts.workers_alive == 3


def test_a_service_exports_metrics_tagged_with_its_name_unless_told_not_to():
    named = Coordinator(Nothing, ServiceConfig(parallel_workers=1, name="thumbs"), {})
    assert named._metrics is not None
    assert named._metrics._latency_seconds.info["default_tags"]["service"] == "thumbs"
    quiet = Coordinator(Nothing, ServiceConfig(parallel_workers=1, metrics=False), {})
    assert quiet._metrics is None


def test_a_recycling_cut_short_by_shutdown_logs_no_error(monkeypatch, caplog):
    import ray

    coordinator = Coordinator(Nothing, ServiceConfig(parallel_workers=1), {})
    coordinator._workers, coordinator._pids = [object()], [1]
    killed: list[object] = []
    monkeypatch.setattr(ray, "kill", lambda actor, no_restart=True: killed.append(actor))
    replacing = asyncio.Event()

    async def add_worker(index: int) -> None:  # the new worker never comes up
        replacing.set()
        await asyncio.Event().wait()

    coordinator._add_worker = add_worker  # type: ignore[method-assign]

    async def main() -> None:
        task = asyncio.get_running_loop().create_task(coordinator._recycle(0))
        await asyncio.wait_for(replacing.wait(), timeout=30)
        task.cancel()  # what shutdown() does to the coordinator's tasks
        await asyncio.gather(task, return_exceptions=True)

    with caplog.at_level("ERROR", logger="raypw"):
        asyncio.run(main())
    assert len(killed) == 1 and coordinator._pids == [0]
    assert [r.getMessage() for r in caplog.records] == []
