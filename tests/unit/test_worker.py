"""The worker's batch loop, run as plain Python (no Ray)."""

import threading
import time

import pytest

from raypw import Processor
from raypw.worker import _Worker


class Doubler(Processor):
    def __init__(self, offset=0):
        self.offset = offset
        self.seen = []

    def process(self, request):
        self.seen.append(request)
        if request < 0:
            raise ValueError(f"negative: {request}")
        return request * 2 + self.offset


class Vectorised(Processor):
    def process_batch(self, requests):
        return [r.upper() for r in requests]


class Slow(Processor):
    def process(self, request):
        time.sleep(0.05)
        return request


def test_batch_results_and_per_item_errors():
    worker = _Worker(Doubler, (1,), {})
    (seconds, skipped), (results, errors, skipped_too) = worker.process_batch(0, [1, -2, 3])
    assert results == [3, None, 7]
    assert list(errors) == [1]
    assert skipped == [] and skipped_too is None
    with pytest.raises(ValueError, match="negative: -2") as caught:
        raise errors[1].as_instanceof_cause()
    assert "Doubler.process" in str(caught.value)
    assert seconds >= 0


def test_skip_before_batch_arrives_is_applied():
    worker = _Worker(Doubler, (), {})
    assert worker.skip(5, [0, 2]) == []
    (_, skipped), (results, errors, skipped_too) = worker.process_batch(5, [1, 2, 3])
    assert results == [None, 4, None]
    assert skipped == skipped_too == [0, 2]
    assert worker._processor.seen == [2]
    assert errors is None


def test_skip_after_batch_finished_reports_all_late():
    worker = _Worker(Doubler, (), {})
    worker.process_batch(1, [1])
    assert worker.skip(1, [0]) == [0]


def test_skip_during_batch_splits_started_from_not_started():
    worker = _Worker(Slow, (), {})
    outcome = {}
    thread = threading.Thread(
        target=lambda: outcome.update(r=worker.process_batch(2, list(range(10))))
    )
    thread.start()
    time.sleep(0.12)  # items 0..2 have started
    late = worker.skip(2, [1, 8, 9])
    thread.join()
    (_, skipped), (results, _, _) = outcome["r"]
    assert late == [1]
    assert results[8] is None and results[9] is None and results[7] == 7
    assert skipped == [8, 9]


def test_vectorised_process_batch_gets_the_unskipped_requests():
    worker = _Worker(Vectorised, (), {})
    worker.skip(0, [1])
    _, (results, errors, skipped) = worker.process_batch(0, ["a", "b", "c"])
    assert results == ["A", None, "C"] and errors is None and skipped == [1]


def test_vectorised_error_fails_the_whole_batch():
    class Bad(Processor):
        def process_batch(self, requests):
            return []

    worker = _Worker(Bad, (), {})
    _, (results, errors, _) = worker.process_batch(0, ["a", "b"])
    assert set(errors) == {0, 1}
    with pytest.raises(ValueError, match="returned 0 results for 2"):
        raise errors[0].as_instanceof_cause()


def test_default_process_batch_calls_process_per_item():
    assert Doubler().process_batch([1, 2]) == [2, 4]
    with pytest.raises(NotImplementedError, match="process"):
        Processor().process(1)
