"""``raypw demo``: the quick start example, shipped with the package.

Four requests that take 5 s each on 2 workers: the results arrive two by two, at 5 s and 10 s.
The same code as ``examples/example.py``.
"""

from __future__ import annotations

import time

from raypw.processor import Processor
from raypw.service import ProcessorService

__all__ = ["ExampleProcessor", "run"]


class ExampleProcessor(Processor[str, str]):
    """Takes ``seconds`` per request, like a slow model, and says what it processed."""

    def __init__(self, seconds: float = 5.0) -> None:
        self.seconds = seconds

    def process(self, request: str) -> str:
        time.sleep(self.seconds)
        return f"{request} processed."


def run(seconds: float = 5.0, workers: int = 2, address: str | None = None) -> None:
    """Queues hola..hola4 and prints each result with the time it arrived."""
    with ProcessorService(
        ExampleProcessor,
        parallel_workers=workers,
        processor_class_init_args=(seconds,),
        address=address,
    ) as service:
        print(f"{workers} workers started; queued hola, hola2, hola3 and hola4", flush=True)
        started = time.monotonic()
        promises = [service.queue_request(r) for r in ("hola", "hola2", "hola3", "hola4")]
        for promise in promises:
            result = promise.get_result()
            print(f"{time.monotonic() - started:5.2f} s  {result}", flush=True)


if __name__ == "__main__":  # python -m raypw.demo [--seconds S ...]: ``raypw demo``
    import sys

    from raypw.cli import main

    sys.exit(main(["demo", *sys.argv[1:]]))
