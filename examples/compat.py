"""A parallel-workers program, run on raypw by changing its import line only.

Part 1 queues four greetings on two workers and aborts the third before it starts: its
``get_result()`` prints None, as parallel-workers did. Part 2 queues many more, with a
callback that prints each result from a background thread, until the work is done or Ctrl-C
is pressed: then it aborts what has not started, lets the running requests finish, and exits
quietly.

Run it with ``python -m examples.compat`` (``--count N`` for part 2's size).
"""

import argparse
import signal
import threading
import time

from raypw.compat import Processor, ProcessorService, PromiseSet

interrupted = threading.Event()


class Greeter(Processor):
    """Answers a greeting after a pause, as a slow model would."""

    def __init__(self, pause):
        self.pause = pause

    def process(self, request):
        print(f"{request} taken by a worker")
        time.sleep(self.pause)
        return f"{request.capitalize()}, nice to meet you."


def on_ctrl_c(signum, frame):
    interrupted.set()


def part_one(service):
    print("Queued hola1, hola2, hola3 and hola4")
    promises = [service.queue_request(f"hola{i}") for i in range(1, 5)]
    # hola1 and hola2 hold both workers, so hola3 has not started: abort removes it.
    promises[2].abort()
    print("Aborted hola3")
    for promise in promises:
        print(promise.get_result())


def part_two(service, count):
    def completed(promise):  # runs in a background thread
        result = promise.get_result()
        if result is not None:
            print(result, flush=True)

    print(f"Queuing {count} greetings; Ctrl-C stops", flush=True)
    promises = service.queue_requests([f"bonjour{i}" for i in range(count)], completed)
    promise_set = PromiseSet(promises)
    while not interrupted.is_set():
        if all(promise.peak_result() for promise in promises):
            break
        interrupted.wait(0.2)
    if interrupted.is_set():
        for promise in reversed(promises):
            if not promise.peak_result():
                promise.abort()
    promise_set.wait_for_all(ignore_aborted=True)
    # Counted from the promises: a callback runs in a background thread and may still be
    # on its way when wait_for_all() returns.
    answered = sum(promise.get_result() is not None for promise in promises)
    aborted = sum(promise.is_request_aborted() for promise in promises)
    print(f"Done: {answered} answered, {aborted} aborted", flush=True)


def main(count=40, pause=0.5):
    service = ProcessorService(Greeter, parallel_workers=2, processor_class_init_args=[pause])
    service.start()
    try:
        part_one(service)
        part_two(service, count)
    finally:
        service.stop(wait_for_finish=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40, help="greetings in part 2")
    parser.add_argument("--pause", type=float, default=0.5, help="seconds per greeting")
    arguments = parser.parse_args()
    signal.signal(signal.SIGINT, on_ctrl_c)
    main(arguments.count, arguments.pause)
