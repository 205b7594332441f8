"""examples/compat.py: a parallel-workers program that prints None for an aborted request,
lets Ctrl-C stop it quietly, and whose workers' printed lines all reach the terminal."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import ray

from examples import compat

ROOT = Path(__file__).resolve().parents[2]


def test_example_prints_none_for_the_aborted_request(capsys):
    compat.main(count=6, pause=0.1)
    # Lines the workers print come in between: "(_Worker pid=...) hola1 taken by a worker".
    out = capsys.readouterr().out
    mine = [line for line in out.splitlines() if "taken by a worker" not in line]
    results = mine[mine.index("Aborted hola3") + 1 :][:4]
    assert results == [
        "Hola1, nice to meet you.",
        "Hola2, nice to meet you.",
        "None",
        "Hola4, nice to meet you.",
    ]
    assert "Done: 6 answered, 0 aborted" in out


def test_ctrl_c_stops_the_example_quietly_and_every_printed_line_arrives():
    # A second program on the session's Ray: it connects instead of starting its own.
    env = dict(os.environ, RAY_ADDRESS=ray.get_runtime_context().gcs_address)
    env.pop("RAY_DEDUP_LOGS", None)
    example = subprocess.Popen(
        [sys.executable, "-m", "examples.compat", "--count", "300", "--pause", "0.05"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        for line in example.stdout:  # wait until part 2 has delivered results
            lines.append(line)
            if line.startswith("Bonjour"):
                break
        example.send_signal(signal.SIGINT)
        rest, err = example.communicate(timeout=120)
    finally:
        if example.poll() is None:
            example.kill()
    out = "".join(lines) + rest
    assert example.returncode == 0, err
    assert "Traceback" not in err and len(err) < 5000, err  # Ray's own start-up notes only
    done = re.search(r"Done: (\d+) answered, (\d+) aborted", out)
    assert done is not None, out
    answered, aborted = int(done[1]), int(done[2])
    assert answered + aborted == 300 and aborted > 0
    # Every request a worker took printed a line, and each line reached this terminal:
    # Ray would fold lines differing only in numbers, and drop the last ones at exit.
    taken = re.findall(r"\b(bonjour\d+) taken by a worker$", out, re.M)
    assert len(taken) == len(set(taken)) == answered
