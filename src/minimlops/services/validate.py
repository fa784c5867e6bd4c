"""CSV validation against the training_data schema, streamed with Arrow.

Arrow reads the file in blocks (quoted fields, CRLF, a UTF-8 BOM and quoted
newlines handled); every value is checked with vectorized Arrow compute, never
one Python object per row. Errors name the data row (1 = first row after the
header), the column, the value and the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from minimlops.domain.schema import (
    ALLOWED_VALUES,
    DATA_COLUMNS,
    RANGES,
    SPLIT_BOUNDS,
    SPLITS,
    table_schema,
)  # fmt: skip
from minimlops.errors import SchemaError

BLOCK_SIZE = 4 << 20
MAX_LISTED_ERRORS = 100
PATTERNS = {
    "INTEGER": r"^[+-]?[0-9]{1,18}$",
    "FLOAT": r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$",
}
TYPES = {"INTEGER": pa.int64(), "FLOAT": pa.float64(), "STRING": pa.string()}


@dataclass
class Report:
    """What validation found: counts and the first errors, row by row."""

    rows: int = 0
    bad_rows: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    file_errors: list[str] = field(default_factory=list)

    def add(self, row: int, column: str, value: Any, reason: str) -> None:
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append({"row": row, "column": column, "value": value,
                                "reason": reason})  # fmt: skip

    def summary(self) -> str:
        if self.file_errors:
            return "; ".join(self.file_errors)
        first = self.errors[0] if self.errors else None
        where = (f"; first: row {first['row']}, column {first['column']}: "
                 f"{first['reason']}") if first else ""  # fmt: skip
        return f"{self.bad_rows:,} of {self.rows:,} rows invalid{where}"


def read_header(stream: IO[bytes]) -> list[str]:
    """The column names of a CSV file, checked against the schema.

    Raises:
        SchemaError: empty, unreadable, or columns missing, unknown or doubled.
    """
    try:
        reader = pacsv.open_csv(
            stream, read_options=pacsv.ReadOptions(block_size=1 << 16),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
        )  # fmt: skip
        names = reader.schema.names
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise SchemaError(f"not a readable CSV file: {_first_line(exc)}") from None
    problems = []
    missing = [c for c in DATA_COLUMNS if c not in names]
    unknown = [c for c in names if c not in DATA_COLUMNS]
    doubled = sorted({c for c in names if names.count(c) > 1})
    if missing:
        problems.append(f"missing columns {missing}")
    if unknown:
        problems.append(f"unknown columns {unknown}")
    if doubled:
        problems.append(f"repeated columns {doubled}")
    if problems:
        hint = " (is the delimiter a comma?)" if len(names) == 1 else ""
        raise SchemaError("; ".join(problems) + f"; expected {list(DATA_COLUMNS)}{hint}")
    return names


def batches(stream: IO[bytes], names: list[str]) -> Iterator[pa.RecordBatch]:
    """Raw record batches, every column as text, empty fields as null."""
    reader = pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, null_values=[""],
            strings_can_be_null=True, quoted_strings_can_be_null=True,
        ),
    )  # fmt: skip
    yield from reader


def check_batch(batch: pa.RecordBatch, first_row: int, report: Report) -> pa.Table:
    """Typed, valid rows of a raw batch; errors of the others go to report."""
    columns: dict[str, pa.Array] = {}
    ok = pa.repeat(pa.scalar(True), batch.num_rows)
    for col in table_schema("training_data"):
        if col.name not in DATA_COLUMNS:
            continue
        typed, bad = _check_column(batch.column(col.name), col.name, col.type,
                                   col.required, first_row, report)  # fmt: skip
        columns[col.name] = typed
        ok = pc.and_(ok, pc.invert(bad))
    report.rows += batch.num_rows
    report.bad_rows += batch.num_rows - pc.sum(ok).as_py() if batch.num_rows else 0
    return pa.table(columns).filter(ok)


def _check_column(
    raw: pa.Array, name: str, bq_type: str, required: bool, first_row: int, report: Report
) -> tuple[pa.Array, pa.Array]:
    if bq_type in PATTERNS and (typed := _clean_cast(raw, bq_type)) is not None:
        return _check_values(typed, raw, pa.repeat(pa.scalar(False), len(raw)), name, required,
                             first_row, report)  # fmt: skip
    text = pc.utf8_trim_whitespace(raw)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    present = pc.is_valid(text)
    bad = pa.repeat(pa.scalar(False), len(text))
    if bq_type in PATTERNS:
        matches = pc.match_substring_regex(text, PATTERNS[bq_type])
        wrong = pc.fill_null(pc.and_(present, pc.invert(matches)), False)
        _note(report, wrong, text, name, first_row, f"not a valid {bq_type}")
        bad = pc.or_(bad, wrong)
        text = pc.if_else(wrong, pa.scalar(None, pa.string()), text)
    if bq_type == "INTEGER":  # Arrow's integer parser refuses a leading plus
        text = pc.replace_substring_regex(text, r"^\+", "")
    typed = pc.cast(text, TYPES.get(bq_type, pa.string()))
    return _check_values(typed, text, bad, name, required, first_row, report)


def _clean_cast(raw: pa.Array, bq_type: str) -> pa.Array | None:
    """The common case in one step: every value of a numeric column parses as
    it is (no spaces, finite). Arrow's parser accepts only what PATTERNS
    accepts, bar integers of 19 digits, which RANGES refuses; None sends the
    column through the slow path that names each bad value."""
    try:
        typed = pc.cast(raw, TYPES[bq_type])
    except pa.ArrowInvalid:
        return None
    if bq_type == "FLOAT" and pc.any(pc.invert(pc.is_finite(typed))).as_py():
        return None  # NaN or infinity: refused by the slow path, with its row
    return typed


def _check_values(typed: pa.Array, text: pa.Array, bad: pa.Array, name: str, required: bool,
                  first_row: int, report: Report) -> tuple[pa.Array, pa.Array]:  # fmt: skip
    if required:
        missing = pc.and_(pc.is_null(typed), pc.invert(bad))
        _note(report, missing, text, name, first_row, "required value is missing")
        bad = pc.or_(bad, missing)
    if name in ALLOWED_VALUES:
        allowed = pa.array(ALLOWED_VALUES[name], typed.type)
        outside = pc.and_(pc.is_valid(typed), pc.invert(pc.is_in(typed, allowed)))
        _note(report, outside, typed, name, first_row, f"must be one of {list(ALLOWED_VALUES[name])}")
        bad = pc.or_(bad, outside)
    if name in RANGES:
        lo, hi = RANGES[name]
        outside = pc.fill_null(pc.or_(pc.less(typed, lo), pc.greater(typed, hi)), False)
        _note(report, outside, typed, name, first_row, f"must be between {lo:g} and {hi:g}")
        bad = pc.or_(bad, outside)
    return typed, bad


def _note(report: Report, mask: pa.Array, values: pa.Array, column: str,
          first_row: int, reason: str) -> None:  # fmt: skip
    room = MAX_LISTED_ERRORS - len(report.errors)
    if room <= 0 or not pc.any(mask).as_py():
        return
    for i in pc.indices_nonzero(mask)[:room].to_pylist():
        report.add(first_row + i, column, values[i].as_py(), reason)


def add_split(table: pa.Table) -> pa.Array:
    """The split of each row, from its PassengerId (see domain.schema.split_for)."""
    pid = table.column("PassengerId")
    h = pc.bit_wise_and(pc.multiply(pid, 2654435761), 0xFFFFFFFF)
    u = pc.divide(pc.cast(h, pa.float64()), float(2**32))
    return pc.if_else(pc.less(u, SPLIT_BOUNDS[0]), SPLITS[0],
                      pc.if_else(pc.less(u, SPLIT_BOUNDS[1]), SPLITS[1], SPLITS[2]))


class CountingReader:
    """A binary stream that reports how many bytes were read, for progress."""

    def __init__(self, raw: IO[bytes], on_read: Callable[[int], None]) -> None:
        self.raw, self.on_read, self.done = raw, on_read, 0
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.done += len(data)
        self.on_read(self.done)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True
        self.raw.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
