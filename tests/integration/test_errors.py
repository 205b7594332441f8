"""Behaviour 6: an exception in process() reaches only its own promise."""

from __future__ import annotations

import errno
import os

import pytest

from raypw import PromiseSet, RemoteError
from tests.integration.processors import Awkward, Recorder


def test_process_error_is_reraised_as_its_class_with_remote_traceback(make_service):
    service = make_service(Recorder, parallel_workers=2)
    promises = service.queue_requests(["ok1", "fail:0", "ok2", "fail:1", "ok3"])
    PromiseSet(promises).wait_for_all(timeout=30)
    with pytest.raises(ValueError, match="cannot process fail:0") as caught:
        promises[1].get_result()
    text = str(caught.value)
    assert "Recorder.process()" in text  # where it ran
    assert 'processors.py", line' in text and "in process" in text  # the remote frames
    assert 'raise ValueError(f"cannot process {request}")' in text
    with pytest.raises(ValueError):
        promises[3].get_result()
    assert [promises[i].get_result()["request"] for i in (0, 2, 4)] == ["ok1", "ok2", "ok3"]


def test_worker_keeps_serving_after_errors(make_service):
    service = make_service(Recorder, parallel_workers=1)
    failed = service.queue_request("fail")
    with pytest.raises(ValueError):
        failed.get_result(timeout=30)
    after = service.queue_request("after").get_result(timeout=30)
    assert after["pid"] == service.worker_pids[0]
    assert after["built"] == 1


def test_sys_exit_or_keyboard_interrupt_in_process_fails_only_its_request_on_both_paths(
    make_service,
):
    service = make_service(Recorder, parallel_workers=1)
    pid = service.worker_pids[0]
    # A lone request on an idle pool (the fast path).
    alone = service.queue_request("exit")
    with pytest.raises(RemoteError, match="SystemExit") as caught:
        alone.get_result(timeout=60)
    assert caught.value.error_type == "builtins.SystemExit"
    # The same among others, in batches.
    names = [f"ok{i}" for i in range(40)]
    names[10], names[30] = "exit:0.01", "interrupt"
    promises = service.queue_requests(names)
    PromiseSet(promises).wait_for_all(timeout=60)
    for index, kind in ((10, "builtins.SystemExit"), (30, "builtins.KeyboardInterrupt")):
        with pytest.raises(RemoteError) as caught:
            promises[index].get_result()
        assert caught.value.error_type == kind and "Recorder.process" in str(caught.value)
    others = [p.get_result() for i, p in enumerate(promises) if i not in (10, 30)]
    assert {(r["pid"], r["built"]) for r in others} == {(pid, 1)}  # one worker, never rebuilt
    stats = service.stats()
    assert stats.worker_restarts == 0 and stats.failed == 3 and stats.done == 38


def test_an_os_error_keeps_its_errno_and_file_name_on_both_paths(make_service, tmp_path):
    service = make_service(Awkward, parallel_workers=1)
    missing = str(tmp_path / "missing.yaml")
    alone = service.queue_request(f"open:{missing}")  # the fast path
    batch = service.queue_requests(["a", f"open:{missing}#2", "b"])
    PromiseSet([alone, *batch]).wait_for_all(timeout=60)
    for promise in (alone, batch[1]):
        with pytest.raises(FileNotFoundError) as caught:
            promise.get_result()
        assert caught.value.errno == errno.ENOENT
        assert caught.value.filename.startswith(missing)
        assert caught.value.strerror == os.strerror(errno.ENOENT)
