"""Abort requests: one still queued (never processed) and one running (result dropped)."""

import time

from raypw import Processor, ProcessorService, PromiseAbortedError, PromiseSet


class ExampleProcessor(Processor):
    def process(self, request):
        time.sleep(2)
        return f"{request} processed."


def main() -> None:
    with ProcessorService(ExampleProcessor, parallel_workers=2) as processor_service:
        promises = [processor_service.queue_request(f"hola{i}") for i in range(1, 5)]
        time.sleep(0.5)

        # hola3 waits in the queue: aborting it means it is never processed.
        print("abort hola3 (queued):", promises[2].abort())
        # hola1 is running: its promise is aborted at once and its result dropped.
        print("abort hola1 (running):", promises[0].abort())

        for promise in PromiseSet(promises).select():
            try:
                print(promise.get_result())
            except PromiseAbortedError as error:
                print("aborted:", error)


if __name__ == "__main__":
    main()
