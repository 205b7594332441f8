"""The service's metrics without Ray's agent: fake metrics record what would be exported."""

from __future__ import annotations

import dataclasses

import pytest

from raypw.metrics import METRICS, Counts, MetricSpec, ServiceMetrics, ray_metric, service_tags


class FakeMetric:
    """Records the calls a ``ray.util.metrics`` object would get."""

    def __init__(self, spec: MetricSpec, tags) -> None:
        self.spec = spec
        self.tags = dict(tags)
        self.calls: list[tuple[str, float]] = []

    def set(self, value: float) -> None:
        self.calls.append(("set", value))

    def inc(self, value: float) -> None:
        self.calls.append(("inc", value))

    def observe(self, value: float) -> None:
        self.calls.append(("observe", value))


def fake_metrics(tags=None) -> tuple[ServiceMetrics, dict[str, FakeMetric]]:
    made: dict[str, FakeMetric] = {}

    def factory(spec: MetricSpec, tags) -> FakeMetric:
        made[spec.name] = FakeMetric(spec, tags)
        return made[spec.name]

    return ServiceMetrics(tags or {"service": "s", "processor": "p.P"}, factory), made


def counts(**changes: int) -> Counts:
    zero = dict.fromkeys((f.name for f in dataclasses.fields(Counts)), 0)
    return Counts(**{**zero, **changes})


def test_every_metric_is_named_raypw_and_once():
    names = [spec.name for spec in METRICS]
    assert all(name.startswith("raypw_") for name in names)
    assert len(set(names)) == len(names)


def test_the_metrics_cover_queued_running_processed_failed_workers_and_latency():
    kinds = {spec.name: spec.kind for spec in METRICS}
    assert kinds["raypw_requests_queued"] == kinds["raypw_requests_running"] == "gauge"
    assert kinds["raypw_workers"] == kinds["raypw_workers_alive"] == "gauge"
    assert kinds["raypw_requests_processed"] == kinds["raypw_requests_failed"] == "counter"
    assert kinds["raypw_request_latency_seconds"] == "histogram"


def test_histograms_have_increasing_bounds_and_nothing_else_has_any():
    for spec in METRICS:
        if spec.kind == "histogram":
            assert list(spec.boundaries) == sorted(set(spec.boundaries)) and spec.boundaries
            assert spec.boundaries[0] > 0
        else:
            assert spec.boundaries == ()


def test_every_series_carries_the_service_tags():
    tags = {"service": "thumbnails", "processor": "app.Thumbnailer"}
    _, made = fake_metrics(tags)
    assert set(made) == {spec.name for spec in METRICS}
    assert all(metric.tags == tags for metric in made.values())


def test_update_sets_each_gauge_to_its_count():
    metrics, made = fake_metrics()
    metrics.update(counts(queued=7, running=3, workers=2, workers_alive=1))
    metrics.update(counts(queued=0, running=1, workers=2, workers_alive=2))
    assert made["raypw_requests_queued"].calls == [("set", 7), ("set", 0)]
    assert made["raypw_requests_running"].calls == [("set", 3), ("set", 1)]
    assert made["raypw_workers"].calls == [("set", 2), ("set", 2)]
    assert made["raypw_workers_alive"].calls == [("set", 1), ("set", 2)]


def test_update_adds_to_each_counter_only_what_its_count_grew_by():
    metrics, made = fake_metrics()
    metrics.update(counts(processed=10, failed=1))
    metrics.update(counts(processed=10, failed=1))  # nothing new: no call at all
    metrics.update(counts(processed=25, failed=4, timed_out=2, deduplicated=5))
    assert made["raypw_requests_processed"].calls == [("inc", 10), ("inc", 15)]
    assert made["raypw_requests_failed"].calls == [("inc", 1), ("inc", 3)]
    assert made["raypw_requests_timed_out"].calls == [("inc", 2)]
    assert made["raypw_requests_deduplicated"].calls == [("inc", 5)]
    assert made["raypw_worker_restarts"].calls == []


def test_a_count_found_lower_adds_nothing_and_is_the_base_from_then_on():
    metrics, made = fake_metrics()
    metrics.update(counts(processed=10))
    metrics.update(counts(processed=4))
    metrics.update(counts(processed=6))
    assert made["raypw_requests_processed"].calls == [("inc", 10), ("inc", 2)]


def test_a_chunk_is_one_observation_of_its_mean_process_time_and_of_its_latency():
    metrics, made = fake_metrics()
    metrics.chunk(requests=4, seconds=0.02, waited=1.5)
    assert made["raypw_request_process_seconds"].calls == [("observe", pytest.approx(0.005))]
    assert made["raypw_request_latency_seconds"].calls == [("observe", 1.5)]


def test_a_chunk_of_unknown_latency_or_no_requests_observes_only_what_it_knows():
    metrics, made = fake_metrics()
    metrics.chunk(requests=2, seconds=0.5, waited=None)
    metrics.chunk(requests=0, seconds=0.0, waited=0.25)
    assert made["raypw_request_process_seconds"].calls == [("observe", 0.25)]
    assert made["raypw_request_latency_seconds"].calls == [("observe", 0.25)]


def test_a_service_is_tagged_with_its_name_or_its_creator_when_unnamed():
    assert service_tags("thumbs", "0123456789abcdef", "app.P") == {
        "service": "thumbs",
        "processor": "app.P",
    }
    assert service_tags(None, "0123456789abcdef", "app.P")["service"] == "unnamed-01234567"


def test_ray_metric_builds_rays_own_metric_of_each_kind_with_the_default_tags():
    from ray.util import metrics

    tags = {"service": "s", "processor": "p"}
    kinds = {"gauge": metrics.Gauge, "counter": metrics.Counter, "histogram": metrics.Histogram}
    for spec in METRICS:
        metric = ray_metric(spec, tags)
        assert isinstance(metric, kinds[spec.kind])
        info = metric.info
        assert info["name"] == spec.name and info["default_tags"] == tags
        if spec.kind == "histogram":
            assert info["boundaries"] == list(spec.boundaries)


def test_a_failing_observation_never_reaches_the_outcomes_path_and_is_logged_once(caplog):
    metrics, made = fake_metrics()

    def broken(value: float) -> None:
        raise ValueError("no agent")

    made["raypw_request_process_seconds"].observe = broken  # type: ignore[method-assign]
    with caplog.at_level("ERROR", logger="raypw"):
        metrics.chunk(requests=1, seconds=0.1, waited=0.2)
        metrics.chunk(requests=1, seconds=0.1, waited=0.2)
    assert len([r for r in caplog.records if "observing" in r.getMessage()]) == 1
