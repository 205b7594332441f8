"""Behaviour 2: equal pending requests share one promise and are processed once."""

from __future__ import annotations

import pytest

from tests.integration.conftest import processed
from tests.integration.processors import Recorder


def test_equal_pending_requests_share_one_promise_and_run_once(make_service, tmp_path):
    log, gate = tmp_path / "log", tmp_path / "gate"
    # Every request waits for the gate: all stay pending while the equal ones are queued.
    service = make_service(
        Recorder,
        parallel_workers=2,
        processor_class_init_args={"log_path": str(log), "gate": str(gate)},
    )
    first = service.queue_request("same")
    second = service.queue_request("same")
    others = service.queue_requests(["same", "other", "same"])
    assert second is first
    assert others[0] is first and others[2] is first and others[1] is not first
    gate.touch()
    assert first.get_result(timeout=60)["request"] == "same"
    others[1].get_result(timeout=60)
    assert sorted(processed(log)) == ["other", "same"]
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


def test_key_function_deduplicates_unhashable_requests(make_service, tmp_path):
    log, gate = tmp_path / "log", tmp_path / "gate"
    service = make_service(
        Recorder,
        parallel_workers=1,
        processor_class_init_args={"log_path": str(log), "gate": str(gate)},
        key=lambda request: request["name"],
    )
    a = service.queue_request({"name": "k1", "note": "first"})  # pending until the gate opens
    b = service.queue_request({"name": "k1", "note": "second"})
    c = service.queue_request({"name": "k2"})
    assert a is b and c is not a
    gate.touch()
    assert a.get_result(timeout=60)["request"]["note"] == "first"
    c.get_result(timeout=60)
    assert len(processed(log)) == 2
