"""The ``raypw`` console command, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ray

from tests.example_output import assert_two_by_two, example_times
from tests.integration.processors import Recorder

ROOT = Path(__file__).resolve().parents[2]
RAYPW = str(Path(sys.executable).with_name("raypw"))


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [RAYPW, *args], capture_output=True, text=True, timeout=180, env=environment, cwd=ROOT
    )


def test_python_m_raypw_demo_is_raypw_demo():
    address = ray.get_runtime_context().gcs_address
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "token"}
    result = subprocess.run(
        [sys.executable, "-m", "raypw.demo", "--seconds", "0.5", "--address", address],
        capture_output=True,
        text=True,
        timeout=180,
        env=environment,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    processed = [line.split()[2] for line in result.stdout.splitlines() if "processed." in line]
    assert processed == ["hola", "hola2", "hola3", "hola4"]


def test_status_lists_named_services_with_their_stats(make_service):
    service = make_service(Recorder, parallel_workers=2, name="listed")
    service.queue_requests([f"s{i}" for i in range(30)])[-1].get_result(timeout=60)
    address = ray.get_runtime_context().gcs_address
    result = run("status", "--address", address, RAY_AUTH_MODE="token")
    assert result.returncode == 0, result.stderr[-3000:]
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "name",
        "processor",
        "workers",
        "queued",
        "running",
        "processed",
        "req/s",
        "clients",
        "detached",
    ]
    (row,) = [r.split() for r in rows if r.startswith("listed ")]
    assert row[1] == "tests.integration.processors.Recorder"
    assert row[2] == "2/2" and int(row[5]) >= 30 and row[8] == "False"


def test_status_without_a_cluster_says_how_to_get_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run(
        [RAYPW, "status", "--address", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "ray start --head" in result.stderr


def test_demo_runs_the_quick_start_example():
    address = ray.get_runtime_context().gcs_address
    # 3 s per request: each bound of assert_two_by_two is 3 s away from what it rules out.
    result = run("demo", "--seconds", "3", "--address", address, RAY_AUTH_MODE="token")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line.split() for line in result.stdout.splitlines() if "processed." in line]
    assert [line[2] for line in lines] == ["hola", "hola2", "hola3", "hola4"]
    assert_two_by_two(example_times(result.stdout), seconds=3.0)
