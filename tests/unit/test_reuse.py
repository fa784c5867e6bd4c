"""/status, /models and /events answers reused for MINIMLOPS_STATUS_CACHE_SECONDS
(30 when deployed): the dashboard's polls then run BigQuery jobs twice a
minute, not thirty times."""

from __future__ import annotations

import asyncio

import pytest

from minimlops.entrypoints.http.routes.reuse import Reuse


def test_answers_are_reused_within_the_window_and_shared_by_concurrent_callers() -> None:
    runs = []

    async def compute() -> int:
        runs.append(1)
        await asyncio.sleep(0.05)
        return len(runs)

    async def main() -> None:
        reuse = Reuse(30)
        first = await asyncio.gather(*(reuse.get("status", compute) for _ in range(5)))
        assert first == [1] * 5 and len(runs) == 1  # five polls at once: one computation
        assert await reuse.get("status", compute) == 1 and len(runs) == 1
        assert await reuse.get("events", compute) == 2  # another answer, its own
        reuse.seconds = 0.01
        await asyncio.sleep(0.02)
        assert await reuse.get("status", compute) == 3  # the window passed: computed again

    asyncio.run(main())


def test_off_computes_every_time_and_a_failure_is_not_kept() -> None:
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("BigQuery said no")
        return "fine"

    async def main() -> None:
        reuse = Reuse(30)
        with pytest.raises(RuntimeError):
            await reuse.get("status", flaky)
        assert await reuse.get("status", flaky) == "fine"  # the error was not reused
        off = Reuse(0)
        await off.get("x", flaky)
        await off.get("x", flaky)
        assert len(calls) == 4

    asyncio.run(main())
