"""CSV validation against the project's columns and rules, streamed with Arrow.

Arrow reads the file in blocks (quoted fields, CRLF, a UTF-8 BOM and quoted
newlines handled); every value is checked with vectorized Arrow compute, never
one Python object per row. Errors name the data row (1 = first row after the
header), the column, the value and the reason.

Dates and timestamps (:func:`parse_times`) are read as ISO 8601 or in the
strptime format the column declares; timestamps are stored in UTC, and one
written without an offset is read as UTC.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from typing import IO, Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from minimlops.domain.project import BOOLEAN_WORDS, Project, nearest
from minimlops.domain.schema import SPLIT_BOUNDS, SPLITS
from minimlops.errors import SchemaError
from minimlops.services.content_keys import ContentKeys, joined_keys


class Readable(Protocol):
    """What the CSV reader needs of a stream."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


BLOCK_SIZE = 4 << 20
MAX_LISTED_ERRORS = 100
PATTERNS = {
    "INTEGER": r"^[+-]?[0-9]{1,18}(\.0*)?$",  # "3.0": how pandas writes a float column of whole numbers
    "FLOAT": r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$",
    "BOOLEAN": rf"^(?i:{'|'.join(BOOLEAN_WORDS)})$",
}
UTC_US = pa.timestamp("us", tz="UTC")
TYPES = {
    "INTEGER": pa.int64(),
    "FLOAT": pa.float64(),
    "STRING": pa.string(),
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "TIMESTAMP": UTC_US,
}
TIME_TYPES = ("DATE", "TIMESTAMP")  # read by parse_times
# What a file that is not CSV text starts with, and what to tell the user.
MAGIC = {
    b"PK\x03\x04": "a ZIP archive",
    b"\x1f\x8b": "a gzip file",
    b"%PDF": "a PDF document",
    b"\xd0\xcf\x11\xe0": "an old Excel (.xls) file",
    b"PAR1": "a Parquet file",
}


@dataclass
class Report:
    """What validation found: counts and the first errors, row by row."""

    rows: int = 0
    bad_rows: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    file_errors: list[str] = field(default_factory=list)
    keys: list[tuple[int, pa.Array]] = field(default_factory=list, repr=False)

    def add(self, row: int, column: str | None, value: Any, reason: str) -> None:
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append({"row": row, "column": column, "value": value, "reason": reason})

    def summary(self) -> str:
        if self.file_errors:
            return "; ".join(self.file_errors)
        # the earliest row (errors are found a column at a time)
        first = min(self.errors, key=lambda e: e["row"] or 0) if self.errors else None
        value = "" if not first or first["value"] is None else f" value {_short(first['value'])}"
        where = (
            f"; first: data row {first['row']} (the header not counted), "
            f"column {first['column']}{value}: {first['reason']}"
            if first
            else ""
        )
        return f"{self.bad_rows:,} of {self.rows:,} rows invalid{where}"


