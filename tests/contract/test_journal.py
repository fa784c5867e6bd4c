"""The local prediction journal: durable at once, imported exactly once."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from minimlops.adapters.duckdb_warehouse import DuckDBWarehouse
from minimlops.adapters.journal import PredictionJournal, SegmentWriter, encode
from minimlops.errors import QueryError
from tests.conftest import SCHEMAS


def _row(i: int) -> dict:
    return {
        "uuid": f"u{i}",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "model_version": "1",
        "PassengerId": None,
        "Pclass": 3,
        "Name": None,
        "Sex": "male",
        "Age": None,
        "SibSp": 0,
        "Parch": 0,
        "Ticket": None,
        "Fare": 7.25,
        "Cabin": None,
        "Embarked": "S",
        "probability": 0.25,
        "prediction": 0,
    }


class Journal:
    """The importer, and a writer to its top directory (as the server's journal process)."""

    def __init__(self, tmp_path: Path, wh: DuckDBWarehouse) -> None:
        self.importer = PredictionJournal(tmp_path / "journal", wh, "predictions_data")
        self._writer = SegmentWriter(tmp_path / "journal")
        self.import_pending = self.importer.import_pending

    def write(self, rows: list[dict]) -> None:
        """As a journal process appends one group: encoded JSON lines, synced."""
        self._writer.append(encode(rows))

    def close(self) -> None:
        self.importer.close()
        self._writer.close()


def _open(tmp_path: Path) -> tuple[DuckDBWarehouse, Journal]:
    wh = DuckDBWarehouse(
        tmp_path / "w.duckdb", SCHEMAS, "ingestion_ledger", readable=(tmp_path / "journal",)
    )
    wh.ensure_tables()
    return wh, Journal(tmp_path, wh)


@contextlib.contextmanager
def _busy(journal: Journal) -> Iterator[list[int]]:
    """A server that never pauses: a group every 5 ms (never quiet for a
    whole look) while the block runs; yields the count written so far."""
    written, stop = [0], threading.Event()

    def busy() -> None:
        while not stop.is_set():
            journal.write([_row(written[0])])
            written[0] += 1
            time.sleep(0.005)

    writer = threading.Thread(target=busy)
    writer.start()
    try:
        yield written
        assert writer.is_alive()
    finally:
        stop.set()
        writer.join()


def _uuids(wh: DuckDBWarehouse) -> list[str]:
    return sorted(r["uuid"] for r in wh.query("SELECT uuid FROM predictions_data").to_pylist())


def test_rows_written_before_a_crash_are_imported_once_at_restart(tmp_path: Path) -> None:
    wh, journal = _open(tmp_path)
    journal.write([_row(1), _row(2)])
    assert journal.import_pending() == 2
    journal.write([_row(3)])
    # crash: no close, no import; the process's files are left as they are
    wh.close()
    wh2, journal2 = _open(tmp_path)
    journal2.import_pending()
    assert _uuids(wh2) == ["u1", "u2", "u3"]
    assert journal2.import_pending() == 0
    journal2.close()
    assert _uuids(wh2) == ["u1", "u2", "u3"]
    row = wh2.query("SELECT * FROM predictions_data WHERE uuid = 'u1'").to_pylist()[0]
    assert row["Fare"] == 7.25 and row["Age"] is None and row["created_at"].year == 2026
    wh2.close()


@pytest.mark.parametrize("zeroed", [False, True])
def test_a_torn_last_line_is_never_imported(tmp_path: Path, zeroed: bool) -> None:
    """In a plain segment and in one written over zeros alike."""
    import os

    wh, journal = _open(tmp_path)
    writer = journal._writer
    if zeroed:
        _wait_for_zeros(writer)
    journal.write([_row(1)])
    assert writer._zeroed is zeroed
    with open(writer.segment, "r+b") as fh:
        os.pwrite(fh.fileno(), b'{"uuid": "half-writ', writer._size)  # a crash mid-write
    assert journal.import_pending() == 1
    assert _uuids(wh) == ["u1"]
    wh.close()


def _wait_for_zeros(writer: SegmentWriter) -> None:
    """Until the writer's spare is made and its next group goes to it."""

    deadline = time.monotonic() + 30
    while not (writer.dir / ".spare").exists():
        assert time.monotonic() < deadline, "no spare segment"
        time.sleep(0.01)
    writer._rotate()


def test_a_failed_write_is_cut_off_and_later_rows_stay_readable(
    tmp_path: Path, monkeypatch
) -> None:
    import os

    wh, journal = _open(tmp_path)
    journal.write([_row(1)])
    real_write = os.pwrite

    calls = []

    def half_then_fail(fd: int, data: bytes, at: int) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[: len(data) // 2]), at)  # a short write
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", half_then_fail)
    try:
        journal.write([_row(2)])
    except OSError as exc:
        assert exc.errno == 28
    monkeypatch.setattr(os, "pwrite", real_write)
    journal.write([_row(3)])
    assert journal.import_pending() == 2
    assert _uuids(wh) == ["u1", "u3"]
    wh.close()


def test_rows_of_every_serving_process_are_imported_once_and_old_segments_go(
    tmp_path: Path, monkeypatch
) -> None:
    import minimlops.adapters.journal as journal_module

    wh, journal = _open(tmp_path)
    other = SegmentWriter(tmp_path / "journal" / "serving-1")  # another serving process
    journal.write([_row(1)])
    other.append(encode([_row(2), _row(3)]))
    assert journal.import_pending() == 3
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 1)  # every write rotates
    other.append(encode([_row(4)]))  # its old segment is now complete, the new one empty
    other.close()
    restarted = SegmentWriter(tmp_path / "journal" / "serving-1")  # the process came back
    restarted.append(encode([_row(5)]))
    assert journal.import_pending() == 2
    assert journal.import_pending() == 0
    assert _uuids(wh) == ["u1", "u2", "u3", "u4", "u5"]
    left = sorted(p.name for p in (tmp_path / "journal" / "serving-1").glob("*.jsonl"))
    assert left == [restarted.segment.name]  # imported, no longer written: deleted
    restarted.close()
    journal.close()
    wh.close()


def test_a_full_disk_fails_groups_without_making_segments(tmp_path: Path, monkeypatch) -> None:
    """Each failed group is cut off its segment; no new segment is made for
    it (a long outage would pile them up), and rows flow again after."""
    import os

    wh, journal = _open(tmp_path)
    journal.write([_row(1)])
    real_write = os.pwrite

    def full(fd: int, data: bytes, at: int) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    for _ in range(20):
        with pytest.raises(OSError):
            journal.write([_row(2)])
    monkeypatch.setattr(os, "pwrite", real_write)
    journal.write([_row(3)])
    assert len(list((tmp_path / "journal").glob("*.jsonl"))) <= 2  # (a spare may be in place)
    assert journal.import_pending() == 2 and _uuids(wh) == ["u1", "u3"]
    wh.close()


def test_a_segment_that_cannot_be_made_durable_is_never_written_after(
    tmp_path: Path, monkeypatch
) -> None:
    """A rotation whose new name cannot be synced leaves a newer segment
    beside the current one (the importer then deletes the current one once
    imported): the next group fails or goes to a new segment, never to the
    current one, and every group acknowledged is imported."""
    import minimlops.adapters.journal as journal_module

    wh, journal = _open(tmp_path)
    writer = journal._writer
    journal.write([_row(1)])
    real_sync, failing = journal_module.fsync_dir, [True]

    def sync(path: Path) -> None:
        if failing[0]:
            raise OSError(5, "Input/output error")
        real_sync(path)

    monkeypatch.setattr(journal_module, "fsync_dir", sync)
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 1)  # the next write rotates
    journal.write([_row(2)])  # durable; its rotation fails, quietly
    first = writer.segment
    assert journal.import_pending() == 2  # the newer name is there: the first goes
    with pytest.raises(OSError):
        journal.write([_row(3)])  # still no segment: this group fails, not acknowledged
    failing[0] = False
    journal.write([_row(4)])
    assert writer.segment != first
    assert journal.import_pending() == 1
    assert _uuids(wh) == ["u1", "u2", "u4"]
    wh.close()


