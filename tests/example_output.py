"""What ``python -m examples.example`` prints, and what its times must show."""

from __future__ import annotations

import re


def example_times(stdout: str) -> list[float]:
    """The seconds printed before each of the example's results, in the order printed."""
    return [float(t) for t in re.findall(r"^\s*([\d.]+) s  hola\d? processed\.$", stdout, re.M)]


def assert_two_by_two(times: list[float], seconds: float = 5.0) -> None:
    """Checks the times printed for 4 requests of ``seconds`` each on 2 workers.

    Each bound is a whole request away from what it rules out, so the load of the machine
    does not decide it. No result can come before one request's time, and no worker's second
    result before two: hola3 and hola4 coming at 2 x ``seconds`` or later says there were
    only two at a time. Had hola and hola2 run one after the other, hola2 could not come
    before 2 x ``seconds``; had hola3 and hola4, hola4 could not come before 3 x ``seconds``:
    so they came two by two.
    """
    assert len(times) == 4, times
    first, second, third, fourth = times
    assert seconds <= first <= second < 2 * seconds, times
    assert 2 * seconds <= third <= fourth < 3 * seconds, times
