"""JournalLog: group commit through a journal process, as each serving process runs it."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest

from minimlops.adapters.journal import JournalLog, written


def _rows(i: int, n: int = 1) -> list[dict[str, Any]]:
    return [{"uuid": f"u{i}-{k}", "probability": 0.25} for k in range(n)]


def _written(directory: Path) -> list[str]:
    """The rows the segments hold, each read up to its zeros as the importer
    reads it (a segment moved onto a spare is written over 64 MB of zeros)."""
    segments = sorted(directory.glob("*.jsonl"))
    lines = b"".join(p.read_bytes()[: written(p)] for p in segments).splitlines()
    return [orjson.loads(line)["uuid"] for line in lines]


async def _running(log: JournalLog) -> asyncio.Task[None]:
    task = asyncio.create_task(log.run())
    await asyncio.sleep(0)
    return task


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_logged_rows_are_on_disk_when_log_returns_and_groups_form_under_load(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        log = JournalLog(tmp_path / "j")
        task = await _running(log)
        await log.log(_rows(0, 3))  # waits for the process to start, then for the sync
        assert _written(tmp_path / "j") == ["u0-0", "u0-1", "u0-2"]
        await asyncio.gather(*(log.log(_rows(i)) for i in range(1, 201)))
        assert len(_written(tmp_path / "j")) == 203
        assert log.rows == 203 and log.batches < 100  # concurrent requests shared syncs
        await _stop(task)

    asyncio.run(main())


def test_a_failed_write_fails_its_requests_with_the_reason_and_later_ones_succeed(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        blocked = tmp_path / "j"
        blocked.write_text("a file where the journal directory should be")
        log = JournalLog(blocked)
        task = await _running(log)
        with pytest.raises(OSError, match="j"):
            await log.log(_rows(1))
        blocked.unlink()  # the operator fixes it: no restart needed
        await log.log(_rows(2))
        assert _written(blocked) == ["u2-0"]
        await _stop(task)

    asyncio.run(main())


def test_a_killed_journal_process_fails_what_it_held_and_is_started_again(tmp_path: Path) -> None:
    async def main() -> None:
        log = JournalLog(tmp_path / "j")
        task = await _running(log)
        await log.log(_rows(1))
        assert log._proc is not None
        os.kill(log._proc.pid, signal.SIGKILL)
        answers = await asyncio.gather(
            *(log.log(_rows(i)) for i in range(2, 12)), return_exceptions=True
        )
        failed = [a for a in answers if isinstance(a, Exception)]
        assert all("exited" in str(a) or "not running" in str(a) for a in failed)
        ok = [f"u{i}-0" for i, a in zip(range(2, 12), answers, strict=True) if a is None]
        await asyncio.wait_for(log.log(_rows(99)), 10)  # served by the new process
        written = _written(tmp_path / "j")
        assert set(ok) <= set(written) and "u99-0" in written  # every success was stored
        await _stop(task)

    asyncio.run(main())


def test_stopping_writes_what_is_pending_first(tmp_path: Path) -> None:
    async def main() -> None:
        log = JournalLog(tmp_path / "j", flush_ms=50)  # rows wait a while before each sync
        task = await _running(log)
        await log.log(_rows(0))
        waiters = [asyncio.create_task(log.log(_rows(i))) for i in range(1, 50)]
        await asyncio.sleep(0)
        await _stop(task)
        await asyncio.gather(*waiters)  # each answered: durable
        assert len(_written(tmp_path / "j")) == 50
        with pytest.raises(OSError, match="stopped"):
            await log.log(_rows(100))

    asyncio.run(main())


def test_rows_written_over_a_spare_segments_zeros_read_back_whole(tmp_path: Path) -> None:
    """A journal that starts with a spare segment ready writes over its zeros
    (as a server does once its first spare is made): every row reads back,
    and the segment's length stays the spare's."""
    directory = tmp_path / "j"
    directory.mkdir()
    (directory / ".spare").write_bytes(bytes(1 << 20))

    async def main() -> None:
        log = JournalLog(directory)
        task = await _running(log)
        await asyncio.gather(*(log.log(_rows(i)) for i in range(20)))
        await _stop(task)

    asyncio.run(main())
    (segment,) = sorted(directory.glob("*.jsonl"))
    assert segment.stat().st_size == 1 << 20  # written over the zeros, not appended
    assert sorted(_written(directory)) == sorted(f"u{i}-0" for i in range(20))
