"""The client's fast-path bookkeeping, without Ray: the lease, the reservation a submit makes,
the deaths it carries, and when a report is due."""

from __future__ import annotations

from raypw.fast_path import REPORT_SECONDS, FastPath
from raypw.promise import Promise
from raypw.protocol import DirectOutcome, FastPathReport, FastPathRun, Lease


def promise(request_id: int) -> Promise[str]:
    return Promise(f"r{request_id}", id_=request_id)


def running(fast: FastPath, request_id: int, now: float = 0.0) -> Promise[str]:
    lease = fast.free_lease()
    assert lease is not None
    lone = promise(request_id)
    fast.begin(lone, lease)
    fast.sent_as(object(), now)
    return lone


def test_the_lease_is_free_only_while_no_fast_path_request_runs():
    fast = FastPath("c", allowed=True)
    assert fast.free_lease() is None  # none lent yet
    fast.lease = Lease(1, actor=None)
    first = running(fast, 7)
    assert fast.free_lease() is None and fast.went_to == fast.lease and fast.sent == 1
    fast.ended(first, DirectOutcome("ok", None, 0.01), now=1.0)
    assert fast.free_lease() is fast.lease and fast.promise is None


def test_a_report_is_due_at_once_when_a_submit_reserved_the_worker_else_within_report_seconds():
    fast = FastPath("c", allowed=True)
    fast.lease = Lease(0, actor=None)
    alone = running(fast, 1)
    assert fast.report_in(0.0) is None  # nothing to report
    assert not fast.ended(alone, DirectOutcome("ok", None, 0.5), now=1.0)
    assert fast.report_in(1.0) == REPORT_SECONDS
    waited_for = running(fast, 2, now=1.0)
    assert fast.reserve() == FastPathRun(0, 2)  # a submit went out behind it
    assert fast.ended(waited_for, DirectOutcome(None, "error", 0.25), now=2.0)
    assert fast.report_in(2.0) == 0.0
    report = fast.take_report()
    assert report == FastPathReport("c", 2, processed=2, failed=1, seconds=0.75, waited=2.0)
    assert fast.take_report() is None and fast.report_in(3.0) is None


def test_a_request_that_ended_unprocessed_is_reported_finished_but_not_processed():
    fast = FastPath("c", allowed=True)
    fast.lease = Lease(0, actor=None)
    lone = running(fast, 5)
    fast.ended(lone, None, now=1.0)
    assert fast.take_report() == FastPathReport("c", 5, 0, 0, 0.0, 0.0)


def test_a_death_under_a_request_loses_the_lease_and_travels_with_its_next_submit_once():
    fast = FastPath("c", allowed=True)
    fast.lease = Lease(3, actor=None, pid=4321)
    lone = running(fast, 9)
    fast.ended(lone, None, now=1.0)
    fast.failed(lone, died=True)
    assert fast.lease is None and fast.lease_wanted
    other = promise(10)
    assert fast.deaths_among([other]) is None
    assert fast.deaths_among([other, lone]) == [FastPathRun(3, 9, pid=4321)]
    assert fast.deaths_among([lone]) is None  # told once


def test_a_request_that_ends_another_way_carries_its_death_no_more():
    fast = FastPath("c", allowed=True)
    fast.lease = Lease(0, actor=None)
    lone = running(fast, 4)
    fast.failed(lone, died=True)
    fast.forget(lone._id)  # aborted before it was sent again
    assert fast.deaths_among([lone]) is None


def test_no_reservation_without_a_running_request():
    fast = FastPath("c", allowed=True)
    assert fast.reserve() is None
