"""How many queued requests the coordinator hands an idle worker at once.

The policy aims each call at about ``target_batch_seconds`` of work, from the measured time
per request: ``sleep(5)`` requests go one at a time, no-op requests by the thousand, so the
per-call cost of Ray (about a millisecond) is paid per batch, not per request. Near the end
of the queue the batches shrink so that every worker gets a share.
"""

from __future__ import annotations

import math

__all__ = ["BatchSizer"]

# Weight of the newest measurement in the moving average of seconds per request: high
# enough to follow a workload that changes, low enough to ride over one odd batch.
_SMOOTHING = 0.3


class BatchSizer:
    """Chooses batch sizes from the measured seconds per request.

    Args:
        target_batch_seconds: Work one batch should carry.
        max_batch_size: Upper bound on requests per batch.
    """

    def __init__(self, target_batch_seconds: float, max_batch_size: int) -> None:
        self.target_batch_seconds = target_batch_seconds
        self.max_batch_size = max_batch_size
        self.seconds_per_request: float | None = None

    def record(self, seconds: float, processed: int) -> None:
        """Records that a batch processed ``processed`` requests in ``seconds``."""
        if processed <= 0:
            return
        sample = max(seconds, 0.0) / processed
        if self.seconds_per_request is None:
            self.seconds_per_request = sample
        else:
            self.seconds_per_request += _SMOOTHING * (sample - self.seconds_per_request)

    def next_size(self, queued: int, workers: int) -> int:
        """Returns the size of the next batch.

        Args:
            queued: Requests waiting in the queue.
            workers: Workers that share the queue.
        """
        if queued <= 0:
            return 0
        if self.seconds_per_request is None:
            size = 1  # nothing measured yet: one request tells us its cost
        elif self.seconds_per_request <= 0:
            size = self.max_batch_size
        else:
            size = int(self.target_batch_seconds / self.seconds_per_request)
        fair_share = math.ceil(queued / max(workers, 1))
        return max(1, min(size, self.max_batch_size, fair_share))
