"""The worker's batch loop, run as plain Python (no Ray)."""

import pickle
import threading

import pytest

from raypw import Processor
from raypw.errors import RemoteError, TransferError
from raypw.protocol import Pickled, WorkBatch, dump, load
from raypw.worker import _Worker
from tests.integration.processors import Awkward


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


class Gated(Processor):
    """Each request waits for its own event, so a test decides when it finishes."""

    def __init__(self, started, gates):
        self.started = started
        self.gates = gates

    def process(self, request):
        self.started[request].set()
        self.gates[request].wait(10)
        return request


class Unloadable:
    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise RuntimeError("refuses to be rebuilt")


def stream(worker, batch):
    """Runs a batch as the Ray actor would (run on its thread, outcomes on another); returns
    an iterator over its chunks."""
    thread = threading.Thread(target=worker.run, args=(batch,), daemon=True)
    thread.start()
    while True:
        chunk = worker.outcomes(batch.batch_id)
        yield chunk
        if chunk.final:
            thread.join(10)
            return


def run(worker, batch_id, requests):
    """All chunks of a batch, and its outcome per position (value or error)."""
    chunks = list(stream(worker, WorkBatch(batch_id, [dump(r) for r in requests])))
    outcomes = {}
    for chunk in chunks:
        for index, position in enumerate(chunk.positions):
            if chunk.errors and index in chunk.errors:
                outcomes[position] = load(chunk.errors[index])
            else:
                outcomes[position] = load(chunk.results[index])
    return chunks, outcomes


def test_results_and_per_item_errors():
    chunks, outcomes = run(_Worker(Doubler, (1,), {}), 0, [1, -2, 3])
    assert outcomes[0] == 3 and outcomes[2] == 7
    with pytest.raises(ValueError, match="negative: -2") as caught:
        raise outcomes[1].as_instanceof_cause()
    assert "Doubler.process" in str(caught.value)
    assert chunks[-1].final and chunks[-1].skipped == ()


def test_a_result_leaves_in_a_chunk_while_a_slow_request_behind_it_runs():
    started = {r: threading.Event() for r in "abc"}
    gates = {r: threading.Event() for r in "abc"}
    worker = _Worker(Gated, (started, gates), {})
    chunks = stream(worker, WorkBatch(0, ["a", "b", "c"]))
    gates["a"].set()
    first = next(chunks)  # b has started and waits for its gate
    assert first.positions == [0] and first.results == ["a"] and not first.final
    assert started["b"].is_set() and not gates["b"].is_set()
    gates["b"].set()
    gates["c"].set()
    rest = list(chunks)
    assert rest[-1].final
    assert [p for c in rest for p in c.positions] == [1, 2]


class Quitter(Processor):
    """Ends ``process()`` with a BaseException that is not an Exception, by request."""

    def process(self, request):
        if request == "exit":
            raise SystemExit(3)
        if request == "interrupt":
            raise KeyboardInterrupt
        return request


class BatchQuitter(Processor):
    def process_batch(self, requests):
        raise SystemExit(4)


def test_sys_exit_or_keyboard_interrupt_in_process_fails_only_that_request():
    worker = _Worker(Quitter, (), {})
    chunks, outcomes = run(worker, 0, ["a", "exit", "b", "interrupt", "c"])
    assert [outcomes[i] for i in (0, 2, 4)] == ["a", "b", "c"]
    assert chunks[-1].final and chunks[-1].skipped == ()
    for position, kind in ((1, "builtins.SystemExit"), (3, "builtins.KeyboardInterrupt")):
        error = outcomes[position]
        assert isinstance(error, RemoteError) and error.error_type == kind
        assert "Quitter.process" in str(error) and "worker goes on" in str(error)
    # The worker took the next batch as usual.
    assert run(worker, 1, ["d"])[1] == {0: "d"}


def test_sys_exit_in_process_batch_fails_its_requests_only():
    worker = _Worker(BatchQuitter, (), {})
    _, outcomes = run(worker, 0, ["a", "b"])
    assert all(isinstance(e, RemoteError) for e in outcomes.values()) and len(outcomes) == 2
    assert outcomes[0].error_type == "builtins.SystemExit"


def test_sys_exit_in_a_direct_call_fails_it_with_the_same_error_as_in_a_batch():
    outcome = _Worker(Quitter, (), {}).direct(dump("exit"), request_id=1)
    assert outcome is not None and outcome.result is None
    error = load(outcome.error)
    assert isinstance(error, RemoteError) and error.error_type == "builtins.SystemExit"


def test_an_unpicklable_result_fails_only_its_request():
    _, outcomes = run(_Worker(Awkward, (), {}), 0, ["x", "lock", "y"])
    assert outcomes[0] == "x ok" and outcomes[2] == "y ok"
    assert isinstance(outcomes[1], TransferError) and "pickle" in str(outcomes[1])


