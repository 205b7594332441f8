"""Behaviour 2: equal pending requests share one promise and are processed once."""

from __future__ import annotations

import pytest

from tests.integration.conftest import processed
from tests.integration.processors import Recorder


def test_equal_pending_requests_share_one_promise_and_run_once(make_service, log_file):
    service = make_service(Recorder, parallel_workers=2, processor_class_init_args=(str(log_file),))
    first = service.queue_request("same:0.5")
    second = service.queue_request("same:0.5")
    others = service.queue_requests(["same:0.5", "other:0.5", "same:0.5"])
    assert second is first
    assert others[0] is first and others[2] is first and others[1] is not first
    assert first.get_result(timeout=30)["request"] == "same:0.5"
    others[1].get_result(timeout=30)
    assert sorted(processed(log_file)) == ["other:0.5", "same:0.5"]
    assert service.stats().deduplicated == 3


def test_equal_request_after_it_finished_is_processed_again(make_service, log_file):
    service = make_service(Recorder, parallel_workers=1, processor_class_init_args=(str(log_file),))
    first = service.queue_request("again")
    first.get_result(timeout=30)
    second = service.queue_request("again")
    assert second is not first
    second.get_result(timeout=30)
    assert processed(log_file) == ["again", "again"]


def test_unhashable_request_raises_type_error_naming_the_fix(make_service):
    service = make_service(Recorder, parallel_workers=1)
    with pytest.raises(TypeError, match="key="):
        service.queue_request({"id": 1})
    # The service goes on serving.
    assert service.queue_request("fine").get_result(timeout=30)["request"] == "fine"


def test_key_function_deduplicates_unhashable_requests(make_service, log_file):
    service = make_service(
        Recorder,
        parallel_workers=1,
        processor_class_init_args=(str(log_file),),
        key=lambda request: request["name"],
    )
    a = service.queue_request({"name": "k1", "seconds": 0.3, "note": "first"})
    b = service.queue_request({"name": "k1", "seconds": 0.3, "note": "second"})
    c = service.queue_request({"name": "k2"})
    assert a is b and c is not a
    assert a.get_result(timeout=30)["request"]["note"] == "first"
    c.get_result(timeout=30)
    assert len(processed(log_file)) == 2
