"""The book of deadlines: waiters come out when due, earliest first; finished ones are dropped."""

from __future__ import annotations

import random

import pytest

from raypw.deadlines import (
    EARLIEST,
    MIN_COMPACT,
    OVER_LIMIT,
    TICK_SECONDS,
    DeadlineBook,
    DeadlineRuns,
    round_up_to_tick,
)


def test_waiters_come_out_once_due_whatever_order_they_were_added_in():
    book = DeadlineBook()
    book.add("a", [1, 2, 3], [5.0, 1.0, 3.0])  # out of order within a submit
    book.add("b", [7], [2.0])
    assert book.next_due() == 1.0 and len(book) == 4
    assert book.due(0.5) == []
    assert sorted(book.due(3.0)) == [("a", 2), ("a", 3), ("b", 7)]
    assert book.next_due() == 5.0 and len(book) == 1
    assert book.due(10.0) == [("a", 1)]
    assert not book and book.next_due() is None


def test_equal_deadlines_all_come_out_together():
    book = DeadlineBook()
    book.add("a", [1, 2], [4.0, 4.0])
    book.add("a", [3], [4.0])
    assert sorted(book.due(4.0)) == [("a", 1), ("a", 2), ("a", 3)]


def test_compaction_drops_finished_waiters_and_keeps_the_rest_due():
    book = DeadlineBook()
    ids = list(range(3 * MIN_COMPACT))
    grew = book.add("a", ids, [100.0 + i for i in ids])
    assert grew  # more than MIN_COMPACT: the owner should compact
    book.compact(lambda client: set(range(0, 3 * MIN_COMPACT, 3)))
    assert len(book) == MIN_COMPACT
    assert not book.add("a", [10**6], [1.0])  # the limit is now twice what was kept
    assert book.due(100.0 + 6) == [("a", 10**6), ("a", 0), ("a", 3), ("a", 6)]


def test_nothing_to_add_adds_nothing():
    book = DeadlineBook()
    assert not book.add("a", [], [])
    assert not book and len(book) == 0


def test_a_submit_in_deadline_order_comes_out_in_it_and_the_book_keeps_no_alias():
    book = DeadlineBook()
    ids, deadlines = [4, 5, 6], [1.0, 1.0, 2.0]
    book.add("a", ids, deadlines)
    ids.append(7)  # the caller's lists are its own: the book copied them
    deadlines[0] = 9.0
    assert book.due(1.0) == [("a", 4), ("a", 5)]
    assert book.due(2.0) == [("a", 6)]
    assert not book


def test_equal_deadlines_out_of_order_keep_the_order_they_were_added_in():
    book = DeadlineBook()
    book.add("a", [1, 2, 3, 4], [3.0, 1.0, 3.0, 1.0])
    assert book.due(1.0) == [("a", 2), ("a", 4)]
    assert book.due(3.0) == [("a", 1), ("a", 3)]


def test_compaction_drops_a_group_whose_waiters_all_finished():
    book = DeadlineBook()
    book.add("a", list(range(MIN_COMPACT)), [50.0] * MIN_COMPACT)
    book.add("b", [1, 2], [60.0, 70.0])
    assert book.add("c", [9], [80.0])  # past MIN_COMPACT
    pending = {"a": set(), "b": {2}, "c": {9}}
    book.compact(lambda client: pending[client])
    assert len(book) == 2 and book.next_due() == 70.0
    assert book.due(100.0) == [("b", 2), ("c", 9)]


def test_compaction_keeps_a_group_whose_waiters_all_still_wait_whole():
    book = DeadlineBook()
    book.add("a", [1, 2, 3], [1.0, 2.0, 3.0])
    assert book.due(1.0) == [("a", 1)]
    assert book.add("b", list(range(MIN_COMPACT)), [50.0] * MIN_COMPACT)
    book.compact(lambda client: {2, 3} if client == "a" else set())
    assert len(book) == 2 and book.next_due() == 2.0
    assert book.due(3.0) == [("a", 2), ("a", 3)]
    assert not book


def test_deadline_runs_in_order_go_to_the_lane_and_make_no_heap_entry():
    runs = DeadlineRuns()
    assert runs.add(1.0, 1, 2) == EARLIEST  # the first run is the earliest
    assert runs.add(1.0, 4, 1) == 0  # a tie comes after: not strictly earlier
    assert runs.add(2.0, 5, 1) == 0
    assert runs._heap == [] and len(runs) == 3
    assert runs.runs() == [(1.0, 1, 2), (1.0, 4, 1), (2.0, 5, 1)]


