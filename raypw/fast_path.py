"""The client's side of the idle-pool fast path: the worker leased to it, the lone request
running there, and what the coordinator has still to be told.

A lone request (nothing else of the program's pending, no deadline) goes straight to the
worker the coordinator leased to the program. Requests queued while it runs go through the
coordinator and name it (:meth:`FastPath.reserve`), so that worker takes nothing else until
the client reports the request ended (:meth:`FastPath.ended`, :meth:`FastPath.take_report`).

Plain bookkeeping, with no Ray and no lock of its own: the :class:`~raypw.client.Client`
calls it with ``STATE_LOCK`` held and makes the Ray calls (the request, the lease, the
reports).
"""

from __future__ import annotations

from typing import Any

from raypw.promise import Promise
from raypw.protocol import DirectOutcome, FastPathReport, FastPathRun, Lease

__all__ = ["REPORT_SECONDS", "FastPath"]

# A report goes at once if a submit reserved the request's worker (the worker waits for it),
# else within this many seconds: one after every request cost the next lone request its p99
# (3.3 ms, down to 2.4 ms without).
REPORT_SECONDS = 0.5


class FastPath:
    """The fast path of one client.

    Args:
        client: The client's id, which its reports carry.
        allowed: Whether the service lets this client use the fast path at all.

    Attributes:
        allowed: See above.
        lease: The worker lone requests go to; None until the coordinator lends one.
        lease_wanted: The sender should ask the coordinator for a (new) lease.
        promise: The lone request running on the leased worker (at most one at a time).
        ref: The ``ObjectRef`` of its call.
        went_to: The lease the last fast-path request went to (its worker's slot, actor
            handle and process id), kept after it ended, for its death if it died.
        sent: Requests that took the fast path.
        died: Request id -> the run (slot and process), for fast-path requests whose worker
            died under them, until they are sent the usual way.
    """

    __slots__ = (
        "_reserved_for",
        "_since",
        "_unreported",
        "allowed",
        "client",
        "died",
        "lease",
        "lease_wanted",
        "promise",
        "ref",
        "report_at",
        "sent",
        "went_to",
    )

    def __init__(self, client: str, allowed: bool) -> None:
        self.client = client
        self.allowed = allowed
        self.lease: Lease | None = None
        self.lease_wanted = False
        self.promise: Promise[Any] | None = None
        self.ref: Any = None
        self.went_to: Lease | None = None
        self._since = 0.0  # when the running one was sent
        self.sent = 0
        self.died: dict[int, FastPathRun] = {}
        # What the fast path did since the coordinator was last told (it keeps the counts).
        self._unreported: FastPathReport | None = None
        # When the report is due (see REPORT_SECONDS); None: there is nothing to report.
        self.report_at: float | None = None
        self._reserved_for = 0  # the request a submit last reserved its worker for

    def free_lease(self) -> Lease | None:
        """The lease, if no fast-path request runs now. Without one (the last renewal came
        back empty: no worker was up, e.g. the leased one restarting), asks for one again,
        or the fast path would stay off for good."""
        if self.lease is None and self.allowed:
            self.lease_wanted = True
        return self.lease if self.promise is None else None

    def begin(self, promise: Promise[Any], lease: Lease) -> None:
        """``promise`` goes to the leased worker (it is about to be sent)."""
        self.went_to = lease
        self.promise = promise

    def sent_as(self, ref: Any, now: float) -> None:
        """The running request was sent at ``now``; ``ref`` is its call's."""
        self.ref = ref
        self._since = now
        self.sent += 1

    def reserve(self) -> FastPathRun | None:
        """For a submit about to go: the running request, whose worker that submit's
        requests must wait for; None if none runs."""
        promise = self.promise
        if promise is None:
            return None
        self._reserved_for = promise._id
        return self._run(promise)

    def deaths_among(self, promises: list[Promise[Any]]) -> list[FastPathRun] | None:
        """The deaths on the fast path of these requests (about to be sent), taken out of
        :attr:`died`; None if none."""
        died = self.died
        found = [died.pop(p._id) for p in promises if p._id in died]
        return found or None

    def forget(self, request_id: int) -> None:
        """A request ended another way: its death on the fast path counts no more."""
        if self.died:
            self.died.pop(request_id, None)

    def lose_lease(self) -> None:
        """The leased worker is gone (it died, it left, the coordinator was replaced): the
        next lone request takes the usual way until a new lease comes."""
        self.lease = None
        self.lease_wanted = True

    def failed(self, promise: Promise[Any], died: bool) -> None:
        """``promise`` got no outcome from its worker and goes the usual way (``died``: with
        its worker's death counted against its retries)."""
        self.lose_lease()
        if died:
            self.died[promise._id] = self._run(promise)

    def _run(self, promise: Promise[Any]) -> FastPathRun:
        """``promise``, a fast-path request, and where it went, for the coordinator."""
        went_to = self.went_to
        assert went_to is not None  # begin() came first
        return FastPathRun(went_to.worker, promise._id, went_to.pid)

    def ended(self, promise: Promise[Any], outcome: DirectOutcome | None, now: float) -> bool:
        """Adds a fast-path request that ended on its worker (``outcome``: processed; None:
        it was not) to the next report. Returns whether that report is due at once (a
        submit reserved the worker for it)."""
        if self.promise is promise:
            self.promise = self.ref = None
        last = self._unreported or FastPathReport(self.client, 0, 0, 0, 0.0, 0.0)
        processed = outcome is not None
        self._unreported = FastPathReport(
            self.client,
            max(last.finished, promise._id),
            last.processed + processed,
            last.failed + (outcome is not None and outcome.error is not None),
            last.seconds + (outcome.seconds if outcome is not None else 0.0),
            last.waited + (now - self._since if processed else 0.0),
        )
        if promise._id == self._reserved_for:
            self.report_at = now
            return True
        if self.report_at is None:
            self.report_at = now + REPORT_SECONDS
        return False

    def take_report(self) -> FastPathReport | None:
        """The report to send now, if there is one; the next one starts empty."""
        report, self._unreported = self._unreported, None
        self.report_at = None
        return report

    def report_in(self, now: float) -> float | None:
        """Seconds until the report is due (0.0: now); None: there is none."""
        due = self.report_at
        return None if due is None else max(0.0, due - now)
