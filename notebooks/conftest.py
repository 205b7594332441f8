"""The notebooks run top to bottom as tests (nbmake), each in a kernel of its own.

Each gets a Ray of its own, as on a laptop: ``ray.init()`` would otherwise join the last Ray
started on this machine (the test session's), so RAY_ADDRESS=local while a notebook runs.
"""

import os

import pytest

_saved: list[str | None] = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _saved.append(os.environ.get("RAY_ADDRESS"))
    os.environ["RAY_ADDRESS"] = "local"


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    previous = _saved.pop()
    if previous is None:
        os.environ.pop("RAY_ADDRESS", None)
    else:
        os.environ["RAY_ADDRESS"] = previous