def test_deadline_runs_within_one_tick_that_follow_on_make_one_run_due_at_the_tick_s_end():
    runs = DeadlineRuns()
    tick = TICK_SECONDS
    assert runs.add(1.0 + 0.1 * tick, 1, 2) == EARLIEST
    assert runs.add(1.0 + 0.6 * tick, 3, 1) == 0  # ids follow on, same tick: extends it
    runs.add(1.0 + 0.7 * tick, 7, 1)  # same tick, but ids do not follow on: a run of its own
    runs.add(1.0 + 1.2 * tick, 8, 1)  # follows on, the next tick
    held = runs.runs()
    assert [(first, count) for _, first, count in held] == [(1, 3), (7, 1), (8, 1)]
    assert held[0][0] == held[1][0] == pytest.approx(1.0 + tick)  # never before a deadline
    assert held[2][0] == pytest.approx(1.0 + 2 * tick)
    assert runs.pop_due(1.0 + 0.9 * tick) == []
    assert runs.pop_due(held[0][0]) == [(1, 3), (7, 1)]


def test_an_infinite_deadline_run_stays_infinite():
    runs = DeadlineRuns()
    runs.add(float("inf"), 1, 1)
    assert runs.next_due() == float("inf")


def test_deadline_runs_out_of_order_fall_back_to_the_heap_and_come_out_earliest_first():
    runs = DeadlineRuns()
    runs.add(5.0, 1, 1)
    assert runs.add(3.0, 2, 1) == EARLIEST  # earlier than the lane's front
    assert runs.add(4.0, 3, 1) == 0  # out of order, but not the earliest
    assert runs._heap and runs.next_due() == 3.0
    assert runs.pop_due(4.5) == [(2, 1), (3, 1)]
    assert runs.next_due() == 5.0
    assert runs.pop_due(10.0) == [(1, 1)]
    assert not runs and runs.next_due() is None and runs.pop_due(10.0) == []


def test_deadline_runs_report_over_limit_past_the_limit_set():
    runs = DeadlineRuns(limit=2)
    assert not runs.add(1.0, 1, 1) & OVER_LIMIT
    assert not runs.add(0.5, 2, 1) & OVER_LIMIT  # heap runs count too
    assert runs.add(2.0, 3, 1) & OVER_LIMIT
    runs.set_limit(4)
    assert not runs.add(3.0, 4, 1) & OVER_LIMIT
    assert runs.add(4.0, 5, 1) & OVER_LIMIT


def test_deadline_runs_keep_only_live_runs_in_order():
    runs = DeadlineRuns()
    for k, at in enumerate([1.0, 2.0, 3.0, 0.5, 4.0], start=1):
        runs.add(at, k, 1)
    runs.keep(lambda first, count: first % 2 == 0)
    assert runs.runs() == [(0.5, 4, 1), (2.0, 2, 1)]
    assert runs.pop_due(10.0) == [(4, 1), (2, 1)]


def test_rounding_to_the_tick_is_never_early_never_a_tick_late_and_idempotent():
    rng = random.Random(11)
    clocks = [rng.uniform(0, 1e6) for _ in range(20_000)] + [k * TICK_SECONDS for k in range(5000)]
    for deadline in clocks:
        rounded = round_up_to_tick(deadline)
        assert rounded >= deadline  # never early
        assert rounded - deadline < TICK_SECONDS * (1 + 1e-6)  # the earliest tick, not the next
        assert round_up_to_tick(rounded) == rounded  # rounding again changes nothing


def test_a_run_due_on_a_tick_keeps_that_deadline_and_a_run_continuing_it_extends_it():
    runs = DeadlineRuns()
    on_tick = 9 * TICK_SECONDS  # ceiling division made it 10 ticks
    runs.add(on_tick, 1, 2)
    runs.add(on_tick, 3, 1)
    assert runs.runs() == [(on_tick, 1, 3)]


def test_deadline_runs_hold_each_id_once_never_early_and_at_most_a_tick_late():
    # Calls of one request each, as queue_request() makes them: in order, a few us apart, now
    # and then out of order or with a gap in the ids (another call's requests had none).
    rng = random.Random(7)
    runs = DeadlineRuns(10**9)
    wanted: dict[int, float] = {}
    at, next_id = 1_000.0, 1
    for _ in range(20_000):
        at += rng.choice((2e-6, 5e-6, 3e-4, 1e-3))
        deadline = at - 0.01 if rng.random() < 0.02 else at
        next_id += rng.random() < 0.05
        wanted[next_id] = deadline
        runs.add(deadline, next_id, 1)
        next_id += 1
    held = {}
    for deadline, first, count in runs.runs():
        for request_id in range(first, first + count):
            assert request_id not in held
            held[request_id] = deadline
    assert held.keys() == wanted.keys()
    assert all(wanted[i] <= held[i] < wanted[i] + TICK_SECONDS * 1.000001 for i in held)
    assert len(runs) < len(wanted) / 2  # runs were extended, not one made per call
