"""The backlog's order: higher priority first, first in first out within one."""

from __future__ import annotations

import pytest

from raypw.backlog import Backlog


def drain(backlog: Backlog[str]) -> list[str]:
    taken = []
    while backlog:
        taken.append(backlog.popleft())
    return taken


def test_higher_priority_first_and_first_in_first_out_within_one():
    backlog: Backlog[str] = Backlog()
    backlog.append("low1")
    backlog.append("high1", 5)
    backlog.extend(["low2", "low3"])
    backlog.append("neg", -3)
    backlog.append("high2", 5)
    assert len(backlog) == 6 and backlog.top() == 5 and backlog.peek() == "high1"
    assert list(backlog) == ["high1", "high2", "low1", "low2", "low3", "neg"]
    assert drain(backlog) == ["high1", "high2", "low1", "low2", "low3", "neg"]
    assert backlog.top() is None and len(backlog) == 0


def test_work_that_comes_back_goes_ahead_of_its_own_priority_only():
    backlog: Backlog[str] = Backlog()
    backlog.extend(["a", "b"])
    backlog.append("h", 1)
    backlog.appendleft("back", 0)
    assert drain(backlog) == ["h", "back", "a", "b"]


def test_a_level_that_empties_and_comes_back_keeps_its_place():
    backlog: Backlog[str] = Backlog()
    backlog.append("x", 2)
    assert backlog.popleft() == "x"
    backlog.append("low", 0)
    backlog.append("y", 2)
    backlog.extend([], 7)  # an empty level is not left behind
    assert backlog.top() == 2 and drain(backlog) == ["y", "low"]


def test_an_empty_backlog_says_so():
    backlog: Backlog[str] = Backlog()
    with pytest.raises(IndexError):
        backlog.popleft()
    with pytest.raises(IndexError):
        backlog.peek()
    backlog.append("x", 1)
    backlog.clear()
    assert not backlog and backlog.top() is None
