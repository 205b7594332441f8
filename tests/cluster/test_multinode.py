"""A real two-node Ray cluster on this machine: separate node processes, loopback, token auth.

The head is started with ``ray start --head``; the second node joins from its own process.
Separate driver programs attach by address (``RAY_ADDRESS``). The fixture stops only this
cluster's own processes, found by pid, even when a test fails.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.cluster.nodes import LoopbackCluster
from tests.example_output import assert_two_by_two, example_times
from tests.integration.processors import stamps

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster():
    started = LoopbackCluster().start()
    try:
        yield started
    finally:
        started.stop()
        assert started.pids() == []


def driver(cluster: LoopbackCluster, *args: str, wait: bool = True):
    """Runs a separate driver program against the cluster, by address."""
    env = {**cluster.env, "RAY_ADDRESS": cluster.address}
    command = [sys.executable, "-m", *args]
    if not wait:
        return subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_cluster_has_two_nodes_and_listens_on_loopback_only(cluster):
    listening = cluster.listening_addresses()
    assert listening and all(a.startswith("127.0.0.1:") for a in listening), listening


def test_examples_run_against_the_cluster_by_address(cluster):
    out = driver(cluster, "examples.example").stdout
    times = example_times(out)
    assert len(times) == 4, out
    assert_two_by_two(times)
    out = driver(cluster, "examples.select").stdout
    assert len(re.findall(r"Result: hola\d? processed", out)) == 4


def test_workers_land_on_both_nodes(cluster):
    report = json.loads(driver(cluster, "tests.cluster.drivers", "spread").stdout.splitlines()[-1])
    assert len(report["alive"]) == 2
    assert report["worker_nodes"] == report["alive"]  # checked, not assumed


def _dedup_run(cluster: LoopbackCluster, folder: Path, owner_mode: str, client_mode: str):
    owner = driver(cluster, "tests.cluster.drivers", "owner", str(folder), owner_mode, wait=False)
    deadline = time.monotonic() + 120
    while not (folder / "owner-queued").exists():
        assert owner.poll() is None or owner.returncode == 0, owner.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the owner never queued"
        time.sleep(0.1)
    if owner_mode == "detached":
        owner.wait(timeout=60)  # the program that started the service is gone
        assert owner.returncode == 0, owner.stderr.read()[-3000:]
    driver(cluster, "tests.cluster.drivers", "client", str(folder), client_mode)
    if owner_mode != "detached":
        owner.wait(timeout=120)
        assert owner.returncode == 0, owner.stderr.read()[-3000:]


def test_two_programs_share_a_named_service_with_cross_client_dedup(cluster, tmp_path):
    _dedup_run(cluster, tmp_path, "attached", "detach")
    owner_results = json.loads((tmp_path / "owner-results.json").read_text())
    client_results = json.loads((tmp_path / "client-results.json").read_text())
    assert owner_results == [f"v{i} processed." for i in range(100)]
    assert client_results == [f"v{i} processed." for i in range(50, 150)]
    counts = Counter(request for request, _, _ in stamps(tmp_path / "log"))
    # v50..v99 were queued by both programs while pending: processed once, by the service.
    assert counts == Counter({f"v{i}": 1 for i in range(150)})


def test_detached_service_outlives_its_starter_until_stopped(cluster, tmp_path):
    _dedup_run(cluster, tmp_path, "detached", "shutdown")
    client_results = json.loads((tmp_path / "client-results.json").read_text())
    assert client_results == [f"v{i} processed." for i in range(50, 150)]
    counts = Counter(request for request, _, _ in stamps(tmp_path / "log"))
    assert counts == Counter({f"v{i}": 1 for i in range(150)})
    # The client shut it down: nobody can attach any more.
    probe = driver(cluster, "tests.cluster.drivers", "client", str(tmp_path), "detach", wait=False)
    probe.wait(timeout=120)
    assert probe.returncode != 0 and "ServiceNotFoundError" in probe.stderr.read()


def test_cluster_refuses_a_driver_without_the_token(cluster):
    env = {k: v for k, v in cluster.env.items() if k != "RAY_AUTH_TOKEN"}
    env.update(RAY_ADDRESS=cluster.address, RAY_AUTH_MODE="token", HOME=str(ROOT / "no-home"))
    probe = subprocess.run(
        [sys.executable, "-c", "import ray; ray.init(); print('connected')"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode != 0 and "connected" not in probe.stdout


def test_cluster_client_example_starts_uses_and_shuts_down_a_named_service(cluster):
    out = driver(cluster, "examples.cluster_client", "thumbs2", "--start", "--shutdown").stdout
    assert "attached to 'thumbs2': 4 workers" in out
    assert len(re.findall(r"photo\d\.jpg processed\.", out)) == 8
    gone = driver(cluster, "examples.cluster_client", "thumbs2", wait=False)
    gone.wait(timeout=120)
    assert gone.returncode != 0 and "ServiceNotFoundError" in gone.stderr.read()
