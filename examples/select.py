"""Take results in the order they arrive with PromiseSet.select()."""

import random
import time

from raypw import Processor, ProcessorService, PromiseSet


class ExampleProcessor(Processor):
    """Processor class for a simple string request that takes a random time."""

    def process(self, request):
        time_to_sleep = random.randint(1, 3)
        time.sleep(time_to_sleep)
        return f"{request} processed ({time_to_sleep} seconds)."


def main() -> None:
    with ProcessorService(ExampleProcessor, parallel_workers=2) as processor_service:
        print("Queued hola, hola2, hola3 y hola4")
        promises = [processor_service.queue_request(r) for r in ["hola", "hola2", "hola3", "hola4"]]

        # This loop takes the promises by arrival order.
        started = time.monotonic()
        for promise in PromiseSet(promises).select():
            print(f"{time.monotonic() - started:5.2f} s  Result: {promise.get_result()}")


if __name__ == "__main__":
    main()
