import asyncio
import fractions
import math
import sys
import threading
import time

import pytest

from raypw import Promise, PromiseAbortedError, PromiseSet, ResultTimeoutError
from raypw.promise import ABORTED, DONE, FAILED, STATE_LOCK, Notes, settle


def finish(promise, state=DONE, value=None):
    notes = Notes()
    with STATE_LOCK:
        settle(promise, state, value, notes)
    notes.notify()


def test_pending_promise_times_out_with_a_timeout_error():
    promise = Promise("r")
    with pytest.raises(TimeoutError) as caught:
        promise.get_result(timeout=0.05)
    assert isinstance(caught.value, ResultTimeoutError)
    assert not promise.done()


def test_get_result_wakes_when_settled_from_another_thread():
    promise = Promise("r")
    threading.Timer(0.05, finish, (promise, DONE, 42)).start()
    assert promise.get_result(timeout=5) == 42
    assert promise.result() == 42
    assert promise.done() and not promise.is_aborted()


def test_failed_promise_reraises_the_error():
    promise = Promise("r")
    finish(promise, FAILED, KeyError("missing"))
    with pytest.raises(KeyError):
        promise.get_result()


def test_abort_without_owner_is_local_and_final():
    promise = Promise("r")
    assert promise.abort() is True
    assert promise.is_aborted()
    assert promise.abort() is False
    with pytest.raises(PromiseAbortedError) as caught:
        promise.get_result()
    assert caught.value.request == "r"


def test_final_states_cannot_be_left_by_abort():
    promise = Promise("r")
    finish(promise, DONE, 1)
    assert promise.abort() is False
    assert promise.get_result() == 1


def test_repr_shows_state_and_request():
    promise = Promise("hola")
    assert repr(promise) == "<Promise pending request='hola'>"
    finish(promise, ABORTED)
    assert "aborted" in repr(promise)


def test_select_yields_in_settle_order_and_each_once():
    promises = [Promise(i) for i in range(5)]
    order = [3, 1, 4, 0, 2]

    def settle_all():
        for i in order:
            time.sleep(0.01)
            finish(promises[i], DONE, i)

    threading.Thread(target=settle_all).start()
    yielded = list(PromiseSet(promises + promises[:2]).select(timeout=5))
    assert [p.request for p in yielded] == order


def test_select_timeout_counts_unfinished():
    promises = [Promise(i) for i in range(3)]
    finish(promises[1], DONE, 1)
    iterator = PromiseSet(promises).select(timeout=0.05)
    assert next(iterator) is promises[1]
    with pytest.raises(ResultTimeoutError, match=r"2 \(of 3\) promises unfinished"):
        next(iterator)
    # The abandoned select leaves no waiter behind.
    assert promises[0]._waiters is None and promises[2]._waiters is None


def test_wait_for_all_skips_aborted_when_asked():
    promises = [Promise(i) for i in range(3)]
    finish(promises[0], DONE, 0)
    promises[1].abort()
    finish(promises[2], FAILED, ValueError("x"))
    seen = []
    PromiseSet(promises).wait_for_all(completed_callback=seen.append, ignore_aborted=True)
    assert seen == [promises[0], promises[2]]
    seen.clear()
    PromiseSet(promises).wait_for_all(completed_callback=seen.append)
    assert seen == promises


def test_promise_set_repr_and_len():
    promises = [Promise(1), Promise(2)]
    finish(promises[0])
    ps = PromiseSet(promises + promises)
    assert len(ps) == 2
    assert repr(ps) == "<PromiseSet 1 of 2 finished: 1 done, 0 failed, 0 aborted>"
    assert "<progress value='1' max='2'>" in ps._repr_html_()
    assert repr(promises[0]).startswith("<Promise done request=1 result=")
    assert repr(promises[1]) == "<Promise pending request=2>"
    assert "Promise pending request=2" in promises[1]._repr_html_()