def test_segments_written_over_zeros_read_back_whole_and_the_spare_is_never_imported(
    tmp_path: Path, monkeypatch
) -> None:
    """A segment written over zeros ends at its first zero: the importer
    reads what was written (not the zeros), the spare is neither read nor
    deleted, and a full segment moves to the next spare."""
    import minimlops.adapters.journal as journal_module

    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 4096)
    wh, journal = _open(tmp_path)
    writer = journal._writer
    _wait_for_zeros(writer)
    assert writer._zeroed and (tmp_path / "journal" / writer.segment.name).stat().st_size == 4096
    for i in range(40):  # ~250 bytes a row: the segments fill and move on
        journal.write([_row(i)])
        if i % 10 == 9:
            assert journal.import_pending() == 10
    assert journal.import_pending() == 0
    assert _uuids(wh) == sorted(f"u{i}" for i in range(40))
    names = {p.name for p in (tmp_path / "journal").iterdir()}
    assert names <= {writer.segment.name, ".spare"} | {f for f in names if f.endswith(".part")}
    assert journal.importer._sizes() == {str(writer.segment): writer._size}
    journal.close()


def test_every_value_reads_back_as_it_was_answered(tmp_path: Path) -> None:
    """What the journal writes is what the table holds: timestamps with and
    without microseconds, integers at the ends of BIGINT, floats, text."""
    wh, journal = _open(tmp_path)
    at = datetime(2026, 12, 2, 12, 31, 28, 484924, tzinfo=UTC)
    rows = [
        _row(1)
        | {
            "created_at": at,
            "SibSp": 2**63 - 1,
            "Parch": -(2**63),
            "Fare": 0.1,
            "Name": 'Zoë "Q" O\'Neil\n',
            "probability": 1e-300,
        },
        _row(2) | {"created_at": at.replace(microsecond=0), "Age": 22.5},
    ]
    journal.write(rows)
    journal.import_pending()
    got = wh.query("SELECT * FROM predictions_data ORDER BY uuid").to_pylist()
    for want, row in zip(rows, got, strict=True):
        assert {k: row[k] for k in want} == want
    journal.close()


