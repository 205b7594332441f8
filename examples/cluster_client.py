"""Attach to a named service that another program started on a Ray cluster.

Start the service somewhere (a notebook, a batch job, the head node)::

    ProcessorService(ExampleProcessor, parallel_workers=4, name="thumbs", detached=True).start()

then run this from any machine that reaches the cluster::

    RAY_ADDRESS=<head>:6379 RAY_AUTH_MODE=token python -m examples.cluster_client thumbs

Equal requests from every attached program are processed once. Pass --start to start the
service here first (detached, so it keeps running after this program), and --shutdown to stop
it for everyone at the end.
"""

import argparse
import time

from examples.example import ExampleProcessor
from raypw import ProcessorService, PromiseSet, ServiceNotFoundError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", nargs="?", default="thumbs")
    parser.add_argument("--start", action="store_true", help="start the service if absent")
    parser.add_argument("--shutdown", action="store_true", help="stop the service at the end")
    args = parser.parse_args()

    try:
        service = ProcessorService.connect(args.name, processor_class=ExampleProcessor)
    except ServiceNotFoundError:
        if not args.start:
            raise
        service = ProcessorService(
            ExampleProcessor, parallel_workers=4, name=args.name, detached=True
        ).start()
    print(f"attached to {args.name!r}: {service.config.parallel_workers} workers")

    started = time.monotonic()
    promises = service.queue_requests(f"photo{i}.jpg" for i in range(8))
    for promise in PromiseSet(promises).select():
        print(f"{time.monotonic() - started:5.2f} s  {promise.get_result()}")
    print(service.stats())
    service.stop(shutdown=args.shutdown)


if __name__ == "__main__":
    main()
