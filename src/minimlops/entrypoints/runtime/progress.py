"""Progress of long work as log lines, at most one per second per step."""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("minimlops.progress")


class ThrottledProgress:
    """A Progress callback that logs ``step: 42% (done of total)``."""

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, step: str, done: int, total: int) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(step)
            finished = total > 0 and done >= total
            if last == float("inf") or (
                last is not None and not finished and now - last < self.every
            ):
                return
            self._last[step] = float("inf") if finished else now
        if total > 0:
            logger.info(
                "%s: %d%% (%s of %s)",
                step,
                min(100, 100 * done // total),
                f"{done:,}",
                f"{total:,}",
            )
        else:
            logger.info("%s", step)
