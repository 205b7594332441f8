"""What ``python -m examples.example`` prints, and what its times must show."""

from __future__ import annotations

import re


def example_times(stdout: str) -> list[float]:
    """The seconds printed before each of the example's results, in the order printed."""
    return [float(t) for t in re.findall(r"^\s*([\d.]+) s  hola\d? processed\.$", stdout, re.M)]


def assert_two_by_two(times: list[float]) -> None:
    """Checks the times the example printed for its 4 x sleep(5) on 2 workers.

    Each bound is a whole request (5 s) away from what it rules out, so the load of the
    machine does not decide it. No result can come before 5 s, and no worker's second
    result before 10 s: hola3 and hola4 coming at 10 s or later says there were only two at
    a time. Had hola and hola2 run one after the other, hola2 could not come before 10 s;
    had hola3 and hola4, hola4 could not come before 15 s: so they came two by two.
    """
    assert len(times) == 4, times
    first, second, third, fourth = times
    assert 5.0 <= first <= second < 10.0, times
    assert 10.0 <= third <= fourth < 15.0, times