def test_two_selects_on_one_promise_both_hear_of_it_and_either_can_leave():
    promise, other = Promise("a"), Promise("b")
    got = []
    first = threading.Thread(target=lambda: got.extend(PromiseSet([promise]).select(timeout=60)))
    first.start()
    deadline = time.monotonic() + 60
    while promise._waiters is None:  # until the first select waits on the promise
        assert time.monotonic() < deadline, "the first select never waited"
        time.sleep(0.001)
    with pytest.raises(ResultTimeoutError):
        list(PromiseSet([promise, other]).select(timeout=0.05))
    assert promise._waiters is not None and other._waiters is None  # only the first is left
    finish(promise, DONE, 1)
    first.join(60)
    assert got == [promise]


@pytest.mark.parametrize("reader", ["get_result", "await"])
def test_a_finished_promise_never_reads_as_done_without_its_result(reader):
    # get_result() and await read a finished promise without the lock, so they must never see
    # its final state before its value. One thread settles promise after promise while this
    # one spins on each; a tiny switch interval makes the writer lose the GIL between almost
    # any two of its steps (on a wrong order, some hundreds of misreads in 100,000).
    promises = [Promise(i) for i in range(100_000)]
    misread: list[tuple[int, object]] = []

    def settle_all() -> None:
        for i, promise in enumerate(promises):
            with STATE_LOCK:
                settle(promise, DONE, i + 1, Notes())

    async def read_each() -> None:
        for i, promise in enumerate(promises):
            while not promise.done():
                pass
            value = promise.get_result() if reader == "get_result" else await promise
            if value != i + 1:
                misread.append((i, value))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        writer = threading.Thread(target=settle_all)
        writer.start()
        asyncio.run(read_each())
        writer.join()
    finally:
        sys.setswitchinterval(interval)
    assert misread == []


def test_the_future_of_a_promise_without_a_service_finishes_with_it():
    done, aborted, cancelled = Promise("a"), Promise("b"), Promise("c")
    futures = [done.future(), aborted.future(), cancelled.future()]
    finish(done, DONE, 1)
    aborted.abort()
    assert futures[2].cancel()
    assert futures[0].result(timeout=0) == 1
    assert futures[1].cancelled() and futures[2].cancelled() and cancelled.is_aborted()
    assert done.future().result(timeout=0) == 1


def test_bad_arguments_to_the_waits_are_refused_at_the_call_naming_them():
    done, pending = Promise("a"), Promise("b")
    finish(done, DONE, 1)
    for bad, error in (
        ("5", TypeError),
        (True, TypeError),
        ([1], TypeError),
        (math.nan, ValueError),
    ):
        with pytest.raises(error, match="timeout"):
            done.get_result(timeout=bad)
        with pytest.raises(error, match="timeout"):
            PromiseSet([done]).select(timeout=bad)  # at the call, not at the first next()
        with pytest.raises(error, match="timeout"):
            PromiseSet([done]).wait_for_all(timeout=bad)
    with pytest.raises(TypeError, match="completed_callback"):
        PromiseSet([done, pending]).wait_for_all(completed_callback=5)
    for bad in ([done, 1], ["a"], 5, done):
        with pytest.raises(TypeError, match="promises"):
            PromiseSet(bad)
    # What stays valid: a timeout of 0, ints, one below 0 (no wait, as in concurrent.futures:
    # a time left that ran out), and an empty set.
    assert done.get_result(timeout=0) == 1
    assert done.get_result(timeout=-1) == 1
    # Any real number: numpy's scalars too (numbers.Real), here a Fraction.
    assert done.get_result(timeout=fractions.Fraction(3)) == 1
    with pytest.raises(ResultTimeoutError):
        pending.get_result(timeout=fractions.Fraction(1, 50))
    assert list(PromiseSet([done]).select(timeout=fractions.Fraction(1))) == [done]
    with pytest.raises(ResultTimeoutError):
        pending.get_result(timeout=-0.5)
    assert list(PromiseSet([done]).select(timeout=1)) == [done]
    assert list(PromiseSet([]).select()) == []
    assert not pending.done()


def test_aselect_refuses_a_bad_timeout_at_the_call():
    with pytest.raises(TypeError, match="timeout"):
        PromiseSet([Promise("a")]).aselect(timeout="1")