def test_the_warehouse_reads_files_from_the_journal_only(tmp_path: Path) -> None:
    """The importer's DuckDB may read the journal's directory (what
    predictions_data holds); user SQL still reads no other file."""
    wh, journal = _open(tmp_path)
    journal.write([_row(1)])
    assert journal.import_pending() == 1
    beside = tmp_path / "journal-other"  # a name the journal's is a prefix of
    beside.mkdir()
    (beside / "x.csv").write_text("a\n1\n")
    for path in ("/etc/passwd", str(beside / "x.csv")):
        with pytest.raises(QueryError, match="disabled"):
            wh.query(f"SELECT * FROM read_csv('{path}')")
    journal.close()


def test_the_background_importer_keeps_up_with_a_busy_server_and_catches_up_after(
    tmp_path: Path,
) -> None:
    """Rows reach the table while writes never pause (the importer does not
    wait for a lull for ever), all of them once writes stop, each once."""
    wh, journal = _open(tmp_path)
    importer = journal.importer
    importer.import_every, importer.look_every = 0.3, 0.05
    importer.start()
    with _busy(journal) as written:
        deadline = time.monotonic() + 30
        while not _uuids(wh) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _uuids(wh), "nothing imported while the server stayed busy"
    want = sorted(f"u{i}" for i in range(written[0]))
    deadline = time.monotonic() + 30
    while _uuids(wh) != want and time.monotonic() < deadline:  # no read asks for them
        time.sleep(0.05)
    assert _uuids(wh) == want
    journal.close()
    assert _uuids(wh) == want
    wh.close()


