"""The client's handling of the coordinator's news, without Ray."""

from __future__ import annotations

import pytest

from raypw.client import Client
from raypw.protocol import Forgotten


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
