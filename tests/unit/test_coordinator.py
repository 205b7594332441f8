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