def _short(value: Any, limit: int = 60) -> str:
    """A value as a message quotes it: its first ``limit`` characters (the
    report has it whole)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def read_header(stream: Readable, project: Project) -> list[str]:
    """The column names of a CSV file, checked against the project's columns.

    Optional columns may be absent (they load as null); required ones may not.

    Raises:
        SchemaError: empty, not CSV, unreadable, or columns missing, unknown or doubled.
    """
    head = stream.read(8)
    for magic, what in MAGIC.items():
        if head.startswith(magic):
            raise SchemaError(
                f"this is {what}, not a CSV file: export or extract the CSV and land that"
            )
    prefixed = _Prefixed(head, stream)
    try:
        reader = pacsv.open_csv(
            prefixed,
            read_options=pacsv.ReadOptions(block_size=1 << 16),
            parse_options=pacsv.ParseOptions(
                newlines_in_values=True, invalid_row_handler=lambda row: "skip"
            ),
        )  # (a short row is reported by the full read, with its number)
        names = header_names(reader.schema.names)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise SchemaError(f"not a readable CSV file: {_first_line(exc)}") from None
    problems = []
    declared = project.column_names
    missing = [
        c.name for c in project.columns if c.required and not c.generated and c.name not in names
    ]
    unknown = [c for c in names if c not in declared]
    doubled = sorted({c for c in names if names.count(c) > 1})
    if len(names) == 1 and (sep := delimiter(names[0])):
        raise SchemaError(f"{one_column(sep)}, and land it again")
    if missing:
        # a file of keys and labels: how labels reach predictions instead
        labels_only = set(names) == {project.key, project.target}
        problems.append(
            f"missing columns {missing} (required: add them to the file)"
            + (
                "; keys and labels alone cannot land: labels reach earlier predictions in "
                "full rows with their keys, or through POST /feedback with each "
                "prediction's uuid"
                if labels_only
                else ""
            )
        )
    if unknown:
        # an optional column renamed in the export looks like a new column: declared
        # under its new name, every row would load without the old one
        absent = [
            c.name
            for c in project.columns
            if not c.required and not c.generated and c.name not in names
        ]
        pairs = [(u, m) for u in unknown if (m := nearest(u, absent)) is not None]
        renamed = (
            "; "
            + ", ".join(f"{u!r} looks like optional column {m!r} renamed" for u, m in pairs)
            + ": give the file its old name back"
            if pairs
            else f"; optional column{'s' if len(absent) > 1 else ''} {absent} "
            f"{'are' if len(absent) > 1 else 'is'} not in the file: if "
            f"{'one was' if len(absent) > 1 else 'it was'} renamed, give the file its "
            "old name back"
            if absent
            else ""
        )
        problems.append(
            f"unknown columns {unknown}{renamed} ({'else ' if absent else ''}remove them "
            "from the file, or declare them in project.toml with required = false and "
            "restart: a home takes a new optional column)"
        )
    if doubled:
        problems.append(f"repeated columns {doubled}")
    if problems:
        expected = [c.name for c in project.columns if not c.generated]
        shown = (
            str(expected)
            if len(expected) <= 20
            else f"{len(expected)} columns ({', '.join(expected[:10])}, ...: "
            "the project file lists them all)"
        )
        raise SchemaError("; ".join(problems) + f"; project {project.name!r} declares {shown}")
    return names


def delimiter(header: str) -> str | None:
    """The delimiter a one-column header seems to use instead of commas."""
    return next((s for s in ";\t|" if s in header), None)


def one_column(sep: str, utf8: bool = True) -> str:
    """What to do with a file separated by ``sep``: what ``init`` and
    ingestion both say. The pandas line is safe on decimal points too (a
    value it cannot read with ``decimal=","`` is written back as it was);
    a file that is not UTF-8 (Excel's own CSV on Windows) is read as cp1252
    and written as UTF-8."""
    encoding = "" if utf8 else ", encoding='cp1252'"
    return (
        f"one column was read: the file seems separated by {sep!r}, not commas; save "
        "it as comma-separated CSV, with decimal points if it writes decimal commas"
        + ("" if utf8 else ", in UTF-8 (it is not)")
        + f" (with pandas: pd.read_csv(path, sep={sep!r}, decimal=','{encoding})"
        ".to_csv(new_path, index=False))"
    )


def header_names(raw: list[str]) -> list[str]:
    """The column names of a header as the project declares them: trimmed
    ("age, workclass" names "workclass"), and a column with no name, as pandas
    writes its index, ``unnamed_<position>`` (pandas reads it "Unnamed: 0")."""
    return [n.strip() or f"unnamed_{i}" for i, n in enumerate(raw)]


class _Prefixed:
    """A stream with bytes already read put back in front."""

    def __init__(self, head: bytes, rest: Readable) -> None:
        self.head, self.rest, self.closed = head, rest, False

    def read(self, size: int = -1) -> bytes:
        if not self.head:
            return self.rest.read(size)
        if size < 0:
            out, self.head = self.head + self.rest.read(), b""
            return out
        out, self.head = self.head[:size], self.head[size:]
        return out if len(out) == size else out + self.rest.read(size - len(out))

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


def batches(
    stream: Readable, names: list[str], report: Report | None = None
) -> Iterator[pa.RecordBatch]:
    """Raw record batches, every column as text, empty fields as null, the
    columns named ``names`` (the header's, trimmed; the header row is skipped).
    A row with too few or too many fields is a bad row of the report."""

    def invalid(row: Any) -> str:
        if report is None:
            return "error"
        where = row.number if row.number and row.number > 0 else report.rows + 1
        report.bad_rows += 1
        report.rows += 1
        report.add(
            where,
            None,
            row.text[:200],
            f"has {row.actual_columns} fields; the header "
            f"has {row.expected_columns} (a missing or extra comma, or a broken quote?)",
        )
        return "skip"

    reader = pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE, column_names=names, skip_rows=1),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )
    yield from reader


def check_batch(
    batch: pa.RecordBatch,
    first_row: int,
    report: Report,
    project: Project,
    keys: ContentKeys | None = None,
) -> pa.Table:
    """Typed, valid rows of a raw batch; errors of the others go to report.
    The keys of every row are kept in the report, for :func:`check_keys`.
    A generated key the file does not carry comes from ``keys``, over the
    valid rows' values (see :mod:`minimlops.services.content_keys`)."""
    columns: dict[str, pa.Array] = {}
    ok = pa.repeat(pa.scalar(True), batch.num_rows)
    names = set(batch.schema.names)
    generated = None
    for col in project.columns:
        if col.name not in names and col.generated:
            generated = col.name
            columns[col.name] = pa.nulls(batch.num_rows, pa.string())  # set below
            continue
        if col.name not in names:  # an optional column the file does not have
            columns[col.name] = pa.nulls(batch.num_rows, TYPES[col.bq_type])
            continue
        typed, bad = _check_column(
            batch.column(col.name),
            col.name,
            col.bq_type,
            col.required,
            first_row,
            report,
            col,
            project.missing_in(col.name),
        )
        columns[col.name] = typed
        ok = pc.and_(ok, pc.invert(bad))
    parts = project.key_parts
    if parts is not None:  # made of the row's own columns, whatever a file's key column says
        columns[project.key] = joined_keys(pa.table({p: columns[p] for p in parts}), parts)
        generated = None
    if project.key in names or parts is not None:  # content keys are unique by construction
        report.keys.append((first_row, columns[project.key]))
    report.rows += batch.num_rows
    report.bad_rows += batch.num_rows - pc.sum(ok).as_py() if batch.num_rows else 0
    good = pa.table(columns).filter(ok)
    if generated is None:
        return good
    if keys is None:
        raise ValueError(f"the file has no {generated!r}: a generated key needs ContentKeys")
    at = good.schema.get_field_index(generated)
    return good.set_column(at, generated, keys(good))


def content_keys(project: Project) -> ContentKeys | None:
    """The generated keys of one file's rows, from every column but the key;
    None for a key made of named columns (``check_batch`` joins them)."""
    if project.key_parts is not None:
        return None
    return ContentKeys([c.name for c in project.columns if not c.generated])


def check_keys(report: Report, key: str, parts: Sequence[str] | None = None) -> None:
    """Refuse a file that holds a row key twice, naming both rows: which one
    would be the newest is not defined.

    By sorting, not hashing: memory a few bytes over the keys themselves. A
    2 GB file of 28 million rows peaks at 1.2 GB for the whole ingestion
    process; counting values in Arrow's hash table took it to 5.1 GB.

    Raises:
        SchemaError: the first repeated key and the rows that hold it.
    """
    if not report.keys:
        return
    keys = pa.chunked_array([k for _, k in report.keys])
    repeated = _repeated(keys)
    if len(repeated) == 0:
        return
    # the first key in the file's order that repeats, and the rows that hold it
    seen = pc.fill_null(pc.is_in(keys, value_set=repeated), False)
    value = keys[pc.indices_nonzero(seen)[0].as_py()]
    positions = pc.indices_nonzero(pc.fill_null(pc.equal(keys, value), False)).to_pylist()
    starts = [s for s, _ in report.keys]
    offsets = [0]
    for _, k in report.keys:
        offsets.append(offsets[-1] + len(k))
    rows = [
        starts[i] + p - offsets[i]
        for p in positions[:2]
        for i in range(len(starts))
        if offsets[i] <= p < offsets[i + 1]
    ]
    more = f" ({len(repeated):,} keys repeat in all)" if len(repeated) > 1 else ""
    if parts:
        named = " and ".join(", ".join(parts).rsplit(", ", 1))
        raise SchemaError(
            f"two rows have the same {named} ({key} {value.as_py()!r}): rows {rows[0]} and "
            f"{rows[1]}{more}; together they identify a row, once in a file (land a "
            "corrected row in a later file to replace one)"
        )
    raise SchemaError(
        f"{key} {value.as_py()!r} appears more than once: rows {rows[0]} and "
        f"{rows[1]}{more}; each {key} may appear once in a file (land a "
        "corrected row in a later file to replace one)"
    )


def _repeated(keys: pa.ChunkedArray) -> pa.Array:
    """The values that appear more than once (nulls aside), each once."""
    if pa.types.is_integer(keys.type):  # numpy sorts in place: one copy of the keys
        ordered = np.concatenate(
            [c.drop_null().to_numpy() for c in keys.chunks] or [np.array([], np.int64)]
        )
        ordered.sort()
        same = ordered[1:] == ordered[:-1]
        return pa.array(np.unique(ordered[1:][same]) if same.any() else ordered[:0])
    present = keys.drop_null()
    ordered = present.take(pc.sort_indices(present))
    if len(ordered) < 2:
        return pa.array([], keys.type)
    same = pc.equal(ordered[1:], ordered[:-1])
    return pc.unique(ordered[1:].filter(same)) if pc.any(same).as_py() else pa.array([], keys.type)


def _check_column(
    raw: pa.Array,
    name: str,
    bq_type: str,
    required: bool,
    first_row: int,
    report: Report,
    rules: Any,
    missing: tuple[str, ...] = (),
) -> tuple[pa.Array, pa.Array]:
    if bq_type in TIME_TYPES:
        text = blank_as_null(pc.utf8_trim_whitespace(raw), missing)
        fmt = getattr(rules, "format", None)
        typed, unread, outside = parse_times(text, bq_type, fmt)
        _note(report, unread, text, name, first_row, time_reason(bq_type, fmt))
        _note(report, outside, text, name, first_row, "outside the years 0001 to 9999")
        return _check_values(
            typed, text, pc.or_(unread, outside), name, required, first_row, report, rules
        )
    if (
        bq_type in PATTERNS
        and bq_type != "BOOLEAN"
        # a word for no value that reads as a number ("-999") must be read as
        # missing in every batch, not only where another value is not a number
        and not any(re.match(PATTERNS[bq_type], w.strip()) for w in missing)
        and (typed := _clean_cast(raw, bq_type)) is not None
    ):
        return _check_values(
            typed,
            raw,
            pa.repeat(pa.scalar(False), len(raw)),
            name,
            required,
            first_row,
            report,
            rules,
        )
    text = blank_as_null(pc.utf8_trim_whitespace(raw), missing)
    present = pc.is_valid(text)
    bad = pa.repeat(pa.scalar(False), len(text))
    if bq_type in PATTERNS:
        matches = pc.match_substring_regex(text, PATTERNS[bq_type])
        wrong = pc.fill_null(pc.and_(present, pc.invert(matches)), False)
        for mask, reason in _number_hints(wrong, text, bq_type):
            _note(report, mask, text, name, first_row, reason)
        bad = pc.or_(bad, wrong)
        text = pc.if_else(wrong, pa.scalar(None, pa.string()), text)
    if bq_type == "INTEGER":  # Arrow's integer parser refuses a leading plus and ".0"
        text = pc.replace_substring_regex(
            pc.replace_substring_regex(text, r"^\+", ""), r"\.0*$", ""
        )
    if bq_type == "BOOLEAN":
        lower = pc.utf8_lower(text)
        typed = pc.if_else(
            pc.is_in(lower, pa.array([w for w, truth in BOOLEAN_WORDS.items() if truth])),
            True,
            pc.if_else(pc.is_valid(lower), False, pa.scalar(None, pa.bool_())),
        )
    else:
        typed = pc.cast(text, TYPES.get(bq_type, pa.string()))
    return _check_values(typed, text, bad, name, required, first_row, report, rules)


# numbers written for people: 15,300 (thousands), 12,5 (a decimal comma)
_GROUPED = r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$"
_DECIMAL_COMMA = r"^[+-]?\d+,\d+$"


def _number_hints(wrong: pa.Array, text: pa.Array, bq_type: str) -> list[tuple[pa.Array, str]]:
    """The refused values of a number column, each with its reason: a
    thousands separator or a decimal comma said as such, the rest "not a
    valid INTEGER" (or FLOAT)."""
    plain = f"not a valid {bq_type}"
    if bq_type not in ("INTEGER", "FLOAT") or not pc.any(wrong).as_py():
        return [(wrong, plain)]
    out = []
    grouped = pc.fill_null(pc.and_(wrong, pc.match_substring_regex(text, _GROUPED)), False)
    out.append((grouped, f"{plain}: a thousands separator? write the number without commas"))
    rest = pc.and_(wrong, pc.invert(grouped))
    if bq_type == "FLOAT":
        comma = pc.fill_null(pc.and_(rest, pc.match_substring_regex(text, _DECIMAL_COMMA)), False)
        out.append((comma, f"{plain}: a decimal comma? write a point, as in 12.5"))
        rest = pc.and_(rest, pc.invert(comma))
    return [(rest, plain), *out]


def blank_as_null(text: pa.Array, missing: tuple[str, ...] = ()) -> pa.Array:
    """Trimmed text with "" and the project's words for no value ("NA", "?") as null."""
    blank = pc.equal(text, "")
    if missing:
        blank = pc.or_(blank, pc.is_in(text, pa.array(missing, pa.string())))
    return pc.if_else(blank, pa.scalar(None, pa.string()), text)


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


def _check_values(
    typed: pa.Array,
    text: pa.Array,
    bad: pa.Array,
    name: str,
    required: bool,
    first_row: int,
    report: Report,
    rules: Any,
) -> tuple[pa.Array, pa.Array]:
    if required:
        missing = pc.and_(pc.is_null(typed), pc.invert(bad))
        _note(report, missing, text, name, first_row, "required value is missing")
        bad = pc.or_(bad, missing)
    if rules.allowed is not None:
        allowed = pa.array(rules.allowed, typed.type)
        outside = pc.and_(pc.is_valid(typed), pc.invert(pc.is_in(typed, allowed)))
        _note(report, outside, typed, name, first_row, f"must be one of {list(rules.allowed)}")
        bad = pc.or_(bad, outside)
    lo, hi = rules.min, rules.max
    if pa.types.is_integer(typed.type):  # compare as integers: 19 digits do not fit a double
        lo = None if lo is None else math.ceil(lo)
        hi = None if hi is None else math.floor(hi)
    if lo is not None or hi is not None:
        low = pc.less(typed, lo) if lo is not None else pa.repeat(pa.scalar(False), len(typed))
        high = pc.greater(typed, hi) if hi is not None else pa.repeat(pa.scalar(False), len(typed))
        outside = pc.fill_null(pc.or_(low, high), False)
        what = (
            f"between {lo:g} and {hi:g}"
            if lo is not None and hi is not None
            else f"at least {lo:g}"
            if lo is not None
            else f"at most {hi:g}"
        )
        _note(report, outside, typed, name, first_row, f"must be {what}")
        bad = pc.or_(bad, outside)
    if rules.max_length is not None:
        long = pc.fill_null(pc.greater(pc.utf8_length(typed), rules.max_length), False)
        _note(report, long, typed, name, first_row, f"longer than {rules.max_length} characters")
        bad = pc.or_(bad, long)
    return typed, bad


def _note(
    report: Report, mask: pa.Array, values: pa.Array, column: str, first_row: int, reason: str
) -> None:
    room = MAX_LISTED_ERRORS - len(report.errors)
    if room <= 0 or not pc.any(mask).as_py():
        return
    for i in pc.indices_nonzero(mask)[:room].to_pylist():
        report.add(first_row + i, column, values[i].as_py(), reason)


# -- dates and timestamps -------------------------------------------------------

# ISO 8601 as Arrow's parser reads it: a date, then optionally a time (hours,
# minutes, seconds, up to six digits of fraction) and after it a zone (Z, +HH,
# +HHMM or +HH:MM)
_ISO_DATE = r"^(?P<Y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})$"
_ISO_TIMESTAMP = (
    r"^(?P<Y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})"
    r"(?:[T ](?P<H>\d{2})(?::(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.\d{1,6})?)?)?"
    r"(?P<z>Z|[+-](?P<zh>\d{2})(?::?(?P<zm>\d{2}))?)?)?$"
)
_ISO_TIMESTAMP_RE = re.compile(_ISO_TIMESTAMP, re.ASCII)
# a date with a time part of midnight, as spreadsheets and pandas write dates
_MIDNIGHT = r"^(\d{4}-\d{2}-\d{2})[T ]00:00(?::00(?:\.0+)?)?$"
_BEYOND_MICROSECONDS = r"(\.\d{6})\d+"
TIME_SLICE = 16_384  # rows cast at once; a slice with a bad value is read value by value
_MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# strptime's directives as regular expressions (C's strptime reads one or two
# digits where it writes two); the named ones are checked against the calendar
_DIRECTIVES = {
    "Y": r"(?P<Y>\d{4})",
    "y": r"(?P<y>\d{2})",
    "m": r"(?P<m>\d{1,2})",
    "d": r"(?P<d>\d{1,2})",
    "e": r"(?P<d>\d{1,2})",
    "b": r"(?P<b>[A-Za-z]+)",
    "B": r"(?P<b>[A-Za-z]+)",
    "h": r"(?P<b>[A-Za-z]+)",
    "a": r"[A-Za-z]+",
    "A": r"[A-Za-z]+",
    "H": r"\d{1,2}",
    "I": r"\d{1,2}",
    "M": r"\d{1,2}",
    "S": r"(?P<S>\d{1,2})",
    "p": r"[AaPp][Mm]",
    "j": r"\d{1,3}",
    "z": r"(?:Z|[+-]\d{2}(?::?\d{2})?)",
    "%": "%",
}


@cache
def _time_range(bq_type: str) -> tuple[Any, Any]:
    """BigQuery's first and last DATE or TIMESTAMP, as Arrow scalars. Made on
    first use, not at import: a pyarrow scalar made from a Python value
    imports pandas (~0.3 s), which serving never needs."""
    if bq_type == "DATE":
        return pa.scalar(date(1, 1, 1)), pa.scalar(date(9999, 12, 31))
    return (
        pa.scalar(datetime(1, 1, 1, tzinfo=UTC), UTC_US),
        pa.scalar(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), UTC_US),
    )


def time_reason(bq_type: str, fmt: str | None) -> str:
    """Why a value is not a date or a timestamp, naming the form expected."""
    what = "date" if bq_type == "DATE" else "timestamp"
    if fmt is not None:
        return f"not a {what} in the format {fmt}"
    if bq_type == "DATE":
        return (
            "not a date (expected YYYY-MM-DD; a file that writes dates otherwise "
            'declares the column\'s format, as format = "%d/%m/%Y")'
        )
    return (
        "not a timestamp (expected YYYY-MM-DD HH:MM[:SS[.ffffff]], "
        "optionally ending in Z or an offset such as +02:00)"
    )


def parse_times(
    text: pa.Array, bq_type: str, fmt: str | None = None
) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Dates (date32) or timestamps (microseconds, UTC) from trimmed text
    (blanks already null), all at once with Arrow; returns the values (null
    where not read), the values that do not parse and the values outside the
    years 0001 to 9999 (BigQuery's range).

    Without ``fmt``, ISO 8601: dates ``2026-06-20`` (a time part of exact
    midnight, ``2026-06-20 00:00:00``, is accepted: spreadsheets and pandas
    write dates so; any other time is refused); timestamps ``2026-06-20``,
    ``2026-06-20T14:05``, ``2026-06-20 14:05:00.123456`` (T or a space;
    digits of a fraction past the microsecond are cut), optionally ending in
    ``Z``, ``+02``, ``+0200`` or ``+02:00``. With ``fmt``, strptime's format
    (Arrow's strptime; ``%d``, ``%m``, ``%b`` and the year are checked
    against the calendar: 30/02/2026 is refused, never read as 2 March; ``%Y``
    takes four digits). A date read with a format that has a time keeps its day.

    Timestamps are stored in UTC: a value with an offset is converted to UTC,
    a value without one is read as UTC.
    """
    present = pc.is_valid(text)
    if fmt is None:  # a slice at a time: a bad value sends only its slice value by value
        pieces = []
        for start in range(0, len(text), TIME_SLICE):
            part = text.slice(start, TIME_SLICE)
            at_once = _iso_at_once(part, bq_type)
            pieces.append(_iso_each(part, bq_type) if at_once is None else at_once)
        typed = pa.concat_arrays(pieces) if pieces else pa.array([], TYPES[bq_type])
    else:
        typed = _formatted(text, bq_type, fmt)
    unread = pc.and_(present, pc.is_null(typed))
    lo, hi = _time_range(bq_type)
    outside = pc.fill_null(pc.or_(pc.less(typed, lo), pc.greater(typed, hi)), False)
    if pc.any(outside).as_py():
        typed = pc.if_else(outside, pa.scalar(None, typed.type), typed)
    return typed, unread, outside


def _iso_at_once(text: pa.Array, bq_type: str) -> pa.Array | None:
    """The common case in one cast: every value parses as ISO 8601 (for
    timestamps: all with an offset, or all without, as the first value is;
    Arrow takes ~40x longer to refuse a column of the other kind than to
    read it). None: some do not."""
    try:
        if bq_type == "DATE":
            return pc.cast(text, pa.date32())
        first = pc.index(pc.is_valid(text), True).as_py()
        zoned = first >= 0 and (m := _ISO_TIMESTAMP_RE.match(text[first].as_py())) and m["z"]
        if zoned:
            return pc.cast(text, UTC_US)
        return pc.cast(pc.cast(text, pa.timestamp("us")), UTC_US)
    except pa.ArrowInvalid:
        return None


def _iso_each(text: pa.Array, bq_type: str) -> pa.Array:
    """ISO 8601 value by value (still vectorized): the form checked by a
    regular expression and the calendar, then only valid values cast."""
    if bq_type == "DATE":
        text = pc.replace_substring_regex(text, _MIDNIGHT, r"\1")
        parts = pc.extract_regex(text, _ISO_DATE)
    else:
        text = pc.replace_substring_regex(text, _BEYOND_MICROSECONDS, r"\1")
        parts = pc.extract_regex(text, _ISO_TIMESTAMP)
    ok = pc.is_valid(parts).to_numpy(zero_copy_only=False) & _calendar(parts)
    if bq_type == "DATE":
        return pc.cast(_keep(text, ok), pa.date32())
    number = {f: _numbers(parts, f) for f in ("H", "M", "S", "zh", "zm")}
    ok &= (number["H"] <= 23) & (number["M"] <= 59) & (number["S"] <= 59)
    ok &= (number["zh"] <= 23) & (number["zm"] <= 59)
    zoned = pc.fill_null(pc.not_equal(pc.struct_field(parts, "z"), ""), False)
    zoned = zoned.to_numpy(zero_copy_only=False)
    naive = pc.cast(pc.cast(_keep(text, ok & ~zoned), pa.timestamp("us")), UTC_US)
    return pc.coalesce(naive, pc.cast(_keep(text, ok & zoned), UTC_US))


def _formatted(text: pa.Array, bq_type: str, fmt: str) -> pa.Array:
    """Values in a strptime format: Arrow's strptime, refusing what it would
    read leniently (a 31st of a 30-day month, a short year)."""
    parsed = pc.strptime(text, format=fmt, unit="us", error_is_null=True)
    pattern = _format_pattern(fmt)
    if pattern is not None:
        parts = pc.extract_regex(text, pattern)
        ok = pc.is_valid(parts).to_numpy(zero_copy_only=False) & _calendar(parts)
        if "S" in parts.type.names:
            ok &= _numbers(parts, "S") <= 59
        parsed = pc.if_else(pa.array(ok), parsed, pa.scalar(None, parsed.type))
    if bq_type == "DATE":
        return pc.cast(parsed, pa.date32())
    return parsed if parsed.type.tz is not None else pc.cast(parsed, UTC_US)


@cache
def _format_pattern(fmt: str) -> str | None:
    """A strptime format as a regular expression whose named groups hold the
    day, month and year as written; None for a directive not known here (the
    values are then only read by strptime)."""
    out, named, i = ["^"], set(), 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%":
            directive = fmt[i + 1 : i + 2]
            pattern = _DIRECTIVES.get(directive)
            group = re.match(r"\(\?P<(\w+)>", pattern or "")
            if pattern is None or (group and group.group(1) in named):
                return None
            if group:
                named.add(group.group(1))
            out.append(pattern)
            i += 2
            continue
        out.append(r"\s*" if ch.isspace() else re.escape(ch))
        i += 1
    return "".join(out) + "$"


def _numbers(parts: pa.Array, name: str) -> np.ndarray:
    """One group's digits as integers (0 where it is absent)."""
    if name not in parts.type.names:
        return np.zeros(len(parts), np.int64)
    digits = pc.fill_null(pc.struct_field(parts, name), "")
    digits = pc.if_else(pc.equal(digits, ""), "0", digits)
    return pc.cast(digits, pa.int64()).to_numpy(zero_copy_only=False)


def _calendar(parts: pa.Array) -> np.ndarray:
    """The day, month and year as written form a date of the calendar (a
    missing year counts as a leap year; a missing month allows 31 days)."""
    names = parts.type.names
    n = len(parts)
    if "d" not in names:
        return np.ones(n, bool)
    day = _numbers(parts, "d")
    if "Y" in names:
        year = _numbers(parts, "Y")
    elif "y" in names:  # as C's strptime: 69-99 are 1969-1999, 00-68 2000-2068
        short = _numbers(parts, "y")
        year = np.where(short < 69, 2000 + short, 1900 + short)
    else:
        year = np.full(n, 2000)
    if "m" in names:
        month = _numbers(parts, "m")
    elif "b" in names:
        abbreviated = pc.utf8_slice_codeunits(
            pc.utf8_lower(pc.fill_null(pc.struct_field(parts, "b"), "")), 0, 3
        )
        month = pc.fill_null(pc.index_in(abbreviated, pa.array(_MONTHS)), -1)
        month = month.to_numpy(zero_copy_only=False).astype(np.int64) + 1
    else:
        month = np.ones(n, np.int64)  # January: 31 days
    known = (month >= 1) & (month <= 12)
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    days = _MONTH_DAYS[np.where(known, month, 1) - 1] + (leap & (month == 2))
    return known & (day >= 1) & (day <= days)


def _keep(text: pa.Array, ok: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(ok), text, pa.scalar(None, pa.string()))


def add_split(table: pa.Table, project: Project) -> pa.Array:
    """The split of each row, from its key (see domain.schema.split_for)."""
    pid = table.column(project.key)
    if project.key_column.type == "string":  # MD5 per key: Arrow has no MD5 kernel
        pid = _string_key_ints(pid)
    h = pc.bit_wise_and(pc.multiply(pid, 2654435761), 0xFFFFFFFF)
    u = pc.divide(pc.cast(h, pa.float64()), float(2**32))
    return pc.if_else(
        pc.less(u, SPLIT_BOUNDS[0]),
        SPLITS[0],
        pc.if_else(pc.less(u, SPLIT_BOUNDS[1]), SPLITS[1], SPLITS[2]),
    )


def _string_key_ints(keys: pa.ChunkedArray | pa.Array) -> pa.Array:
    """:func:`~minimlops.domain.schema.key_int` of each string key: one MD5
    call a key, the digests read by NumPy (60 % of the time of a call of
    ``key_int`` a key)."""
    md5 = hashlib.md5  # keys are required: a null one never gets here
    raw = b"".join([md5(k).digest() for k in pc.cast(keys, pa.binary()).to_pylist()])
    return pa.array((np.frombuffer(raw, ">u4")[::4] >> 1).astype(np.int64))


class CountingReader:
    """A binary stream that reports how many bytes were read, for progress."""

    def __init__(self, raw: Readable, on_read: Callable[[int], None]) -> None:
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


def number_field_count_errors(stream: IO[bytes], report: Report) -> None:
    """Give the rows Arrow skipped for their number of fields their data row
    numbers, found by reading the file with Python's csv module (quoted
    newlines included); only the first MAX_LISTED_ERRORS matter."""
    import csv
    import io

    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")
    reader = csv.reader(text)
    header = next(reader, [])
    wrong = [(i, len(r)) for i, r in enumerate(reader, start=1) if r and len(r) != len(header)]
    short = iter(wrong[:MAX_LISTED_ERRORS])
    for e in report.errors:
        if e["column"] is None and (found := next(short, None)) is not None:
            e["row"] = found[0]


def plain_reason(exc: BaseException) -> str:
    """Arrow's reading errors in the user's words, with what to do."""
    text = _first_line(exc)
    if "straddling" in text or "block size" in text:
        return (
            f"a field or row is longer than {BLOCK_SIZE >> 20} MB, most often a quote that "
            "is opened and never closed; check the quotes near that row"
        )
    if "invalid UTF8" in text or "UTF-8" in text or "utf8" in text.lower():
        return "the file is not UTF-8 text: save it as CSV UTF-8 and land it again"
    return text
