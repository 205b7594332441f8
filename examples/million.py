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
        promises = [service.queue_request("hola{}".format(i)) for i in range(count)]
        queued = time.monotonic() - started
        print("Queued {:,} requests in {:.1f} s".format(count, queued), flush=True)

        done = 0
        step = max(count // 10, 1)
        for promise in PromiseSet(promises).select():
            promise.get_result()
            done += 1
            if done % step == 0:
                print("{:>9,} done  {:6.1f} s".format(done, time.monotonic() - started), flush=True)
        elapsed = time.monotonic() - started
        print(
            "All {:,} requests processed in {:.1f} s ({:,.0f} requests/s)".format(
                done, elapsed, done / elapsed
            )
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
