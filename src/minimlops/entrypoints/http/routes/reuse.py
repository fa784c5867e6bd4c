"""Answers reused for a few seconds: the dashboard polls /status, /models and
/events every 2 s, and on Google Cloud each answer runs BigQuery jobs (billed,
at least 10 MB a table). With ``MINIMLOPS_STATUS_CACHE_SECONDS`` (30 when
deployed) every poll within that time gets the same answer, and callers who
arrive while it is being computed wait for that one computation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any


class Reuse:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._answers: dict[Hashable, tuple[float, asyncio.Future[Any]]] = {}

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[Any]]) -> Any:
        if not self.seconds:
            return await compute()
        now = time.monotonic()
        held = self._answers.get(key)
        if (
            held is None
            or now - held[0] > self.seconds
            or (held[1].done() and held[1].exception() is not None)
        ):
            future: asyncio.Future[Any] = asyncio.ensure_future(compute())
            self._answers[key] = held = (now, future)
        return await asyncio.shield(held[1])
