"""Every message that crosses a process, as a small named record.

::

    client --Submit/Abort-->  Coordinator  --WorkBatch-->  worker
    client <--News (poll)---  Coordinator  <--OutcomeChunk (streamed)-- worker
                                           --skip(batch_id, positions)--> worker
    client --one request (the idle-pool fast path)----------------------> worker
    client <--DirectOutcome---------------------------------------------- worker
    client --FastPathReport-->  Coordinator  (counts and metrics of those; frees the worker)

User values (requests, results, exceptions) that are not plain strings or numbers travel as
:class:`Pickled` bytes, made by the process that has the object and opened only by the one
that uses it. So the Coordinator never unpickles a user's object, and a value that cannot be
pickled or rebuilt fails its own request, with a clear error, and nothing else.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Abort",
    "Closed",
    "DirectOutcome",
    "Failed",
    "FastPathReport",
    "FastPathRun",
    "Lease",
    "Forgotten",
    "News",
    "OutcomeChunk",
    "Outcomes",
    "Pickled",
    "Submit",
    "PLAIN_TYPES",
    "TimedOut",
    "WorkBatch",
    "dump",
    "dump_request",
    "load",
]

# Values of these types travel as they are: they always pickle and unpickle, cheaply.
PLAIN_TYPES = (str, bytes, int, float, bool, type(None))


@dataclass(frozen=True, slots=True)
class Pickled:
    """A user's value as pickle bytes; equal bytes stand for equal values (the dedup key of
    a request that is not plain)."""

    data: bytes

    def load(self) -> Any:
        """Rebuilds the value (raises whatever unpickling raises)."""
        return pickle.loads(self.data)


def dump(value: Any) -> Any:
    """Returns ``value`` itself if it is plain, else its :class:`Pickled` form.

    Classes defined in ``__main__`` (a script, a notebook) are pickled by value, as Ray does,
    so a worker that cannot import them still rebuilds them.

    Raises:
        Exception: whatever pickling raised.
    """
    if type(value) in PLAIN_TYPES:
        return value
    try:
        data = pickle.dumps(value, protocol=5)
        by_value = b"__main__" in data
    except Exception:  # a class Ray shipped by value, a lambda: cloudpickle may manage
        by_value = True
    if by_value:
        from ray import cloudpickle

        data = cloudpickle.dumps(value, protocol=5)  # type: ignore[no-untyped-call]
    return Pickled(data)


def dump_request(request: Any) -> Any:
    """:func:`dump` of a request a user queued.

    Raises:
        TypeError: it cannot be pickled; the message names the request and why.
    """
    try:
        return dump(request)
    except Exception as exc:
        raise TypeError(
            f"the request {request!r:.80} cannot be pickled ({type(exc).__name__}: {exc}); "
            "requests travel to worker processes, so they must be picklable"
        ) from None


def load(value: Any) -> Any:
    """The inverse of :func:`dump`."""
    return value.load() if type(value) is Pickled else value


@dataclass(frozen=True, slots=True)
class Submit:
    """Client -> Coordinator: requests to queue.

    Attributes:
        client: The client's id.
        epoch: The client's registration (see ``Coordinator.connect``); a submit of an older
            one is dropped.
        seq: This submit's number, counted from 1 by the client across its epochs.
        ids: The request ids carried.
        requests: One per id: a plain value or :class:`Pickled`.
        keys: The dedup key of each (plain or :class:`Pickled`), or None: the request is its
            own key.
        timeouts: Seconds each request has left until its deadline (None: no deadline), or
            None if none has one. Relative, so the two processes' clocks need not agree.
        priorities: The priority of each (higher runs first), or None if all are 0.
        died: Requests whose worker died under them on the client's fast path: that
            death counts against their retries, and the worker is treated as dead (the
            coordinator held nothing there, so it could not notice). None: none did.
        reserved: The client's fast-path request running now, if any: its worker takes
            nothing else until the client reports it finished, so what this submit brings
            runs after it there (on one worker, in the order it was queued).
    """

    client: str
    epoch: int
    seq: int
    ids: list[int]
    requests: list[Any]
    keys: list[Any] | None = None
    timeouts: list[float | None] | None = None
    priorities: list[int] | None = None
    died: list[FastPathRun] | None = None
    reserved: FastPathRun | None = None


@dataclass(frozen=True, slots=True)
class FastPathRun:
    """Client -> Coordinator, in a :class:`Submit`: request ``request_id`` went to worker
    ``worker`` by the fast path, to its process ``pid`` (0: not known). A slot may hold
    another process since (Ray restarted it, or the pool shrank and grew again)."""

    worker: int
    request_id: int
    pid: int = 0


@dataclass(frozen=True, slots=True)
class Lease:
    """Coordinator -> client: the worker a service's only client sends lone requests to
    itself (the idle-pool fast path): its slot, its actor handle and its process id."""

    worker: int
    actor: Any
    pid: int = 0


@dataclass(frozen=True, slots=True)
class Abort:
    """Client -> Coordinator: withdraw these requests.

    Attributes:
        client: The client's id.
        epoch: The client's registration.
        ids: The request ids.
        seqs: For each, the number of the submit that carried it: an abort that arrives
            before that submit is kept until it does.
    """

    client: str
    epoch: int
    ids: list[int]
    seqs: list[int]


@dataclass(frozen=True, slots=True)
class WorkBatch:
    """Coordinator -> worker: requests to process in order (plain or :class:`Pickled`)."""

    batch_id: int
    requests: list[Any]


@dataclass(frozen=True, slots=True)
class OutcomeChunk:
    """Worker -> Coordinator, streamed: the outcomes of a few consecutive positions.

    Attributes:
        batch_id: The batch.
        positions: The positions finished, in order.
        results: One per position: the result (plain or :class:`Pickled`), or None where
            it failed.
        errors: Index into ``positions`` -> the error (:class:`Pickled`), or None if none.
        seconds: Time spent processing these positions.
        final: The last chunk of the batch.
        skipped: With ``final``: positions never started (aborted, or taken for another
            worker).
    """

    batch_id: int
    positions: list[int]
    results: list[Any]
    errors: dict[int, Any] | None
    seconds: float
    final: bool = False
    skipped: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class DirectOutcome:
    """Worker -> client: the outcome of one request the client sent the worker itself (the
    idle-pool fast path).

    Attributes:
        result: The result (plain or :class:`Pickled`), or None if it failed.
        error: The error (:class:`Pickled`), or None.
        seconds: Time spent processing it.
    """

    result: Any
    error: Any
    seconds: float


@dataclass(frozen=True, slots=True)
class FastPathReport:
    """Client -> Coordinator: fast-path requests that ended since the last report, for the
    service's counters and metrics, and to free the worker reserved for them.

    Attributes:
        client: The client's id.
        finished: The highest request id of those (each ended on its worker: with an
            outcome, or with the worker's death).
        processed: Requests the workers processed.
        failed: Of those, requests whose ``process()`` failed.
        seconds: Time the workers spent processing them.
        waited: Time from sending each to its outcome, summed.
    """

    client: str
    finished: int
    processed: int
    failed: int
    seconds: float
    waited: float


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Coordinator -> client: requests ``ids`` finished; ``results`` and ``errors`` (index
    into ``ids`` -> error, empty if none failed) as in :class:`OutcomeChunk`."""

    ids: list[int]
    results: list[Any]
    errors: dict[int, Any]


@dataclass(frozen=True, slots=True)
class Failed:
    """Coordinator -> client: requests ``ids`` failed with ``error`` (e.g. their worker died
    too often)."""

    ids: list[int]
    error: BaseException


@dataclass(frozen=True, slots=True)
class TimedOut:
    """Coordinator -> client: the deadlines of requests ``ids`` passed before they finished
    (the client knows each request and its timeout, and builds the error)."""

    ids: list[int]


@dataclass(frozen=True, slots=True)
class Closed:
    """Coordinator -> client: the service was stopped."""

    reason: str


@dataclass(frozen=True, slots=True)
class Forgotten:
    """Coordinator -> client: the coordinator does not know this client (it was silent too
    long, or this is a new coordinator); it must connect and submit its pending work again."""

    reason: str


News = Outcomes | Failed | TimedOut | Closed | Forgotten
