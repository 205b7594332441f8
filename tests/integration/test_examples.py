"""The parallel-workers examples run unchanged and print what their README promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from examples import (
    abort,
    callbacks_multi_thread,
    callbacks_single_thread,
    deadline,
    million,
    select,
)
from tests.example_output import assert_two_by_two, example_times

ROOT = Path(__file__).resolve().parents[2]


def test_example_module_prints_two_by_two_from_a_fresh_process():
    """The README's quick start: its own Ray, 4 x sleep(5) on 2 workers."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run(
        [sys.executable, "-m", "examples.example"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    times = example_times(result.stdout)
    assert len(times) == 4, result.stdout
    assert_two_by_two(times)


def test_select_example(capsys):
    select.main()
    lines = [line for line in capsys.readouterr().out.splitlines() if "Result:" in line]
    assert len(lines) == 4
    times = [float(line.split()[0]) for line in lines]
    assert times == sorted(times)


@pytest.mark.parametrize("example", [callbacks_single_thread, callbacks_multi_thread])
def test_callback_examples(example, capsys):
    example.main()
    out = capsys.readouterr().out
    assert sorted(re.findall(r"hola\d processed\.", out)) == [
        f"hola{i} processed." for i in range(1, 5)
    ]
    assert "4 results collected" in out


def test_abort_example(capsys):
    abort.main()
    out = capsys.readouterr().out
    assert "abort hola3 (queued): True" in out and "abort hola1 (running): True" in out
    assert "hola3 processed." not in out and "hola1 processed." not in out
    assert "hola2 processed." in out and "hola4 processed." in out


def test_million_example_runs_small(capsys):
    million.main(20_000)
    assert "All 20,000 requests processed" in capsys.readouterr().out


def test_deadline_example(capsys):
    deadline.main()
    out = capsys.readouterr().out
    assert "timed out: 'stuck' did not finish within its timeout of 2 s" in out
    assert sorted(re.findall(r"hola\d processed\.", out)) == [
        f"hola{i} processed." for i in range(1, 4)
    ]
    assert "worker restarts: 1" in out
