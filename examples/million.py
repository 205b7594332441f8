"""A million requests, each with its own promise, on a light processor.

Prints a running count while results arrive (through PromiseSet.select, in arrival order)
and the wall time at the end.
"""

import sys
import time

from raypw import Processor, ProcessorService, PromiseSet


class LightProcessor(Processor):
    """A cheap processor: the cost per request is the pool's, not the work's."""

    def process(self, request):
        return request + " processed."


def main(count: int = 1_000_000) -> None:
    with ProcessorService(LightProcessor, parallel_workers=2) as service:
        started = time.monotonic()
        promises = [service.queue_request(f"hola{i}") for i in range(count)]
        queued = time.monotonic() - started
        print(f"Queued {count:,} requests in {queued:.1f} s", flush=True)

        done = 0
        step = max(count // 10, 1)
        for promise in PromiseSet(promises).select():
            promise.get_result()
            done += 1
            if done % step == 0:
                print(f"{done:>9,} done  {time.monotonic() - started:6.1f} s", flush=True)
        elapsed = time.monotonic() - started
        print(
            f"All {done:,} requests processed in {elapsed:.1f} s ({done / elapsed:,.0f} requests/s)"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
