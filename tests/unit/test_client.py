"""The client's handling of the coordinator's news, without Ray."""

from __future__ import annotations

import pickle
import queue
import sys
import threading
import time

import pytest

from raypw.client import Client
from raypw.deadlines import TICK_SECONDS, DeadlineRuns
from raypw.errors import (
    QueueFullError,
    RaypwError,
    RequestTimeoutError,
    ServiceNotRunningError,
)
from raypw.promise import STATE_LOCK
from raypw.protocol import Forgotten, Outcomes, Submit, TimedOut


def test_a_failed_rejoin_after_being_forgotten_recovers_instead_of_ending_the_collector():
    client = Client(coordinator=None)
    recovered: list[BaseException] = []

    def rejoin() -> None:
        raise ConnectionError("the coordinator did not answer")

    def recover(cause: BaseException) -> bool:
        recovered.append(cause)
        return True

    client._rejoin = rejoin  # type: ignore[method-assign]
    client._recover = recover  # type: ignore[method-assign]
    assert client._take_news([Forgotten("silent too long")]) is True
    assert len(recovered) == 1 and isinstance(recovered[0], ConnectionError)


class Key:
    """A request whose hash raises KeyboardInterrupt on its n-th call (Ctrl-C mid-call)."""

    def __init__(self, name: str, interrupt_at: int) -> None:
        self.name = name
        self.interrupt_at = interrupt_at
        self.hashes = 0

    def __hash__(self) -> int:
        self.hashes += 1
        if self.hashes == self.interrupt_at:
            raise KeyboardInterrupt
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and other.name == self.name


class Uncomparable:
    def __hash__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        raise ValueError("ambiguous")


def open_client() -> Client:
    client = Client(coordinator=None)
    client._open = True  # no threads: the test looks at what queue() leaves behind
    return client


def test_an_interrupt_anywhere_in_queue_requests_leaves_nothing_queued():
    for at in range(2, 6):
        client = open_client()
        client.queue(["before"], None)
        try:
            client.queue(["x", Key("k", interrupt_at=at), "y"], None)
        except KeyboardInterrupt:
            pass
        else:
            continue  # this many hashes were not needed
        assert list(client._by_key) == ["before"], at
        assert [p.request for p in client._outbox] == ["before"], at
        assert len(client._by_id) == 1, at
        (again,) = client.queue([Key("k", interrupt_at=0)], None)
        assert again._id and again in client._outbox  # a new request, not a zombie


def test_a_refused_call_leaves_no_promise_behind_for_an_equal_request_to_join():
    client = open_client()
    with pytest.raises(TypeError, match="key="):
        client.queue(["a", Uncomparable(), Uncomparable()], None)
    assert not client._by_key and not client._by_id and not client._outbox
    (a,) = client.queue(["a"], None)
    assert a in client._outbox


