"""The service's metrics as Ray users look for them: scraped from Ray's Prometheus endpoint."""

from __future__ import annotations

import re
import urllib.request

import ray

from raypw import PromiseSet
from tests.integration.conftest import wait_until
from tests.integration.processors import Echo


def scrape() -> str:
    """The text of this node's Prometheus endpoint (Ray's metrics agent), on loopback."""
    port = ray.nodes()[0]["MetricsExportPort"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return answer.read().decode()


def series(text: str, name: str, service: str) -> float | None:
    """The value of metric ``name`` tagged with ``service``, or None if absent."""
    for line in text.splitlines():
        if line.startswith(name + "{") and f'service="{service}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_the_counts_and_timings_appear_on_rays_prometheus_endpoint_under_the_service_name(
    make_service,
):
    service = make_service(Echo, parallel_workers=2, name="metered", cache=True)
    PromiseSet(service.queue_requests([f"r{i}" for i in range(40)])).wait_for_all(timeout=60)
    assert service.queue_request("r0").get_result(timeout=30) == "r0 processed."  # a cache hit
    seen: dict[str, float | None] = {}

    def exported() -> bool:
        text = scrape()
        for name in (
            "ray_raypw_requests_processed_total",
            "ray_raypw_cache_hits_total",
            "ray_raypw_workers",
            "ray_raypw_request_latency_seconds_count",
        ):
            seen[name] = series(text, name, "metered")
        return (
            seen["ray_raypw_requests_processed_total"] == 40
            and seen["ray_raypw_cache_hits_total"] == 1
        )

    # Ray's agent takes what the Coordinator records every few seconds (10 s by default).
    wait_until(exported, "the metered service's counts were exported", timeout=90)
    assert seen["ray_raypw_workers"] == 2
    latency = seen["ray_raypw_request_latency_seconds_count"]
    assert latency is not None and latency >= 1  # one observation per outcome chunk
    assert re.search(
        r'ray_raypw_workers\{[^}]*processor="tests\.integration\.processors\.Echo"', scrape()
    )
