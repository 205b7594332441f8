"""The autoscaling rule, without Ray: numbers in, a pool size out."""

from __future__ import annotations

import pytest

from raypw.autoscale import GROW_PAUSE_SECONDS, Autoscaler
from raypw.config import AutoscaleConfig, ServiceConfig


def scaler(**overrides) -> Autoscaler:
    fields = {"min_workers": 1, "max_workers": 8, "target_wait_seconds": 1.0, "idle_seconds": 10.0}
    return Autoscaler(AutoscaleConfig(**{**fields, **overrides}))


def test_work_that_would_wait_longer_than_the_target_grows_the_pool_to_bring_it_under():
    # 100 requests x 0.05 s = 5 s of work: on 2 workers 2.5 s of wait; 5 workers bring it to 1 s.
    target = scaler().target(workers=2, waiting=100, typical_seconds=0.05, idle_since=[], now=0)
    assert target == 5


def test_growth_stops_at_max_and_is_at_least_one_worker():
    assert (
        scaler().target(workers=2, waiting=10_000, typical_seconds=1.0, idle_since=[], now=0) == 8
    )
    # Just over the target: one more worker, even if the estimate rounds to the same count.
    assert scaler().target(workers=4, waiting=41, typical_seconds=0.1, idle_since=[], now=0) == 5


def test_work_within_the_target_keeps_the_pool():
    assert scaler().target(workers=3, waiting=20, typical_seconds=0.1, idle_since=[], now=0) == 3


def test_nothing_is_decided_before_a_request_was_timed():
    assert scaler().target(workers=2, waiting=500, typical_seconds=None, idle_since=[], now=0) == 2


def test_idle_workers_retire_after_idle_seconds_but_never_below_min():
    rule = scaler(min_workers=2)
    assert rule.target(workers=5, waiting=0, typical_seconds=0.1, idle_since=[0, 0, 5], now=9) == 5
    assert rule.target(workers=5, waiting=0, typical_seconds=0.1, idle_since=[0, 0, 5], now=10) == 3
    assert rule.target(workers=5, waiting=0, typical_seconds=0.1, idle_since=[0] * 5, now=99) == 2


def test_no_worker_retires_while_work_waits():
    rule = scaler()
    assert rule.target(workers=4, waiting=1, typical_seconds=0.1, idle_since=[0, 0], now=99) == 4


def test_a_pool_below_min_after_deaths_is_brought_back():
    assert (
        scaler(min_workers=3).target(
            workers=1, waiting=0, typical_seconds=None, idle_since=[], now=0
        )
        == 3
    )


def test_a_failed_grow_pauses_growth_for_a_while():
    rule = scaler()
    rule.grow_failed(now=100)
    args = {"workers": 2, "waiting": 1000, "typical_seconds": 0.1, "idle_since": []}
    assert rule.target(**args, now=100 + GROW_PAUSE_SECONDS / 2) == 2
    assert rule.target(**args, now=100 + GROW_PAUSE_SECONDS) == 8


def test_a_range_of_workers_means_autoscale_from_min():
    config = ServiceConfig.model_validate({"parallel_workers": (2, 6)})
    assert config.parallel_workers == 2
    assert config.autoscale == AutoscaleConfig(min_workers=2, max_workers=6)
    config = ServiceConfig.model_validate({"autoscale": {"min_workers": 3, "max_workers": 4}})
    assert config.parallel_workers == 3


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"parallel_workers": (4, 2)}, "max_workers"),
        ({"parallel_workers": (0, 2)}, "parallel_workers"),
        ({"parallel_workers": (1.5, 2)}, "parallel_workers"),
        ({"parallel_workers": 5, "autoscale": {"min_workers": 1, "max_workers": 3}}, "range"),
        ({"parallel_workers": (1, 2), "autoscale": {"min_workers": 1, "max_workers": 2}}, "both"),
        ({"autoscale": {"min_workers": 1, "max_workers": 2, "idle_seconds": 0}}, "idle_seconds"),
    ],
)
def test_a_bad_autoscale_setting_is_refused_naming_it(fields, named):
    with pytest.raises(ValueError, match=named):
        ServiceConfig.model_validate(fields)


def test_processor_service_takes_a_range_or_an_autoscale_config():
    from raypw import ProcessorService
    from tests.integration.processors import Recorder

    service = ProcessorService(Recorder, parallel_workers=(2, 5))
    assert service.config.parallel_workers == 2
    assert service.config.autoscale == AutoscaleConfig(min_workers=2, max_workers=5)
    service = ProcessorService(Recorder, autoscale={"min_workers": 3, "max_workers": 4})
    assert (service.config.parallel_workers, service.config.autoscale.max_workers) == (3, 4)
    assert ProcessorService(Recorder).config.parallel_workers == 10
