"""The result cache (``cache=CacheConfig(...)``) on real Ray."""

from __future__ import annotations

import pydantic
import pytest

from raypw import CacheConfig, ProcessorService, PromiseSet
from tests.integration.processors import Recorder


def requests_logged(log) -> list[str]:
    return log.read_text().splitlines()


def test_an_equal_request_after_the_first_finished_is_answered_from_the_cache(
    make_service, tmp_path
):
    log = tmp_path / "log"
    service = make_service(
        Recorder,
        parallel_workers=2,
        processor_class_init_args=(str(log),),
        cache=CacheConfig(max_entries=100, ttl_seconds=3600),
    )
    first = service.queue_request("a").get_result(timeout=30)
    again = service.queue_request("a").get_result(timeout=30)
    assert again == first  # the same result: same process, same start time
    assert requests_logged(log) == ["a"]
    stats = service.stats()
    assert (stats.cache_hits, stats.cache_entries, stats.processed) == (1, 1, 1)
    assert stats.cache_bytes > 0


def test_errors_are_not_cached(make_service, tmp_path):
    log = tmp_path / "log"
    service = make_service(
        Recorder, parallel_workers=1, processor_class_init_args=(str(log),), cache=True
    )
    for _ in range(2):
        with pytest.raises(ValueError, match="cannot process fail"):
            service.queue_request("fail").get_result(timeout=30)
    assert requests_logged(log) == ["fail", "fail"]
    assert service.stats().cache_hits == 0


def test_every_program_attached_to_a_named_service_shares_its_cache(make_service, tmp_path):
    log = tmp_path / "log"
    owner = make_service(
        Recorder,
        parallel_workers=2,
        processor_class_init_args=(str(log),),
        name="cached",
        cache=CacheConfig(1000),
    )
    mine = owner.queue_requests([f"r{i}" for i in range(50)])
    PromiseSet(mine).wait_for_all(timeout=60)
    other = ProcessorService.connect("cached", processor_class=Recorder)
    try:
        theirs = other.queue_requests([f"r{i}" for i in range(60)])
        PromiseSet(theirs).wait_for_all(timeout=60)
        assert [p.get_result() for p in theirs[:50]] == [p.get_result() for p in mine]
        assert sorted(requests_logged(log)) == sorted(f"r{i}" for i in range(60))
        assert other.stats().cache_hits == 50
    finally:
        other.stop()


def test_without_a_cache_an_equal_request_after_the_first_runs_again(make_service, tmp_path):
    log = tmp_path / "log"
    service = make_service(Recorder, parallel_workers=1, processor_class_init_args=(str(log),))
    first = service.queue_request("a").get_result(timeout=30)
    again = service.queue_request("a").get_result(timeout=30)
    assert again["started"] > first["started"]
    assert requests_logged(log) == ["a", "a"]
    assert service.stats().cache_hits == 0


def test_a_bad_cache_setting_fails_at_the_constructor_naming_it():
    with pytest.raises(pydantic.ValidationError, match="max_entries"):
        ProcessorService(Recorder, parallel_workers=1, cache=CacheConfig(max_entries=0))
    with pytest.raises(pydantic.ValidationError, match="cache"):
        ProcessorService(Recorder, parallel_workers=1, cache=5)
