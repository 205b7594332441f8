"""The client's handling of the coordinator's news, without Ray."""

from __future__ import annotations

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
