"""cluster.yaml is a valid Ray cluster-launcher config that installs what pyproject pins."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_own_schema(cluster):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(cluster))


def test_every_node_installs_the_pinned_versions_and_raypw(cluster):
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d for d in dependencies if "==" in d]  # the rest come with raypw's own install
    assert {p.split("==")[0] for p in pins} >= {"ray", "pydantic"}
    setup = " ".join(cluster["setup_commands"])
    for pin in pins:
        name, version = re.match(r"([a-z_-]+)==([\d.]+)$", pin).groups()
        assert re.search(rf"{name}(\[[a-z,]+\])?=={re.escape(version)}", setup), pin
    assert "pip install -e ~/raypw" in setup
    assert cluster["file_mounts"]["~/raypw"] == "."


def test_token_auth_on_every_node_and_dashboard_on_localhost(cluster):
    assert cluster["file_mounts"]["~/.ray/auth_token"]
    for commands in (cluster["head_start_ray_commands"], cluster["worker_start_ray_commands"]):
        start = [c for c in commands if "ray start" in c]
        assert start and all("RAY_AUTH_MODE=token" in c for c in start)
    head = " ".join(cluster["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head


def test_worker_nodes_autoscale_between_min_and_max(cluster):
    workers = [
        t
        for name, t in cluster["available_node_types"].items()
        if name != cluster["head_node_type"]
    ]
    assert workers and all(0 <= t["min_workers"] <= t["max_workers"] for t in workers)
    assert cluster["max_workers"] >= max(t["max_workers"] for t in workers)
