"""Every line a processor prints reaches the driver's terminal.

Ray forwards what worker processes write to stdout and stderr to the driver, prefixed with
``(_Worker pid=...)``. Two of its defaults lose lines for a pool of equal workers:

- **Deduplication.** Lines that differ only in numbers ("hola1 arrived", "hola2 arrived")
  from different workers within five seconds are folded into one "[repeated Nx across
  cluster]" line. raypw turns that off (``RAY_DEDUP_LOGS=0``) unless the program set
  ``RAY_DEDUP_LOGS`` itself. Ray reads the variable when it is imported, so raypw sets it when
  it is imported, and if Ray was imported first, switches the flag Ray read.
- **Shutdown.** Ray's log monitor ships new lines about every 0.1 s; a program that stops its
  service and exits at once loses what was still on its way. :class:`OutputWatch` notes when
  worker output last reached this driver, and ``stop()`` waits, before ending the workers and
  Ray, until none has come for :data:`QUIET_SECONDS` (at most :data:`DRAIN_LIMIT_SECONDS`).

To drop the prefix, set ``RAY_DISABLE_WORKER_LOG_PREFIX=1`` before Ray is imported.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
from typing import Any

__all__ = ["DRAIN_LIMIT_SECONDS", "QUIET_SECONDS", "OutputWatch", "show_every_line"]

logger = logging.getLogger("raypw")

# The log monitor polls every 0.1 s when idle and publishes at once when busy: 0.3 s without
# a line means none is on its way.
QUIET_SECONDS = 0.3
# stop() waits at most this long for worker output (a worker printing all the time).
DRAIN_LIMIT_SECONDS = 3.0

_USER_CHOSE_DEDUP = "RAY_DEDUP_LOGS" in os.environ


def show_every_line() -> None:
    """Turns Ray's log deduplication off unless the program chose it (see the module)."""
    if _USER_CHOSE_DEDUP:
        return
    os.environ["RAY_DEDUP_LOGS"] = "0"
    if "ray" in sys.modules:  # imported before raypw: its flag was read already
        try:
            from ray._private import ray_logging

            ray_logging.RAY_DEDUP_LOGS = False  # type: ignore[attr-defined]
        except (ImportError, AttributeError):  # another Ray version: its default stays
            logger.debug("could not turn Ray's log deduplication off", exc_info=True)


class OutputWatch:
    """Notes when worker output last reached this driver (Ray's log dispatcher), so that
    :meth:`drain` can wait until none is on its way."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._last: float | None = None  # monotonic time of the last worker line seen
        self._name = f"raypw-output-{uuid.uuid4().hex}"
        self._dispatcher: Any = None
        try:
            from ray._private.ray_logging import global_worker_stdstream_dispatcher
        except ImportError:  # another Ray version: stop() then does not wait
            return
        self._dispatcher = global_worker_stdstream_dispatcher
        self._dispatcher.add_handler(self._name, self._saw)

    def _saw(self, data: dict[str, Any]) -> None:
        if data.get("pid") in ("raylet", "autoscaler", "gcs_server", "runtime_env"):
            return
        with self._cond:
            self._last = time.monotonic()
            self._cond.notify_all()

    def drain(self) -> None:
        """If workers printed anything, waits until no output came for :data:`QUIET_SECONDS`
        counted from now at the earliest (a last line may be on its way)."""
        began = time.monotonic()
        limit = began + DRAIN_LIMIT_SECONDS
        with self._cond:
            while self._last is not None:
                now = time.monotonic()
                quiet_at = max(self._last, began) + QUIET_SECONDS
                if now >= quiet_at or now >= limit:
                    return
                self._cond.wait(min(quiet_at, limit) - now)

    def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.remove_handler(self._name)
            self._dispatcher = None


# At import (raypw.service imports this module, so ``import raypw`` does): most programs
# import raypw before Ray, which then reads RAY_DEDUP_LOGS=0.
show_every_line()
