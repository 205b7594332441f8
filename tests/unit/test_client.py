"""The client's handling of the coordinator's news, without Ray."""

from __future__ import annotations

import threading

import pytest

from raypw.client import Client
from raypw.promise import STATE_LOCK
from raypw.protocol import Forgotten, Submit


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
