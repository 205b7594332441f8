"""asyncio and concurrent.futures views of promises, progress bars, and interrupted waits."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import threading
import time

import pytest

from raypw import PromiseAbortedError, PromiseSet, ResultTimeoutError
from tests.integration.conftest import wait_until, waits_in
from tests.integration.processors import Gates, Recorder, gate_log


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


def test_async_for_yields_in_arrival_order(make_service, tmp_path):
    service = make_service(Gates, parallel_workers=2, processor_class_init_args=(str(tmp_path),))
    first_done = service.queue_request("free-done-first")
    first_done.get_result(timeout=60)

    async def main():
        # "late" runs until its gate opens, and only a task of this same loop opens it, once
        # "free-early" has come: so the loop must stay free while the iteration waits, and
        # an iteration that waited for "late" before yielding "free-early" would hang.
        promises = [service.queue_request("late"), service.queue_request("free-early")]
        order = []

        async def open_late_after_early():
            while "free-early" not in order:
                await asyncio.sleep(0.01)
            (tmp_path / "late").touch()

        opener = asyncio.create_task(open_late_after_early())
        async for promise in PromiseSet([first_done, *promises]).aselect(timeout=60):
            order.append(promise.request)
        await opener
        return order

    assert asyncio.run(main()) == ["free-done-first", "free-early", "late"]


def test_aselect_times_out_with_the_unfinished_count(make_service, tmp_path):
    service = make_service(Gates, parallel_workers=1, processor_class_init_args=(str(tmp_path),))
    promises = service.queue_requests(["free-quick", "slow"])  # "slow" waits for its gate
    promises[0].get_result(timeout=60)

    async def main():
        seen = []
        with pytest.raises(ResultTimeoutError, match="1 \\(of 2\\) promises unfinished"):
            async for promise in PromiseSet(promises).aselect(timeout=0.5):
                seen.append(promise.request)
        return seen

    assert asyncio.run(main()) == ["free-quick"]
    (tmp_path / "slow").touch()
    assert promises[1].get_result(timeout=60)[0] == "slow"


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


def test_cancelling_a_future_aborts_its_request(make_service, tmp_path):
    service = make_service(Gates, parallel_workers=1, processor_class_init_args=(str(tmp_path),))
    # "busy" holds the only worker until its gate opens: "free-waiting" cannot have started.
    busy, waiting = service.queue_requests(["busy", "free-waiting"])
    future = waiting.future()
    assert future.cancel() and future.cancelled()
    assert waiting.is_aborted()
    with pytest.raises(PromiseAbortedError):
        waiting.get_result()
    (tmp_path / "busy").touch()
    busy.get_result(timeout=60)
    assert service.queue_request("free-after").get_result(timeout=60)[0] == "free-after"
    assert "start free-waiting" not in gate_log(tmp_path)
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


def test_an_interrupted_wait_leaves_the_service_usable(make_service, tmp_path):
    gate = tmp_path / "gate"
    service = make_service(
        Recorder, parallel_workers=2, processor_class_init_args={"gate": str(gate)}
    )
    promises = service.queue_requests([f"i{i}" for i in range(6)])  # held until the gate opens
    main = threading.get_ident()

    def interrupt_once_it_waits() -> None:  # Ctrl-C while wait_for_all waits
        wait_until(lambda: waits_in(main, "wait_for_all"), "wait_for_all waits")
        signal.pthread_kill(main, signal.SIGINT)  # a real signal: it wakes the blocked wait

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupter = threading.Thread(target=interrupt_once_it_waits)
    interrupter.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            PromiseSet(promises).wait_for_all(timeout=60)
    finally:
        interrupter.join()
        signal.signal(signal.SIGINT, previous)
    assert not any(p.done() for p in promises)  # interrupted while they still ran
    gate.touch()
    started = time.monotonic()
    assert service.queue_request("after").get_result(timeout=60)["request"] == "after"
    PromiseSet(promises).wait_for_all(timeout=60)
    assert [p.get_result()["request"] for p in promises] == [f"i{i}" for i in range(6)]
    assert time.monotonic() - started < 30
