"""The autoscaling rule: how many workers the work waiting now calls for. Plain Python, no
Ray: the coordinator feeds it the scheduler's numbers every ``check_seconds``."""

from __future__ import annotations

import math
from collections.abc import Sequence

from raypw.config import AutoscaleConfig

__all__ = ["Autoscaler"]

# After a worker could not be added (its constructor raised, or it found no place in time),
# growing pauses this long rather than retrying every check.
GROW_PAUSE_SECONDS = 30.0


class Autoscaler:
    """Decides the pool's size from the waiting work and the idle workers.

    Args:
        config: The service's autoscaling settings.
    """

    def __init__(self, config: AutoscaleConfig) -> None:
        self.config = config
        self._paused_until = -math.inf

    def target(
        self,
        *,
        workers: int,
        waiting: int,
        typical_seconds: float | None,
        idle_since: Sequence[float],
        now: float,
    ) -> int:
        """Returns the number of workers wanted now.

        Args:
            workers: Workers in the pool now (those still starting included).
            waiting: Requests not started: queued, or sent ahead behind a running one.
            typical_seconds: The usual time one request takes; None before any was timed.
            idle_since: When each idle worker became idle.
            now: The time, on the clock of ``idle_since``.
        """
        config = self.config
        low, high = config.min_workers, config.max_workers
        if workers < low:
            return low
        if waiting:
            if typical_seconds is None or now < self._paused_until:
                return min(max(workers, low), high)
            work = waiting * typical_seconds
            if work / workers > config.target_wait_seconds:
                needed = math.ceil(work / config.target_wait_seconds)
                return min(max(needed, workers + 1), high)
            return min(workers, high)
        idle = sum(1 for since in idle_since if now - since >= config.idle_seconds)
        return max(low, min(workers - idle, high))

    def grow_failed(self, now: float) -> None:
        """A worker could not be added: hold growth for a while."""
        self._paused_until = now + GROW_PAUSE_SECONDS
