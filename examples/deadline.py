"""A deadline frees the worker: a request stuck in process() times out, its worker is killed
and restarted, and the requests queued behind it on the only worker still complete."""

import time

from raypw import Processor, ProcessorService, PromiseSet, RequestTimeoutError


class ExampleProcessor(Processor):
    def process(self, request):
        if request == "stuck":
            while True:  # a call that never returns: a hung socket, a deadlock
                time.sleep(1)
        return f"{request} processed."


def main() -> None:
    with ProcessorService(
        ExampleProcessor, parallel_workers=1, request_timeout_grace=1
    ) as processor_service:
        stuck = processor_service.queue_request("stuck", timeout=2)
        promises = processor_service.queue_requests(["hola1", "hola2", "hola3"])
        try:
            stuck.get_result()
        except RequestTimeoutError as error:  # at the deadline, 2 s after queueing
            print("timed out:", error)
        for promise in PromiseSet(promises).select():
            print(promise.get_result())
        print("worker restarts:", processor_service.stats().worker_restarts)


if __name__ == "__main__":
    main()