def test_an_exception_that_cannot_be_rebuilt_arrives_as_remote_error_with_its_text():
    _, outcomes = run(_Worker(Awkward, (), {}), 0, ["two-args", "y"])
    error = outcomes[0]
    assert isinstance(error, RemoteError)
    assert "TwoArgumentError" in str(error) and "7: cannot be rebuilt" in str(error)
    assert error.error_type.endswith("TwoArgumentError")
    assert outcomes[1] == "y ok"


def test_an_exception_with_an_unpicklable_attribute_arrives_as_remote_error_naming_its_class():
    # Ray pickles such an exception without its cause, which would leave a bare RayTaskError.
    _, outcomes = run(_Worker(Awkward, (), {}), 0, ["locked", "y"])
    error = outcomes[0]
    assert isinstance(error, RemoteError)
    assert error.error_type.endswith("processors.LockedError")
    assert "connection lost" in str(error) and "could not be sent back" in str(error)
    assert outcomes[1] == "y ok"


def test_a_request_that_cannot_be_rebuilt_in_the_worker_fails_only_itself():
    worker = _Worker(Awkward, (), {})
    carried = [Pickled(pickle.dumps(Unloadable())), "fine"]
    chunks = list(stream(worker, WorkBatch(0, carried)))
    errors = {
        p: load(c.errors[i])
        for c in chunks
        if c.errors
        for i, p in enumerate(c.positions)
        if i in c.errors
    }
    assert isinstance(errors[0], TransferError) and "refuses to be rebuilt" in str(errors[0])
    assert 1 not in errors


def test_skip_before_batch_arrives_is_applied():
    worker = _Worker(Doubler, (), {})
    assert worker.skip(5, [0, 2]) == []
    chunks, outcomes = run(worker, 5, [1, 2, 3])
    assert outcomes == {1: 4}
    assert chunks[-1].skipped == (0, 2)
    assert worker._processor.seen == [2]


def test_skip_after_batch_finished_reports_all_late():
    worker = _Worker(Doubler, (), {})
    run(worker, 1, [1])
    assert worker.skip(1, [0]) == [0]


def test_skip_during_batch_splits_started_from_not_started():
    requests = list("abcdef")
    started = {r: threading.Event() for r in requests}
    gates = {r: threading.Event() for r in requests}
    worker = _Worker(Gated, (started, gates), {})
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(r=run(worker, 2, requests)))
    thread.start()
    gates["a"].set()
    assert started["b"].wait(10)  # a done, b under way
    late = worker.skip(2, [1, 4, 5])
    for gate in gates.values():
        gate.set()
    thread.join(10)
    chunks, outcomes = outcome["r"]
    assert late == [1]
    assert sorted(outcomes) == [0, 1, 2, 3]
    assert chunks[-1].skipped == (4, 5)


def test_a_position_skipped_already_is_not_reported_as_started_when_asked_again():
    # A take-back and an expiry of the same batch both ask about a position: the second
    # answer must not call it started once the batch has passed it.
    requests = list("abc")
    started = {r: threading.Event() for r in requests}
    gates = {r: threading.Event() for r in requests}
    worker = _Worker(Gated, (started, gates), {})
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(r=run(worker, 3, requests)))
    thread.start()
    assert started["a"].wait(10)
    assert worker.skip(3, [1]) == []
    gates["a"].set()
    assert started["c"].wait(10)  # b skipped, c under way
    assert worker.skip(3, [1, 2]) == [2]
    gates["c"].set()
    thread.join(10)
    chunks, outcomes = outcome["r"]
    assert sorted(outcomes) == [0, 2] and chunks[-1].skipped == (1,)


def test_vectorised_process_batch_gets_the_unskipped_requests():
    worker = _Worker(Vectorised, (), {})
    worker.skip(0, [1])
    chunks, outcomes = run(worker, 0, ["a", "b", "c"])
    assert outcomes == {0: "A", 2: "C"} and chunks[-1].skipped == (1,)


def test_vectorised_error_fails_the_whole_batch():
    class Bad(Processor):
        def process_batch(self, requests):
            return []

    _, outcomes = run(_Worker(Bad, (), {}), 0, ["a", "b"])
    assert set(outcomes) == {0, 1}
    with pytest.raises(ValueError, match="returned 0 results for 2"):
        raise outcomes[0].as_instanceof_cause()


def test_default_process_batch_calls_process_per_item():
    assert Doubler().process_batch([1, 2]) == [2, 4]
    with pytest.raises(NotImplementedError, match="process"):
        Processor().process(1)
