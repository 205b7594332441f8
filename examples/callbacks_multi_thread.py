"""Callbacks from a background thread: queue_request(request, completed_callback).

Each callback runs as soon as its request finishes, in raypw's callback thread, so shared
state needs a lock.
"""

import threading
import time

from raypw import Processor, ProcessorService, PromiseSet


class ExampleProcessor(Processor):
    def process(self, request):
        time.sleep(1)
        return "{} processed.".format(request)


def main() -> None:
    lock = threading.Lock()
    results = []

    def completed_callback(promise):
        # Shared operations need a lock: this runs in a background thread.
        with lock:
            results.append(promise.get_result())
        print(promise.get_result(), "(in {})".format(threading.current_thread().name))

    with ProcessorService(ExampleProcessor, parallel_workers=2) as processor_service:
        promises = [
            processor_service.queue_request("hola{}".format(i), completed_callback)
            for i in range(1, 5)
        ]
        PromiseSet(promises).wait_for_all()
    print("{} results collected by callbacks".format(len(results)))


if __name__ == "__main__":
    main()