def test_a_read_sees_every_row_logged_before_it_whenever_the_importer_runs(
    tmp_path: Path,
) -> None:
    """The importer's own rhythm is seconds under load; a reader that imports
    first (as the server's routes and consumers do) misses nothing, and what
    is already in the table is not added again."""
    wh, journal = _open(tmp_path)
    importer = journal.importer
    importer.import_every = importer.look_every = 3600
    importer.start()
    journal.write([_row(1), _row(2)])
    importer.import_pending()  # what a route does before it reads
    assert _uuids(wh) == ["u1", "u2"]
    journal.write([_row(3)])
    importer.import_pending()
    importer.import_pending()
    assert _uuids(wh) == ["u1", "u2", "u3"]
    journal.close()
    wh.close()


@pytest.mark.parametrize("logged_enough", [True, False])
def test_a_lull_folds_the_write_ahead_log_into_the_file_once_it_holds_enough(
    tmp_path: Path, logged_enough: bool
) -> None:
    """DuckDB's checkpoints are bursts of CPU: the importer takes one in a
    lull once the log holds ``checkpoint_bytes``, whoever imported the rows
    (here a reader, as a route does before it reads), and leaves a smaller
    log for a later lull (or DuckDB's own threshold)."""
    wh, journal = _open(tmp_path)
    wal = tmp_path / "w.duckdb.wal"
    importer = journal.importer
    importer.import_every, importer.look_every = 3600, 0.05
    importer.lull_checkpoint_every, importer.checkpoint_every = 0, 3600
    importer.checkpoint_bytes = 1 if logged_enough else 1 << 30
    importer.start()
    journal.write([_row(i) for i in range(200)])
    assert importer.import_pending() == 200  # a reader's import, not the thread's
    deadline = time.monotonic() + 30
    while logged_enough and wal.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # a few more looks: nothing new, so nothing more is done
    assert wal.exists() is not logged_enough
    if not logged_enough:
        assert wh.checkpoint(min_bytes=1 << 30) is False and wal.exists()
        assert wh.checkpoint() is True and not wal.exists()
    assert wh.checkpoint() is False  # nothing logged since
    journal.close()
    wh.close()
    reopened = DuckDBWarehouse(tmp_path / "w.duckdb", SCHEMAS, "ingestion_ledger")
    assert len(_uuids(reopened)) == 200
    reopened.close()


def test_a_server_that_never_pauses_still_checkpoints_on_a_clock(
    tmp_path: Path,
) -> None:
    """Without a lull the importer checkpoints on its clock (``checkpoint_every``)
    while the writes go on, so rows appended wait in memory a bounded time
    (lulls are kept out of it: a loaded machine may pause the writer)."""
    wh, journal = _open(tmp_path)
    wal = tmp_path / "w.duckdb.wal"
    importer = journal.importer
    importer.import_every, importer.look_every = 0.2, 0.05
    importer.checkpoint_bytes, importer.checkpoint_every = 1, 0.5
    importer.lull_checkpoint_every = 3600
    importer.start()
    shrank, biggest = False, 0
    with _busy(journal) as written:
        deadline = time.monotonic() + 30
        while not shrank and time.monotonic() < deadline:
            try:
                size = wal.stat().st_size
            except FileNotFoundError:  # just checkpointed
                size = 0
            shrank = size < biggest  # folded into the file: the log starts again
            biggest = max(biggest, size)
            time.sleep(0.01)
    assert shrank, "the write-ahead log was never checkpointed while the writes went on"
    journal.close()
    assert len(_uuids(wh)) == written[0]
    wh.close()
