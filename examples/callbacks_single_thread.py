"""Callbacks in the main thread: PromiseSet.wait_for_all(completed_callback=...).

The callback runs in the caller's thread, one promise at a time, so it can update shared
state without a lock.
"""

import time

from raypw import Processor, ProcessorService, PromiseSet


class ExampleProcessor(Processor):
    def process(self, request):
        time.sleep(1)
        return f"{request} processed."


def main() -> None:
    results = []

    def completed_callback(promise):
        # Shared operations need no lock: this runs in the main thread.
        results.append(promise.get_result())
        print(promise.get_result())

    with ProcessorService(ExampleProcessor, parallel_workers=2) as processor_service:
        promises = [processor_service.queue_request(f"hola{i}") for i in range(1, 5)]
        PromiseSet(promises).wait_for_all(completed_callback=completed_callback)
    print(f"{len(results)} results collected in the main thread")


if __name__ == "__main__":
    main()
