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
        return f"{request} processed."


def main() -> None:
    lock = threading.Lock()
    results = []

    def completed_callback(promise):
        # Shared operations need a lock: this runs in a background thread.
        with lock:
            results.append(promise.get_result())
        print(promise.get_result(), f"(in {threading.current_thread().name})")

    with ProcessorService(ExampleProcessor, parallel_workers=2) as processor_service:
        promises = [
            processor_service.queue_request(f"hola{i}", completed_callback) for i in range(1, 5)
        ]
        PromiseSet(promises).wait_for_all()
    print(f"{len(results)} results collected by callbacks")


if __name__ == "__main__":
    main()
