"""The user's side of the pool: subclass :class:`Processor` and write ``process()``."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

__all__ = ["Processor", "RequestT", "ResultT"]

RequestT = TypeVar("RequestT")
ResultT = TypeVar("ResultT")


class Processor(Generic[RequestT, ResultT]):
    """One worker's processing state: a loaded model, a browser, a database connection.

    Each worker of a :class:`~raypw.ProcessorService` builds exactly one instance, once, in its
    own Ray actor process, with the service's ``processor_class_init_args``, and then calls
    :meth:`process` for every request it takes from the queue, one at a time. State kept on
    ``self`` therefore lives as long as the worker and needs no lock.

    Example:
        >>> class Upper(Processor[str, str]):
        ...     def process(self, request: str) -> str:
        ...         return request.upper()
    """

    def process(self, request: RequestT) -> ResultT:
        """Processes one request and returns its result.

        Args:
            request: Any picklable object given to ``queue_request``.

        Returns:
            Any picklable result; it reaches the caller through ``promise.get_result()``.

        Raises:
            Exception: Any exception is sent back to that request's promise only; the worker
                keeps serving other requests.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement process(request)")

    def process_batch(self, requests: list[RequestT]) -> list[Any]:
        """Processes several requests at once (override for vectorised work).

        The default calls :meth:`process` for each request, and an exception then reaches only
        that request's promise. An override must return one result per request, in order; if it
        raises, every request of the batch fails with that exception.

        Args:
            requests: The requests of one batch, in queue order.

        Returns:
            One result per request.
        """
        return [self.process(request) for request in requests]