class _Recording:
    """A stand-in coordinator handle: records what each submit carried."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.sent = threading.Event()
        self.submit = self  # so that coordinator.submit.remote(message) lands in remote()

    def remote(self, message: Submit) -> None:
        self.sizes.append(len(message.ids))
        self.sent.set()


@pytest.mark.parametrize(("workers", "ahead"), [(1, 1024), (2, 1024), (32, 8192)])
def test_a_wide_pool_gets_more_requests_ahead_of_its_results(workers: int, ahead: int) -> None:
    # A window that lets the coordinator's queue run dry cuts its batches to a request or
    # two on a wide pool (W6: efficiency 0.50 against 0.82).
    coordinator = _Recording()
    client = Client(coordinator=coordinator, workers=workers)
    client._open = True
    client._wait_submitted = lambda ref, ids: None  # type: ignore[method-assign]
    client.queue(range(20_000), None)
    sender = threading.Thread(target=client._send_loop, daemon=True)
    sender.start()
    assert coordinator.sent.wait(10)
    with STATE_LOCK:  # the sender now waits for results before it sends more
        client._stopped = True
        client._outbox_ready.notify_all()
    sender.join(10)
    assert not sender.is_alive()
    assert coordinator.sizes == [ahead]


# -- deadlines -----------------------------------------------------------------------------


class Recording:
    """A coordinator whose submit() records its message."""

    def __init__(self) -> None:
        self.messages: list = []
        self.submit = self

    def remote(self, message):
        self.messages.append(message)
        return message


def test_a_request_with_a_timeout_gets_a_promise_of_its_own():
    client = open_client()
    (plain,) = client.queue(["x"], None)
    first, again = client.queue(["x", "x"], None, timeout=5.0)
    (later,) = client.queue(["x"], None, timeout=5.0)
    (plain_again,) = client.queue(["x"], None)
    assert first is again  # same call, same deadline: shared
    assert len({id(plain), id(first), id(later)}) == 3
    assert plain_again is plain  # a request without a deadline still joins its equal


def test_a_submit_carries_the_seconds_each_request_has_left():
    client = open_client()
    client._coordinator = Recording()
    timed = client.queue(["a"], None, timeout=30.0)
    untimed = client.queue(["b"], None)
    message = client._submit(timed + untimed, 1)
    left, none = message.timeouts
    assert 0 < left <= 30.0 and none is None
    assert client._submit(untimed, 2).timeouts is None


def test_a_request_whose_deadline_passes_in_the_outbox_fails_and_is_never_sent():
    from raypw.promise import Notes

    client = open_client()
    (late,) = client.queue(["late"], None, timeout=30.0)
    (fine,) = client.queue(["fine"], None, timeout=30.0)
    runs = client._unsent_deadlines = DeadlineRuns()
    runs.add(0.0, late._id, 1)  # late's deadline passed
    runs.add(float("inf"), fine._id, 1)
    notes = Notes()
    assert client._expire_unsent(notes) == float("inf")
    with pytest.raises(
        RequestTimeoutError, match=r"'late' did not finish within its timeout of 30 s"
    ):
        late.get_result(timeout=0)
    assert late._id not in client._by_id and not fine.done()
    assert client.counts()["timed_out"] == 1 and client.counts()["failed"] == 1


def test_timed_out_news_fails_the_promise_with_the_request_and_its_deadline():
    client = open_client()
    (promise,) = client.queue([("job", 7)], None, timeout=2.5)
    client._take_news([TimedOut([promise._id])])
    with pytest.raises(TimeoutError) as caught:
        promise.get_result(timeout=0)
    error = caught.value
    assert isinstance(error, RequestTimeoutError) and isinstance(error, RaypwError)
    assert error.request == ("job", 7) and error.timeout == 2.5
    assert error.deadline == pytest.approx(time.time() + 2.5, abs=60)
    assert "('job', 7)" in str(error) and "2.5 s" in str(error) and "UTC" in str(error)
    assert pickle.loads(pickle.dumps(error)).timeout == 2.5


# -- backpressure --------------------------------------------------------------------------


def bounded_client(max_queued: int) -> Client:
    client = Client(coordinator=None, max_queued=max_queued)
    client._open = True
    return client


def blocked_waiting_for_room(thread: threading.Thread) -> bool:
    """True while ``thread`` waits in Client._admit for room."""
    frame = sys._current_frames().get(thread.ident or 0)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return bool(names) and names[0] == "wait" and "_admit" in names


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.001)


def finish(client: Client, promise) -> None:
    client._settle(Outcomes([promise._id], [f"{promise.request}!"], {}))


def test_a_full_queue_refuses_at_once_without_blocking_and_queues_nothing():
    client = bounded_client(2)
    client.queue(["a", "b"], None)
    with pytest.raises(QueueFullError, match="max_queued is 2") as caught:
        client.queue(["c"], None, block=False)
    assert isinstance(caught.value, queue.Full) and caught.value.max_queued == 2
    with pytest.raises(QueueFullError, match="block_timeout"):
        client.queue(["c"], None, block_timeout=0)
    assert [p.request for p in client._outbox] == ["a", "b"] and client.pending == 2
    (again,) = client.queue(["a"], None, block=False)  # joins a pending one: needs no room
    assert again.request == "a" and client.pending == 2


def test_a_blocked_queue_request_goes_in_once_a_result_frees_room():
    client = bounded_client(2)
    first, _ = client.queue(["a", "b"], None)
    queued: list = []
    thread = threading.Thread(target=lambda: queued.extend(client.queue(["c"], None)))
    thread.start()
    wait_for(lambda: blocked_waiting_for_room(thread), "queue() waits for room")
    assert not queued
    finish(client, first)
    thread.join(timeout=30)
    assert [p.request for p in queued] == ["c"] and client.pending == 2


def test_queue_requests_takes_a_generator_lazily_as_room_frees():
    client = bounded_client(3)
    taken = []

    def requests():
        for i in range(10):
            taken.append(i)
            yield f"r{i}"

    result: list = []
    finished = 0
    thread = threading.Thread(target=lambda: result.extend(client.queue(requests(), None)))
    thread.start()
    while thread.is_alive():
        wait_for(lambda: not thread.is_alive() or blocked_waiting_for_room(thread), "a wait")
        # Taken and not finished: what is pending, and one chunk that waits for room.
        assert len(taken) - finished <= 2 * 3 and client.pending <= 3
        for promise in list(client._by_id.values()):
            finish(client, promise)
            finished += 1
        wait_for(lambda: not thread.is_alive() or client.pending, "the thread queued more")
    assert [p.request for p in result] == [f"r{i}" for i in range(10)]


def test_a_call_refused_half_way_aborts_what_it_had_queued():
    client = bounded_client(8)  # chunks of 2: the third chunk is refused
    with pytest.raises(TypeError, match="unhashable"):
        client.queue(["a", "b", "c", "d", ["unhashable"]], None)
    assert client.pending == 0
    assert all(p.is_aborted() for p in client._outbox)


def test_stop_ends_a_queue_request_waiting_for_room():
    client = bounded_client(1)
    client.queue(["a"], None)
    errors: list = []

    def blocked() -> None:
        try:
            client.queue(["b"], None)
        except ServiceNotRunningError as exc:
            errors.append(exc)

    thread = threading.Thread(target=blocked)
    thread.start()
    wait_for(lambda: blocked_waiting_for_room(thread), "queue() waits for room")
    client._broken = RuntimeError("the service stopped")  # no coordinator to tell
    client.close(wait=False)
    thread.join(timeout=30)
    assert len(errors) == 1 and "the service stopped" in str(errors[0])


# -- priorities ----------------------------------------------------------------------------


def send_once(client: Client) -> list:
    """Runs the sender until it sent one submit; returns the messages it sent."""
    coordinator = Recording()
    client._coordinator = coordinator
    client._wait_submitted = lambda ref, ids: None  # type: ignore[method-assign]
    sender = threading.Thread(target=client._send_loop, daemon=True)
    sender.start()
    wait_for(lambda: coordinator.messages, "the sender sent a submit")
    with STATE_LOCK:
        client._stopped = True
        client._outbox_ready.notify_all()
    sender.join(10)
    assert not sender.is_alive()
    return coordinator.messages


def test_higher_priority_requests_leave_the_outbox_first_in_order_within_a_priority():
    client = open_client()
    client.queue(["l1", "l2"], None)
    client.queue(["h1", "h2"], None, priority=5)
    client.queue(["n1"], None, priority=-1)
    client.queue(["l3"], None)
    (message,) = send_once(client)
    assert message.requests == ["h1", "h2", "l1", "l2", "l3", "n1"]
    assert message.priorities == [5, 5, 0, 0, 0, -1]
    (plain,) = send_once(open_client_with(["x"]))
    assert plain.priorities is None  # nothing to carry without priorities


def open_client_with(requests: list) -> Client:
    client = open_client()
    client.queue(requests, None)
    return client


def test_an_unsent_equal_request_of_a_higher_priority_raises_the_pending_promise():
    client = open_client()
    (low,) = client.queue(["x"], None)
    client.queue(["y"], None)
    (high,) = client.queue(["x"], None, priority=2)
    assert high is low and low._priority == 2
    (message,) = send_once(client)
    assert message.requests == ["x", "y"] and message.priorities == [2, 0]  # x once


def test_a_sent_equal_request_of_a_higher_priority_gets_a_promise_of_its_own():
    client = open_client()
    (low,) = client.queue(["x"], None)
    send_once(client)
    client._stopped = False
    (high,) = client.queue(["x"], None, priority=2)
    assert high is not low  # the coordinator raises the one it holds, and runs it once
    (same,) = client.queue(["x"], None, priority=1)
    assert same is high


def test_one_call_s_requests_share_one_unsent_deadline_entry_and_fail_together():
    from raypw.promise import Notes

    client = open_client()
    a, b, c = client.queue(["a", "b", "c"], None, timeout=30.0)
    ((due, first, count),) = client._unsent_deadlines.runs()
    assert (first, count) == (a._id, 3)
    assert a._deadline <= due < a._deadline + TICK_SECONDS  # rounded up: never early
    assert [b._id, c._id] == [a._id + 1, a._id + 2]
    b._sent_in = 1  # b went out: the coordinator times it out, not the outbox
    client._unsent_deadlines = DeadlineRuns()
    client._unsent_deadlines.add(0.0, a._id, 3)  # their deadline passed
    assert client._expire_unsent(Notes()) is None
    for late in (a, c):
        with pytest.raises(RequestTimeoutError):
            late.get_result(timeout=0)
    assert not b.done() and client.counts()["timed_out"] == 2


def test_a_submit_of_timed_requests_only_carries_no_negative_seconds_left():
    client = open_client()
    client._coordinator = Recording()
    late, fine = client.queue(["late", "fine"], None, timeout=30.0)
    late._deadline -= 60.0  # its deadline passed while it waited to be sent
    assert client._submit([late, fine], 1).timeouts[0] == 0.0
    assert 0 < client._submit([fine], 2).timeouts[0] <= 30.0


def test_calls_with_deadlines_in_order_extend_the_last_run_without_a_heap_entry():
    client = open_client()
    promises = [client.queue([f"r{i}"], None, timeout=30.0)[0] for i in range(50)]
    runs = client._unsent_deadlines
    assert runs._heap == []
    held = runs.runs()
    assert len(held) < len(promises)  # one run per tick of TICK_SECONDS, not one per call
    covered = [(due, first + k) for due, first, count in held for k in range(count)]
    assert [request_id for _, request_id in covered] == [p._id for p in promises]
    for (due, _), promise in zip(covered, promises, strict=True):
        assert promise._deadline <= due < promise._deadline + TICK_SECONDS


def test_runs_of_sent_requests_are_dropped_past_twice_the_pending_requests():
    from raypw.client import _MIN_DEADLINE_HEAP

    client = open_client()
    # Deadlines a tick apart or more: one run each.
    first = [
        client.queue([f"a{i}"], None, timeout=30.0 + i * 2 * TICK_SECONDS)[0]
        for i in range(_MIN_DEADLINE_HEAP)
    ]
    with STATE_LOCK:
        for promise in first[1:-1]:  # all but the first and last went out, and finished
            del client._by_id[promise._id]
        first[-1]._sent_in = 1  # went out, still pending: the coordinator's to time out
    client.queue(["last"], None, timeout=30.0)
    runs = client._unsent_deadlines.runs()
    assert [run[1] for run in runs] == [first[0]._id, first[-1]._id + 1]


def test_the_pending_tables_are_rebuilt_smaller_once_a_burst_has_drained(monkeypatch):
    import raypw.client

    monkeypatch.setattr(raypw.client, "_SHRINK_FROM", 8)
    client = open_client()
    promises = client.queue([f"r{i}" for i in range(16)], None)
    tables = client._by_id, client._by_key
    done, left = promises[:13], promises[13:]
    client._settle(Outcomes([p._id for p in done], [f"{p.request}!" for p in done], {}))
    assert client._by_id is not tables[0] and client._by_key is not tables[1]  # rebuilt
    assert [p.get_result(timeout=0) for p in done] == [f"r{i}!" for i in range(13)]
    assert client._by_id == {p._id: p for p in left}
    assert client._by_key == {p.request: p for p in left}
    (again,) = client.queue(["r14"], None)  # still deduplicated against the pending one
    assert again is left[1]
    client._settle(Outcomes([left[0]._id], ["r13!"], {}))
    assert client._by_id is not tables[0] and left[0].get_result(timeout=0) == "r13!"
    assert client.pending == 2


def test_a_lone_request_without_a_lease_asks_for_one_again():
    # The last renewal came back empty (no worker was up): without asking again the fast
    # path would stay off for the client's life.
    client = Client(coordinator=None, direct=True)
    client._open = True
    (lone,) = client.queue(["lone"], None)
    assert client._fast.lease_wanted and lone in client._outbox  # the usual way meanwhile
    client._fast.lease_wanted = False
    client.queue(["second"], None)  # not lone: one is pending
    assert not client._fast.lease_wanted
