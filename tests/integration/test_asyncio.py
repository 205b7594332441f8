"""asyncio and concurrent.futures views of promises, progress bars, and interrupted waits."""

from __future__ import annotations

import _thread
import asyncio
import concurrent.futures
import threading
import time

import pytest

from raypw import PromiseAbortedError, PromiseSet, ResultTimeoutError
from tests.integration.conftest import processed
from tests.integration.processors import Recorder


def test_await_a_promise_in_asyncio_run(make_service):
    service = make_service(Recorder, parallel_workers=2)

    async def main():
        good = service.queue_request("good")
        bad = service.queue_request("fail")
        result = await good
        with pytest.raises(ValueError, match="cannot process fail"):
            await bad
        return result

    assert asyncio.run(main())["request"] == "good"


def test_cancelling_the_awaiting_task_leaves_the_request_running(make_service):
    service = make_service(Recorder, parallel_workers=1)
    promise = service.queue_request("slow:0.5")

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(promise, 0.05)
        return await promise

    assert asyncio.run(main())["request"] == "slow:0.5"
    assert not promise.is_aborted()


def test_async_for_yields_in_arrival_order(make_service):
    service = make_service(Recorder, parallel_workers=2)
    first_done = service.queue_request("done-first")
    first_done.get_result(timeout=60)

    async def main():
        promises = [service.queue_request("late:1.5"), service.queue_request("early:0.2")]
        ticks = 0

        async def tick():  # the loop stays free while the iteration waits
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        order = [p.request async for p in PromiseSet([first_done, *promises])]
        ticker.cancel()
        return order, ticks

    order, ticks = asyncio.run(main())
    assert order == ["done-first", "early:0.2", "late:1.5"]
    assert ticks > 20


def test_aselect_times_out_with_the_unfinished_count(make_service):
    service = make_service(Recorder, parallel_workers=1)
    promises = service.queue_requests(["quick", "slow:3"])

    async def main():
        seen = []
        with pytest.raises(ResultTimeoutError, match="1 \\(of 2\\) promises unfinished"):
            async for promise in PromiseSet(promises).aselect(timeout=1.0):
                seen.append(promise.request)
        return seen

    assert asyncio.run(main()) == ["quick"]


def test_future_works_with_the_standard_library(make_service, log_file):
    service = make_service(Recorder, parallel_workers=1, processor_class_init_args=(str(log_file),))
    ok, bad = service.queue_requests(["ok", "fail"])
    futures = [ok.future(), bad.future()]
    done, not_done = concurrent.futures.wait(futures, timeout=60)
    assert not not_done
    assert futures[0].result()["request"] == "ok"
    assert isinstance(futures[1].exception(), ValueError)
    # A finished promise gives a finished future.
    assert ok.future().result(timeout=0)["request"] == "ok"


def test_cancelling_a_future_aborts_its_request(make_service, log_file):
    service = make_service(Recorder, parallel_workers=1, processor_class_init_args=(str(log_file),))
    busy, waiting = service.queue_requests(["busy:1", "waiting"])
    future = waiting.future()
    assert future.cancel() and future.cancelled()
    assert waiting.is_aborted()
    with pytest.raises(PromiseAbortedError):
        waiting.get_result()
    busy.get_result(timeout=60)
    assert service.queue_request("after").get_result(timeout=60)["request"] == "after"
    assert "waiting" not in processed(log_file)
    # A future that finished cannot be cancelled.
    assert not busy.future().cancel()


def test_progress_bar_counts_done_failed_and_aborted(make_service, capsys):
    service = make_service(Recorder, parallel_workers=2)
    promises = service.queue_requests([f"p{i}" for i in range(50)] + ["fail", "never:30"])
    promises[-1].abort()
    PromiseSet(promises).wait_for_all(timeout=60, progress=True)
    err = capsys.readouterr().err
    assert "52/52" in err
    assert "done=50 failed=1 aborted=1" in err


def test_no_progress_bar_unless_asked(make_service, capsys):
    service = make_service(Recorder, parallel_workers=2)
    PromiseSet(service.queue_requests(["q1", "q2"])).wait_for_all(timeout=60)
    assert capsys.readouterr() == ("", "")


def test_an_interrupted_wait_leaves_the_service_usable(make_service):
    service = make_service(Recorder, parallel_workers=2)
    promises = service.queue_requests([f"i{i}:0.5" for i in range(6)])
    threading.Timer(0.3, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        PromiseSet(promises).wait_for_all(timeout=60)
    started = time.monotonic()
    assert service.queue_request("after").get_result(timeout=60)["request"] == "after"
    PromiseSet(promises).wait_for_all(timeout=60)
    assert [p.get_result()["request"] for p in promises] == [f"i{i}:0.5" for i in range(6)]
    assert time.monotonic() - started < 30
