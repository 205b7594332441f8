import pytest

from raypw.batching import OVERHEAD_FACTOR, BatchSizer


def seasoned(*args, **kwargs) -> BatchSizer:
    """A sizer that has timed plenty of requests (past its first-batches rule)."""
    sizer = BatchSizer(*args, **kwargs)
    sizer.timed = 10**9
    return sizer


def test_first_batch_is_one_request_to_measure_its_cost():
    sizer = BatchSizer(target_batch_seconds=0.02, max_batch_size=1000)
    assert sizer.next_size(queued=10_000, workers=2) == 1


def test_slow_requests_go_one_at_a_time():
    sizer = seasoned(0.02, 1000)
    sizer.record(seconds=5.0, processed=1)
    assert sizer.next_size(queued=100, workers=2) == 1


def test_requests_of_50_ms_or_more_go_one_at_a_time_whatever_the_overhead():
    sizer = seasoned(0.02, 1000)
    sizer.record(seconds=0.06, processed=1, overhead=0.01)  # 50 x 10 ms would be 0.25 s
    assert sizer.next_size(queued=100, workers=2) == 1
    shorter = seasoned(0.02, 1000)
    shorter.record(seconds=0.04, processed=1, overhead=0.01)
    assert shorter.next_size(queued=100, workers=2) == 6  # 0.25 s of 40 ms requests


def test_tiny_requests_go_by_hundreds_up_to_the_cap():
    sizer = seasoned(0.02, 1000)
    sizer.record(seconds=0.0001, processed=1)  # 100 us each -> 200 per 20 ms
    assert sizer.next_size(queued=100_000, workers=2) == 200
    sizer = seasoned(0.02, 1000)
    sizer.record(seconds=0.000001, processed=1)
    assert sizer.next_size(queued=100_000, workers=2) == 1000


def test_batches_shrink_near_the_end_so_every_worker_gets_a_share():
    sizer = seasoned(0.02, 1000)
    sizer.record(seconds=0.00001, processed=10)
    assert sizer.next_size(queued=9, workers=3) == 3
    assert sizer.next_size(queued=1, workers=3) == 1
    assert sizer.next_size(queued=0, workers=3) == 0


def test_moving_average_follows_a_changing_workload():
    sizer = seasoned(0.02, 10_000)
    sizer.record(0.001, 100)  # 10 us each
    fast = sizer.next_size(1_000_000, 2)
    for _ in range(20):
        sizer.record(1.0, 100)  # 10 ms each
    assert sizer.next_size(1_000_000, 2) < fast
    assert sizer.next_size(1_000_000, 2) == 2


def test_empty_or_zero_time_batches_do_not_break_the_estimate():
    sizer = seasoned(0.02, 500)
    sizer.record(1.0, 0)
    assert sizer.seconds_per_request is None
    sizer.record(0.0, 10)
    assert sizer.next_size(10_000, 2) == 500


def test_batches_grow_with_the_measured_overhead_per_call():
    sizer = seasoned(0.02, 10_000, max_batch_seconds=0.25)
    sizer.record(seconds=0.05, processed=10)  # 5 ms each
    assert sizer.next_size(10_000, 2) == 4  # 20 ms of work
    sizer.record(seconds=0.02, processed=4, overhead=0.002)  # 2 ms per call
    assert sizer.batch_seconds == pytest.approx(OVERHEAD_FACTOR * 0.002)
    assert sizer.next_size(10_000, 2) == int(OVERHEAD_FACTOR * 0.002 / 0.005)
    sizer.record(seconds=0.02, processed=4, overhead=1.0)  # a very slow round trip
    assert sizer.batch_seconds == 0.25  # capped


def test_batches_hold_at_most_as_many_requests_as_were_timed():
    sizer = BatchSizer(0.02, 1000)
    sizer.record(seconds=0.0001, processed=1)  # one cheap warm-up request
    assert sizer.next_size(queued=100, workers=2) == 1  # not 200: one request timed
    sizer.record(seconds=0.0002, processed=2)
    assert sizer.next_size(queued=100, workers=2) == 3


def test_batches_grow_with_the_width_of_the_pool():
    sizer = seasoned(0.02, 1_000_000)
    sizer.record(seconds=0.01, processed=1)  # 10 ms each
    assert sizer.next_size(10**9, workers=2) == 2  # 20 ms of work
    assert sizer.next_size(10**9, workers=1000) == 250  # 2.5 s: the coordinator keeps up


def test_one_hung_request_does_not_make_the_next_hang_look_usual():
    sizer = seasoned(0.02, 1000)
    for _ in range(20):
        sizer.record(seconds=0.001, processed=1)
    sizer.record(seconds=4.0, processed=1)  # a hang
    assert sizer.typical_seconds is not None and sizer.typical_seconds < 0.01
    for _ in range(20):
        sizer.record(seconds=0.1, processed=1)  # the work really got slower: followed
    assert sizer.typical_seconds == pytest.approx(0.1, rel=0.05)
