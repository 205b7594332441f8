"""A progress bar over finishing promises: a widget in Jupyter, a line in a terminal."""

from __future__ import annotations

import time
from typing import Any

from raypw.promise import ABORTED, DONE, FAILED, Promise

__all__ = ["Progress"]

#: Seconds between redraws: a million promises cost a few thousand bar updates, not a million.
REFRESH_SECONDS = 0.1


class Progress:
    """Counts finished promises by outcome and shows them on a ``tqdm.auto`` bar.

    Args:
        total: Number of promises the bar goes up to.
        desc: The bar's label.
    """

    def __init__(self, total: int, desc: str = "raypw") -> None:
        from tqdm.auto import tqdm

        self._bar: Any = tqdm(total=total, desc=desc, unit="req", dynamic_ncols=True)
        self._counts = {DONE: 0, FAILED: 0, ABORTED: 0}
        self._shown = 0
        self._last = 0.0

    def advance(self, promise: Promise[Any]) -> None:
        """Counts one finished promise; redraws at most every :data:`REFRESH_SECONDS`."""
        self._counts[promise._state] += 1
        now = time.monotonic()
        if now - self._last >= REFRESH_SECONDS:
            self._last = now
            self._show()

    def _show(self) -> None:
        counts = self._counts
        finished = counts[DONE] + counts[FAILED] + counts[ABORTED]
        self._bar.set_postfix_str(
            f"done={counts[DONE]:,} failed={counts[FAILED]:,} aborted={counts[ABORTED]:,}",
            refresh=False,
        )
        self._bar.update(finished - self._shown)
        self._shown = finished

    def close(self) -> None:
        """Shows the final counts and ends the bar (left on screen)."""
        self._show()
        self._bar.close()
