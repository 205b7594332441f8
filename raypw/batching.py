"""How many queued requests the coordinator hands a worker at once.

Each batch costs a few milliseconds of CPU outside the worker: the coordinator sends it and
takes its report, the client learns where its results are and fetches them. On a 2-core
machine that CPU is taken from the workers. The policy sizes batches so that this overhead
stays a small fraction of the work: it measures the seconds per request and the round trip
per call (which grows with that CPU cost), and aims each batch at ``OVERHEAD_FACTOR`` times
the round trip, never below ``target_batch_seconds`` nor above ``max_batch_seconds``.
Requests of 50 ms or more go one at a time; 5 ms requests go a few dozen at a time, no-op
requests by the thousand. Near the end of the queue the batches shrink so that every worker
gets a share.

The sizer knows what it does not know: a batch holds at most as many requests as have been
timed so far (1, then 2, 4, ...), so one cheap warm-up request does not send the slow ones
behind it out together. (Batch size only costs throughput, not latency: outcomes stream back
as they are produced, and an idle worker takes unstarted requests back from a busy one.)
"""

from __future__ import annotations

import math

__all__ = ["BatchSizer"]

# Weight of the newest measurement in the moving averages: high enough to follow a workload
# that changes, low enough to ride over one odd batch.
_SMOOTHING = 0.3
# A batch carries this many times the per-call round trip of work. Measured on 2 cores with
# 2,000 x 5 ms requests (alternating runs in one process): 25 reached 0.87 of the ideal
# time, 50 reached 0.92, 80 was no better.
OVERHEAD_FACTOR = 50.0
# Coordinator CPU per batch (sending it, its run() call, its end), measured on the 2-core
# machine; on a wide pool batches grow so that they take at most BATCH_SHARE of its core
# (README "Scaling"). With outcomes streamed and unstarted work takeable, a bigger batch costs
# no latency and no balance.
BATCH_COST_SECONDS = 0.0005
BATCH_SHARE = 0.2
# Requests that take this long or more go one per batch: their results arrive one by one in
# the order they finish, and batching them would save little against a round trip of ~3 ms.
SINGLE_REQUEST_SECONDS = 0.05


class BatchSizer:
    """Chooses batch sizes from the measured seconds per request and overhead per call.

    Args:
        target_batch_seconds: Least work one batch should carry.
        max_batch_size: Upper bound on requests per batch.
        max_batch_seconds: Most work one batch should carry.
    """

    def __init__(
        self, target_batch_seconds: float, max_batch_size: int, max_batch_seconds: float = 0.25
    ) -> None:
        self.target_batch_seconds = target_batch_seconds
        self.max_batch_size = max_batch_size
        self.max_batch_seconds = max(max_batch_seconds, target_batch_seconds)
        self.seconds_per_request: float | None = None
        self.overhead_seconds: float | None = None
        self.timed = 0  # requests timed so far
        # The usual time per request, slow to follow outliers: a hung request must not make
        # the next hang look normal (see Scheduler's stall rule).
        self.typical_seconds: float | None = None

    def record(self, seconds: float, processed: int, overhead: float | None = None) -> None:
        """Records a finished batch.

        Args:
            seconds: Time the worker spent processing the batch.
            processed: Requests it processed.
            overhead: Time the call took beyond ``seconds`` (dispatch to report), if known.
        """
        if overhead is not None and overhead >= 0:
            self.overhead_seconds = _average(self.overhead_seconds, overhead)
        if processed > 0:
            each = max(seconds, 0.0) / processed
            typical = self.typical_seconds
            self.typical_seconds = _average(
                typical, each if typical is None else min(each, 4 * typical)
            )
            self.timed += processed
            self.seconds_per_request = _average(
                self.seconds_per_request, max(seconds, 0.0) / processed
            )

    @property
    def batch_seconds(self) -> float:
        """Work the next batch aims at."""
        wanted = self.target_batch_seconds
        if self.overhead_seconds is not None:
            wanted = max(wanted, OVERHEAD_FACTOR * self.overhead_seconds)
        return min(wanted, self.max_batch_seconds)

    def next_size(self, queued: int, workers: int) -> int:
        """Returns the size of the next batch.

        Args:
            queued: Requests waiting in the queue.
            workers: Workers that share the queue.
        """
        if queued <= 0:
            return 0
        wide = workers * BATCH_COST_SECONDS / BATCH_SHARE  # seconds of work per batch
        if self.seconds_per_request is None:
            size = 1  # nothing measured yet: one request tells us its cost
        elif self.seconds_per_request >= SINGLE_REQUEST_SECONDS and wide <= self.batch_seconds:
            size = 1
        elif self.seconds_per_request <= 0:
            size = self.max_batch_size
        else:
            size = int(max(self.batch_seconds, wide) / self.seconds_per_request)
        fair_share = math.ceil(queued / max(workers, 1))
        return max(1, min(size, self.max_batch_size, fair_share, self.timed))


def _average(current: float | None, sample: float) -> float:
    return sample if current is None else current + _SMOOTHING * (sample - current)
