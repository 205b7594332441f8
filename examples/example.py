"""The parallel-workers example: 4 requests of 5 s each on 2 workers, done two by two."""

import time

from raypw import Processor, ProcessorService


class ExampleProcessor(Processor):
    """Processor class for a simple string request."""

    def process(self, request):
        time.sleep(5)  # simulate the processing time
        return f"{request} processed."


def main() -> None:
    # 1. Start the service with 2 processors.
    processor_service = ProcessorService(ExampleProcessor, parallel_workers=2)
    processor_service.start()

    # 2. Queue 4 elements.
    print("Queued hola, hola2, hola3 y hola4")
    started = time.monotonic()
    promise = processor_service.queue_request("hola")
    promise2 = processor_service.queue_request("hola2")
    promise3 = processor_service.queue_request("hola3")
    promise4 = processor_service.queue_request("hola4")

    for p in (promise, promise2, promise3, promise4):
        result = p.get_result()
        print(f"{time.monotonic() - started:5.2f} s  {result}", flush=True)

    processor_service.stop()


if __name__ == "__main__":
    main()
