"""``minimlops init``: a draft project inferred from a CSV file, for a person to review.

The file is read with Arrow a block at a time, every column as text; per column
we count what its values parse as, how many are missing, how many distinct
values there are (up to a cap) and their range. From those counts come the
decisions, each with its reason and, when doubtful, what to check: the tools
our users know fail most often here (numbers read as categories, 0/1 columns
read as continuous, a regression target with few values read as classes), so
nothing doubtful is decided silently.

Dates and date-times are recognised by the shape of their values (digits
read as 9: "9999-99-99", "99/99/9999 99:99"), one shape family per column,
with the day/month order taken from the values (a first part above 12 is a
day). A sample of the rows (the first SAMPLE_ROWS) is kept to look at how
the columns relate to the target and to each other: a column that predicts
the target almost alone (leakage), an id whose values repeat (groups), the
time the rows happened (a time split).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from minimlops.domain.project import NAME_RULE, RESERVED, ProjectError, usable_name
from minimlops.domain.splits import DEFAULT_FRACTIONS, cutoffs_from_counts, marks
from minimlops.services.validate import (
    PATTERNS,
    blank_as_null,
    delimiter,
    header_names,
    one_column,
)

DISTINCT_CAP = 1000  # distinct values remembered per column
FEW_VALUES = 10  # an integer column with at most this many values may be categories
MAX_CLASSES = 50  # a string target with more distinct values is not a classification
MINORITY = 0.45  # a binary target's value under this share is "the rarer one"
RARE_POSITIVE = 0.15  # a positive class this rare gets a word about the threshold
# Only true/false reads as boolean: "Yes"/"No" stay text, so answers and
# feedback speak the data's own values ("Yes"), as the user wrote them.
SHOWN = 12  # observed categories written per column
# How files write "no value" besides an empty field (R's NA, UCI's ?, SQL's NULL, ...)
MISSING_WORDS = ("NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None", "?", "#N/A", "-")
TRUE = {"true"}
FALSE = {"false"}
_ID_NAME = re.compile(r"(^|[_ .-])(id|key|uuid)$|Id$|ID$", re.IGNORECASE)
SAMPLE_ROWS = 200_000  # rows kept to relate columns to the target (leakage, groups, time)
SAMPLE_BYTES = 256 << 20
SHAPES_CAP = 64  # a column with more value shapes than this is not dates

# Dates by their shape (every digit read as 9). A family is how the date part
# is written; its parts a and b are month and day ("ymd" families) or day and
# month in an order the values decide ("dm" families: 20/06/2026, 06/20/2026).
_FAMILIES = {
    "ymd-": (r"9999-99?-99?", "-", "ymd"),
    "ymd/": (r"9999/99?/99?", "/", "ymd"),
    "ymd.": (r"9999\.99?\.99?", ".", "ymd"),
    "dm/": (r"99?/99?/(?:9999|99)", "/", "dm"),
    "dm.": (r"99?\.99?\.9999", ".", "dm"),
    "dm-": (r"99?-99?-9999", "-", "dm"),
}
_TIME_SHAPE = (
    r"(?:(?P<sep>[ T])(?P<h>99?):99(?P<s>:99(?P<f>\.9{1,9})?)?"
    r"(?P<zsp> ?)(?P<z>Z|[+-]99:?99|[+-]99)?)?"
)
_SHAPE = {
    f: re.compile(rf"^(?P<date>{shape}){_TIME_SHAPE}$") for f, (shape, _, _) in _FAMILIES.items()
}
_RAW = {  # a value's date part, for Arrow's regular expressions
    f: "^" + shape.replace("9", r"\d") for f, (shape, _, _) in _FAMILIES.items()
}
_TIME_PARTS = r"(?:[ T](?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?)?"
_PARTS = {
    "ymd": r"^(?P<y>\d{4})SEP(?P<a>\d{1,2})SEP(?P<b>\d{1,2})",
    "dm": r"^(?P<a>\d{1,2})SEP(?P<b>\d{1,2})SEP(?P<y>\d{2,4})",
}
# the date-time features the pipeline makes from a date or timestamp column
TIME_FEATURES = (
    "year, month, day of the month, day of the week, day of the year and days since 1970"
)

# a number with a comma: a decimal comma ("49,35", "1.234,5"), or thousands
# separators ("1,234,567.5"); either way text to Arrow, and to ingestion
DECIMAL_COMMA = re.compile(r"^[+-]?[0-9]{1,3}((\.?[0-9]{3})*,[0-9]+|(,[0-9]{3})+(\.[0-9]+)?)$")
COMMA_NUMBERS = 20  # as many distinct such values, at least: numbers, not "2,3" pairs
PADDED = re.compile(r"^0[0-9]+$")


def _shape_of(shape: str) -> tuple[str, re.Match[str]] | None:
    """The family of a value's shape and the parts of it, or None: not a date."""
    for family, pattern in _SHAPE.items():
        if m := pattern.match(shape):
            return family, m
    return None


@dataclass
class Parts:
    """What one column's date values held, for one family: the range of the
    parts a and b (which is the day?), times of day out of range, and the
    earliest and latest as numbers yyyymmddHHMMSS read both ways."""

    a_min: int = 99
    a_max: int = 0
    b_min: int = 99
    b_max: int = 0
    bad_time: int = 0
    midnight: int = 0
    low: dict[str, int] = field(default_factory=lambda: {"ab": 2**62, "ba": 2**62})
    high: dict[str, int] = field(default_factory=lambda: {"ab": -1, "ba": -1})


def _date_parts(values: pa.Array, family: str) -> dict[str, np.ndarray]:
    """Year, a, b, hour, minute and second of date-shaped values, as numbers."""
    _, sep, kind = _FAMILIES[family]
    pattern = _PARTS[kind].replace("SEP", re.escape(sep))
    parts = pc.extract_regex(values, pattern + _TIME_PARTS)
    out = {}
    for name in ("y", "a", "b", "H", "M", "S"):
        text = pc.struct_field(parts, name)
        text = pc.if_else(pc.equal(text, ""), "0", text)
        out[name] = pc.cast(text, pa.int64()).to_numpy(zero_copy_only=False)
    y = out["y"]
    out["y"] = np.where(y < 100, np.where(y < 69, 2000 + y, 1900 + y), y)  # as strptime's %y
    return out


def _time_keys(parts: dict[str, np.ndarray], order: str) -> np.ndarray:
    """yyyymmddHHMMSS as one number: ``order`` "ab" reads a as the month."""
    month, day = (parts["a"], parts["b"]) if order == "ab" else (parts["b"], parts["a"])
    return (
        parts["y"] * 10**10
        + month * 10**8
        + day * 10**6
        + parts["H"] * 10**4
        + parts["M"] * 100
        + parts["S"]
    )


def _from_key(key: int, timestamp: bool) -> str:
    text = f"{key:014d}"
    day = f"{text[:4]}-{text[4:6]}-{text[6:8]}"
    return f"{day} {text[8:10]}:{text[10:12]}" if timestamp else day


@dataclass
class TimeInfo:
    """A column read as dates or date-times: its type, the strptime format
    (None: ISO 8601, which ingestion reads as it is), the day/month order and
    whether the values decided it, the range, and notes for the person."""

    type: str
    format: str | None
    family: str
    order: str  # "ab": a is the month (and ymd); "ba": a is the day
    ambiguous: bool
    low: int
    high: int
    notes: list[str] = field(default_factory=list)  # comments in the draft
    checks: list[str] = field(default_factory=list)  # doubts, marked CHECK
    example: str = ""

    @property
    def span(self) -> str:
        stamp = self.type == "timestamp"
        return f"{_from_key(self.low, stamp)} to {_from_key(self.high, stamp)}"


@dataclass
class Profile:
    """What one column's values look like."""

    name: str
    rows: int = 0
    missing: int = 0
    integers: int = 0
    pointed: int = 0  # whole numbers written with a point ("23.0")
    padded: int = 0  # whole numbers written with leading zeros ("01133")
    digits: int = 0  # values of digits only
    widths: set[int] = field(default_factory=set)  # their lengths (up to a few)
    target: bool = False  # the target: "3.0" stays a class code up to MAX_CLASSES values
    floats: int = 0
    booleans: int = 0
    distinct: Counter[str] = field(default_factory=Counter)
    overflow: bool = False  # more distinct values than DISTINCT_CAP
    uncounted: bool = False  # and a later block's values were not counted
    low: float = math.inf
    high: float = -math.inf
    longest: int = 0
    words: Counter[str] = field(default_factory=Counter)  # MISSING_WORDS seen, and how often
    unnamed: bool = False  # no name in the header (pandas' index)
    dates: int = 0  # values shaped like a date (2007-11-11, 11/11/2007), times allowed
    shapes: Counter[str] = field(default_factory=Counter)  # value shapes, digits as 9
    not_time: bool = False  # a value is no date: shapes are no longer counted
    parts: dict[str, Parts] = field(default_factory=dict)  # per date family
    time: TimeInfo | None = None  # read as dates or date-times
    not_time_why: str = ""  # dates that could not be read as one type: why

    @property
    def present(self) -> int:
        return self.rows - self.missing

    @property
    def type(self) -> str:
        if self.time is not None:
            return self.time.type
        return self.text_type

    @property
    def text_type(self) -> str:
        """The type without dates: integer, float, boolean or string."""
        if self.present == 0:
            return "string"
        # "23.0, 41.0, ...": a float column that happens to hold whole numbers
        # (a request with 21.5 must pass), unless few values (codes: 1.0, 2.0,
        # 3.0; for the target, as many as a multiclass task may have)
        codes = MAX_CLASSES if self.target else FEW_VALUES
        if self.codes:  # read as a number, "01133" would lose its zeros
            return "string"
        if self.integers == self.present and (
            not self.pointed or (not self.overflow and len(self.distinct) <= codes)
        ):
            return "integer"
        if self.floats == self.present:
            return "float"
        if self.booleans == self.present:
            return "boolean"
        return "string"

    @property
    def codes(self) -> bool:
        """Whole numbers written with leading zeros where the zeros are part
        of the value: codes of one width (postcodes, "01".."12"), or many
        padded. One "007" among quantities is a number; a target is read as
        its classes or its values, never as codes."""
        return (
            bool(self.padded)
            and not self.target
            and self.digits == self.present
            and (len(self.widths) == 1 or self.padded >= 0.1 * self.present)
        )

    @property
    def n_distinct(self) -> int:
        return len(self.distinct)

    @property
    def unique(self) -> bool:
        return (
            not self.overflow
            and self.missing == 0
            and self.present > 0
            and all(n == 1 for n in self.distinct.values())
        ) or (self.overflow and self.missing == 0 and max(self.distinct.values()) == 1)


def profile(path: Path) -> tuple[list[Profile], int, tuple[str, ...], list[str], pa.Table]:
    """Per column, counts over the whole file; the number of rows; the words
    the file writes for no value (read as missing in the counts); the text
    columns where those words may be values; and the first rows (up to
    SAMPLE_ROWS), every column as trimmed text with no value as null.

    Raises:
        ProjectError: the file is not a readable CSV.
    """
    try:
        head = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16))
        names = head.schema.names
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        # a header with no commas, rows with some (decimal commas): say why
        first = _first_line(path)
        if "," not in first and (sep := delimiter(first)) is not None:
            raise ProjectError(f"{path}: {one_column(sep, _utf8(path))}") from None
        raise ProjectError(f"{path}: not a readable CSV file: {str(exc).splitlines()[0]}") from None
    if len(names) == 1 and (sep := delimiter(names[0])):
        raise ProjectError(f"{path}: {one_column(sep, _utf8(path))}")

    def read(missing: tuple[str, ...]) -> tuple[list[Profile], int, pa.Table]:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=4 << 20),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                null_values=[""],
                strings_can_be_null=True,
            ),
        )
        profiles = [
            Profile(n, unnamed=not raw.strip())  # as ingestion reads the header
            for n, raw in zip(header_names(names), names, strict=True)
        ]
        rows, kept, size = 0, [], 0
        read_as = [p.name for p in profiles]
        for batch in reader:
            rows += batch.num_rows
            clean = [blank_as_null(pc.utf8_trim_whitespace(c), missing) for c in batch.columns]
            for p, column in zip(profiles, clean, strict=True):
                _count(p, column)
            if rows - batch.num_rows < SAMPLE_ROWS and size < SAMPLE_BYTES:
                kept.append(pa.record_batch(clean, names=read_as))
                size += kept[-1].nbytes
        sample = pa.Table.from_batches(kept, pa.schema([(n, pa.string()) for n in read_as]))
        return profiles, rows, sample.slice(0, SAMPLE_ROWS)

    profiles, rows, sample = read(())
    words, texts = missing_words(profiles), []
    if words:  # read again, those words as no value
        first = profiles
        profiles, rows, sample = read(words)
        texts = [
            (p.name, sum(n for w, n in before.words.items() if w in words))
            for p, before in zip(profiles, first, strict=True)
            if p.type == "string" and set(before.words) & set(words)
        ]
    for p in profiles:
        if p.type == "integer":  # "3.0" and "+3" are the whole number 3, as ingestion reads them
            whole: Counter[str] = Counter()
            for value, n in p.distinct.items():
                whole[str(_whole(value))] += n
            p.distinct = whole
        p.time = _time_of(p)
    return profiles, rows, words, texts, sample


def missing_words(profiles: list[Profile]) -> tuple[str, ...]:
    """The MISSING_WORDS a file uses for no value: those found in a column whose
    other values are all numbers (or all true/false), where they cannot be data."""
    found: set[str] = set()
    for p in profiles:
        seen = sum(p.words.values())
        if seen and seen < p.present and p.present - seen in (p.floats, p.booleans, p.dates):
            found |= set(p.words)
    return tuple(w for w in MISSING_WORDS if w in found)


def _time_of(p: Profile) -> TimeInfo | None:
    """Dates or date-times when every value is written as one (in one form),
    with the strptime format that reads them; None otherwise (and, for values
    shaped like dates that cannot be read as one type, why in not_time_why)."""
    if p.not_time or p.present == 0 or p.dates != p.present or not p.shapes:
        return None
    if p.text_type in ("integer", "float", "boolean"):
        return None
    found = {shape: _shape_of(shape) for shape in p.shapes}
    families = {f for f, _ in found.values()}  # type: ignore[misc]
    example = min(p.distinct) if p.distinct else ""
    if len(families) > 1:
        p.not_time_why = (
            "dates written in more than one form ("
            + ", ".join(sorted(found)[:4])
            + "): no single format reads them"
        )
        return None
    (family,) = families
    s = p.parts[family]
    _, sep, kind = _FAMILIES[family]
    matches = [m for _, m in found.values()]  # type: ignore[misc]
    timed = [m for m in matches if m["sep"]]
    if kind == "ymd":
        order, ambiguous = "ab", False
    elif s.a_max > 12 and s.b_max > 12:
        p.not_time_why = "neither the first nor the second part is a month (both go above 12)"
        return None
    elif s.a_max > 12:
        order, ambiguous = "ba", False
    elif s.b_max > 12:
        order, ambiguous = "ab", False
    else:
        order, ambiguous = "ba", True  # day first, as most of the world writes it
    month = (s.a_min, s.a_max) if order == "ab" else (s.b_min, s.b_max)
    day = (s.b_min, s.b_max) if order == "ab" else (s.a_min, s.a_max)
    if month[0] < 1 or month[1] > 12 or day[0] < 1 or day[1] > 31 or s.bad_time:
        p.not_time_why = (
            "some values are no dates (a month above 12, a day above 31 or an hour above 23)"
        )
        return None
    # every time 00:00 and no offset: dates written as date-times (spreadsheets, pandas)
    midnight = bool(timed) and s.midnight == p.present and not any(m["z"] for m in timed)
    type_ = "timestamp" if timed and not midnight else "date"
    iso_date = all(m["date"] == "9999-99-99" for m in matches)
    iso_time = all(m["h"] == "99" and not m["zsp"] for m in timed)  # as ingestion reads ISO
    fmt: str | None = None
    if not (family == "ymd-" and iso_date and iso_time):
        two = any(m["date"].endswith("/99") for m in matches)
        if two and any(m["date"].endswith("/9999") for m in matches):
            p.not_time_why = "years written with 2 and with 4 digits: no single format reads them"
            return None
        day_month = ["%m", "%d"] if order == "ab" else ["%d", "%m"]
        year = "%y" if two else "%Y"
        fmt = sep.join(["%Y", *day_month] if kind == "ymd" else [*day_month, year])
        if timed:
            forms = {
                (m["sep"], bool(m["s"]), bool(m["f"]), m["zsp"], bool(m["z"])) for m in matches
            }
            if len(forms) > 1:
                p.not_time_why = (
                    "date-times written in more than one form (with and without seconds, "
                    "a time or an offset): no single format reads them"
                )
                return None
            ((t_sep, seconds, fraction, z_space, zone),) = forms
            fmt += f"{t_sep}%H:%M" + (":%S" if seconds else "") + (".%f" if fraction else "")
            fmt += (z_space + "%z") if zone else ""
            if fraction:  # Arrow's strptime, which ingestion uses, has no %f
                p.not_time_why = (
                    "fractions of a second in a form other than ISO 8601 (2026-06-20 14:05:00.25)"
                )
                return None
    info = TimeInfo(
        type_, fmt, family, order, ambiguous, s.low[order], s.high[order], example=example
    )
    what = "date" if type_ == "date" else "date-time"
    bad, checked = _unread(p, fmt, "timestamp" if timed else "date")
    if len(bad) > max(1, checked // 100):  # more than a typo or two: not dates
        p.not_time_why = f"{bad[0]!r} is no {what} as {fmt or 'ISO 8601'} reads it"
        return None
    if bad:
        rows = sum(p.distinct[v] for v in bad)
        info.checks.append(
            f"{p.name}: {', '.join(repr(v) for v in bad[:3])} ({rows:,} "
            f"row{'s' if rows > 1 else ''}) is no {what} as {fmt or 'ISO 8601'} reads it: "
            "ingestion sets such rows aside as bad rows; correct them in the file"
        )
    if ambiguous:
        other = fmt.replace("%d", "%D").replace("%m", "%d").replace("%D", "%m")  # type: ignore[union-attr]
        info.checks.append(
            f"{p.name}: day and month order unclear: both parts are 12 or less in every "
            f"value (such as {example!r}); read day first ({fmt}). If the file writes "
            f'the month first, write format = "{other}"'
        )
    elif kind == "dm":
        info.notes.append(
            "day first (a first part goes above 12)"
            if order == "ba"
            else "month first (a second part goes above 12)"
        )
    if fmt is not None and "%y" in fmt:
        info.notes.append(
            "two-digit years: 00 to 68 read as 2000 to 2068, 69 to 99 as 1969 to 1999"
        )
    if type_ == "timestamp":
        zoned = sum(n for shape, n in p.shapes.items() if found[shape][1]["z"])  # type: ignore[index]
        if zoned == 0:
            info.notes.append("no offset: read as UTC")
        elif zoned < p.present:
            info.checks.append(
                f"{p.name}: {p.present - zoned:,} of {p.present:,} date-times have no UTC "
                "offset and are read as UTC; the others are converted to UTC by their offset: "
                "check that the ones without one are UTC"
            )
        else:
            info.notes.append("offsets given: converted to UTC")
        if len(timed) < len(matches):
            info.notes.append("values without a time of day are read as midnight")
    if midnight:
        info.notes.append("every time of day is 00:00: read as dates")
    return info


def _unread(p: Profile, fmt: str | None, type_: str) -> tuple[list[str], int]:
    """The values (of the first distinct ones counted) that ``fmt`` (None: ISO
    8601) does not read, such as 2026-02-30; and how many were tried."""
    read = (
        (lambda v: dt.datetime.strptime(v, fmt))
        if fmt is not None
        else dt.date.fromisoformat
        if type_ == "date"
        else dt.datetime.fromisoformat
    )
    bad, tried = [], 0
    for value in itertools.islice(p.distinct, 5000):
        tried += 1
        try:
            read(value)
        except ValueError:
            bad.append(value)
    return bad, tried


def _whole(value: str) -> int:
    return int(value.split(".", 1)[0])


def _count(p: Profile, text: pa.Array) -> None:
    """Add a block of one column's values (trimmed, no value as null, as
    ingestion reads them) to its counts."""
    p.rows += len(text)
    p.missing += text.null_count
    present = text.drop_null()
    if len(present) == 0:
        return
    words = pc.is_in(present, pa.array(MISSING_WORDS, pa.string()))
    if pc.any(words).as_py():
        for item in pc.value_counts(present.filter(words)).to_pylist():
            p.words[item["values"]] += item["counts"]
    p.integers += int(pc.sum(pc.match_substring_regex(present, PATTERNS["INTEGER"])).as_py() or 0)
    p.floats += int(pc.sum(pc.match_substring_regex(present, PATTERNS["FLOAT"])).as_py() or 0)
    p.pointed += int(pc.sum(pc.match_substring_regex(present, r"^[+-]?[0-9]+\.0+$")).as_py() or 0)
    p.padded += int(pc.sum(pc.match_substring_regex(present, r"^0[0-9]+$")).as_py() or 0)
    digits = present.filter(pc.match_substring_regex(present, r"^[0-9]+$"))
    p.digits += len(digits)
    if len(p.widths) <= 3:
        p.widths.update(pc.unique(pc.utf8_length(digits)).to_pylist())
    lower = pc.utf8_lower(present)
    p.booleans += int(pc.sum(pc.is_in(lower, pa.array(sorted(TRUE | FALSE)))).as_py() or 0)
    p.longest = max(p.longest, int(pc.max(pc.utf8_length(present)).as_py() or 0))
    if not p.not_time:
        _count_dates(p, present)
    if not p.overflow:
        for item in pc.value_counts(present).to_pylist():
            p.distinct[item["values"]] += item["counts"]
        if len(p.distinct) > DISTINCT_CAP:
            p.overflow = True
    elif max(p.distinct.values(), default=0) == 1:  # still checking uniqueness for a key
        for item in pc.value_counts(present).to_pylist():
            p.distinct[item["values"]] += item["counts"]
    else:
        p.uncounted = True
    numbers = pc.cast(present, pa.float64(), safe=False) if _all_numbers(present) else None
    if numbers is not None:
        p.low = min(p.low, float(pc.min(numbers).as_py()))
        p.high = max(p.high, float(pc.max(numbers).as_py()))


def _shapes(values: pa.Array) -> pa.Array:
    """Values with every digit written 9 (nine literal replacements are many
    times faster than one regular expression)."""
    for digit in "012345678":
        values = pc.replace_substring(values, digit, "9")
    return values


def _count_dates(p: Profile, present: pa.Array) -> None:
    """Count the shapes of a block's values; when every value (but a word
    for no value) is shaped like a date, what its parts hold."""
    if not all(
        s in MISSING_WORDS or _shape_of(s)
        for s in pc.unique(_shapes(present.slice(0, 256))).to_pylist()
    ):  # the first values say it for most columns, cheaply
        p.not_time = True
        p.shapes.clear()
        return
    shapes = pc.value_counts(_shapes(present)).to_pylist()
    families: dict[str, int] = {}
    words = False
    for item in shapes:
        shape, n = item["values"], item["counts"]
        if shape in MISSING_WORDS:
            words = True
            continue
        found = _shape_of(shape)
        if found is None:
            p.not_time = True
            p.shapes.clear()
            return
        families[found[0]] = families.get(found[0], 0) + n
        p.shapes[shape] += n
    if len(p.shapes) > SHAPES_CAP:
        p.not_time = True
        p.shapes.clear()
        return
    p.dates += sum(families.values())
    for family in families:
        values = present
        if len(families) > 1 or words:
            values = present.filter(pc.match_substring_regex(present, _RAW[family]))
        parts = _date_parts(values, family)
        s = p.parts.setdefault(family, Parts())
        s.a_min, s.a_max = min(s.a_min, int(parts["a"].min())), max(s.a_max, int(parts["a"].max()))
        s.b_min, s.b_max = min(s.b_min, int(parts["b"].min())), max(s.b_max, int(parts["b"].max()))
        s.bad_time += int(((parts["H"] > 23) | (parts["M"] > 59) | (parts["S"] > 60)).sum())
        s.midnight += int(((parts["H"] == 0) & (parts["M"] == 0) & (parts["S"] == 0)).sum())
        for order in ("ab", "ba"):
            keys = _time_keys(parts, order)
            s.low[order] = min(s.low[order], int(keys.min()))
            s.high[order] = max(s.high[order], int(keys.max()))


def _all_numbers(present: pa.Array) -> bool:
    return bool(pc.all(pc.match_substring_regex(present, PATTERNS["FLOAT"])).as_py())


class Checks(list[str]):
    """The doubtful decisions, printed by ``init`` and each written above the
    column or top-level field it is about (``where``: by column name, "" for
    the columns as a whole; ``fields``: by field, ``split`` for the [split]
    table). Two namespaces: a column may be called ``description`` or ``task``."""

    def __init__(self) -> None:
        super().__init__()
        self.where: dict[str, list[str]] = {}
        self.fields: dict[str, list[str]] = {}

    def add(self, column: str, text: str) -> None:
        self.append(text)
        self.where.setdefault(column, []).append(text)

    def add_field(self, name: str, text: str) -> None:
        self.append(text)
        self.fields.setdefault(name, []).append(text)


@dataclass
class Draft:
    """The inferred project as file data, the decisions that made it, and per
    column what the file held (written as comments, not rules; under "split",
    a name no column may have, comment lines for the [split] table)."""

    data: dict[str, Any]
    decisions: list[str]
    checks: Checks
    key_added: bool = False
    observed: dict[str, str] = field(default_factory=dict)
    unlabelled: int = 0  # rows without a target
    leaks: list[str] = field(default_factory=list)  # columns left out as possible leakage


def project_name(text: str) -> str:
    """A project name (lower-case letters, digits, - and _) from a file's or
    a directory's name."""
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_") or "project"
    return (name if name[0].isalpha() else f"p-{name}")[:63]


def _decimal_commas(p: Profile) -> str | None:
    """A value of a text column that reads as a number with a decimal comma
    ("49,35", "1.234,5"), if nearly all of the column's values do."""
    if not p.distinct:
        return None
    shaped = [v for v in p.distinct if DECIMAL_COMMA.match(v)]
    counted = sum(p.distinct[v] for v in shaped)
    many = len(shaped) >= COMMA_NUMBERS
    return shaped[0] if many and counted >= 0.9 * sum(p.distinct.values()) else None


def _utf8(path: Path) -> bool:
    """Whether the file's first 64 KB read as UTF-8 (a character cut at the end aside)."""
    with path.open("rb") as f:
        head = f.read(1 << 16)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3
    return True


def _first_line(path: Path) -> str:
    with path.open("rb") as f:
        return f.readline(1 << 16).decode("utf-8", "replace")


def _name_of(path: Path) -> str:
    return project_name(path.stem)


def _hint(name: str, columns: list[str]) -> str:
    """What the user probably meant: another delimiter, or a column spelt alike."""
    import difflib

    if len(columns) == 1 and (sep := delimiter(columns[0])):
        return (
            f" (one column was read: the file seems separated by {sep!r}, not commas; "
            "save it as comma-separated CSV)"
        )
    close = difflib.get_close_matches(name, columns, n=1, cutoff=0.6) or [
        c for c in columns if c.lower() == name.lower()
    ]
    return f" (did you mean {close[0]!r}?)" if close else ""


def _positive(values: list[str], counts: Counter[str]) -> tuple[str, str]:
    """``values`` in their order (:func:`_sorted`). Without a value that reads
    as yes, the rarer one, when it is clearly rarer: the event a binary model
    is built for usually is (churned, fraud, default, spam); else the last."""
    lowered = {v.lower(): v for v in values}
    for word in ("1", "yes", "true", "y", "t", "positive", "pos"):
        if word in lowered:
            return lowered[word], f"{lowered[word]!r} reads as the positive answer"
    rarer = min(values, key=lambda v: counts[v])
    if counts[rarer] < MINORITY * sum(counts[v] for v in values):
        return rarer, "neither value reads as yes/true/1: the rarer one, as events usually are"
    return values[-1], "neither value reads as yes/true/1 and neither is rarer: the last in order"


def draft(
    path: Path,
    target: str,
    *,
    key: str | None = None,
    task: str | None = None,
    name: str | None = None,
) -> Draft:
    """Infer a project from a CSV file (named ``name``, else after the file).

    Raises:
        ProjectError: the target or key is not a column, the key is not unique,
            or the task cannot be decided (the message says which flag to pass).
    """
    profiles, rows, words, texts, sample = profile(path)
    by = {p.name: p for p in profiles}
    if target not in by:
        raise ProjectError(
            f"--target {target!r} is not a column of {path.name}"
            f"{_hint(target, list(by))}; columns: {list(by)}"
        )
    for p in profiles:  # the target, a given key and pandas' index are read as text
        if p.name in (target, key) or p.unnamed:
            p.time = None
    by[target].target = True
    if rows == 0:
        raise ProjectError(f"{path.name} has a header but no rows: nothing to infer from")
    decisions, checks = [f"read {rows:,} rows and {len(profiles)} columns of {path.name}"], Checks()
    if words:
        decisions.append(
            f"missing values: {list(words)} read as no value (seen among numbers or true/false)"
        )
        also = (
            f"; {len(texts)} text column{'s' if len(texts) > 1 else ''} hold "
            f"{'them' if len(words) > 1 else 'it'} too ({', '.join(n for n, _ in texts)}): "
            "where it is a value there (Ames' NA for no alley), add missing_values = [] "
            "to that column (each is marked)"
            if texts
            else ""
        )
        checks.add_field(
            "missing_values",
            f"missing_values {list(words)}: read as no value in every column{also}",
        )
        for column, n in texts:  # (not `name`: the project's, a parameter)
            checks.add(
                column,
                f"{column}: {' or '.join(words)} in {n:,} of {rows:,} rows, read as no value as "
                "in the number columns; if it is a value here (none, not applicable), add "
                "missing_values = [] to this column",
            )
    if bad := [n for n in by if not usable_name(n)]:
        raise ProjectError(
            f"columns {bad} cannot be warehouse columns ({NAME_RULE}); rename "
            "them in the file's header"
        )
    if clash := [n for n in by if n in RESERVED]:
        raise ProjectError(
            f"columns {clash} have names the pipeline uses for its own columns "
            f"(all of them: {', '.join(RESERVED)}); rename them in the file's header, "
            f"e.g. {clash[0]!r} to {clash[0] + '_value'!r}"
        )
    key_name, key_added = _pick_key(by, target, key, decisions, checks)
    if key_added and (pair := _unique_pair(path, by, target)):
        a, b = pair
        checks.add(
            key_name,
            f"no single column identifies a row, but {a} and {b} do together (no two "
            f"rows share both). If they always will, replace generated = true with from "
            f'= ["{a}", "{b}"] in this column (and its description): the key is then '
            f"their values joined, so a corrected row for the "
            f"same {a} and {b} replaces the old one, and a later file's rows label the "
            "predictions made for them. As drafted, rows are keyed by their whole "
            "content: a corrected row loads beside the old one, and labels reach "
            "predictions only through /feedback by uuid",
        )
    t = by[target]
    if t.present == 0:
        raise ProjectError(f"target {target!r} is empty in every row: nothing to learn from")
    if t.missing:  # the file still drafts a project; ingestion names those rows
        checks.add(
            target,
            f"{target}: empty in {t.missing:,} of {rows:,} rows. A row without "
            "its answer cannot train, so ingestion sets this file aside with a report "
            "naming them: remove those rows, or start the server with "
            f"MINIMLOPS_MAX_BAD_ROWS={t.missing} to load the others (skipped rows "
            "are reported)",
        )
    task, classes, positive = _pick_task(t, task, decisions, checks)
    columns = []
    if key_added:
        columns.append(
            {
                "name": key_name,
                "type": "string",
                "required": True,
                "kind": "text",
                "generated": True,
                "description": "generated at ingestion for files "
                "without it: <hash of the row's values>-<occurrence>",
            }
        )
    observed = {}
    for p in profiles:
        col = _column(p, p.name == key_name, p.name == target, task, classes, decisions, checks)
        columns.append(col)
        if note := _observed(p, col, p.name == key_name):
            observed[p.name] = note
    data: dict[str, Any] = {
        "name": name or _name_of(path),
        "description": f"from {path.name}",
        "key": key_name,
        "target": target,
        "task": task,
    }
    if positive is not None:
        data["positive_class"] = positive
    if words:
        data["missing_values"] = list(words)
    data["primary_metric"] = {"binary": "log_loss", "multiclass": "log_loss", "regression": "rmse"}[
        task
    ]
    decisions.append(
        f"gate: {data['primary_metric']} (the default for {task}; primary_metric changes it)"
    )
    found = _relations(by, sample, rows, key_name, target, task, columns, decisions, checks)
    if found.features is not None:
        data["features"] = found.features
        # a column the model does not use is not asked of every request (a
        # leaked column is known only after the outcome)
        for c in columns:
            if c["name"] not in (key_name, target, *found.features) and c["required"]:
                c["required"] = False
    if found.split is not None:
        data["split"] = found.split
    if found.split_notes:
        observed["split"] = "\n".join(found.split_notes)
    data["columns"] = columns
    full = [c["name"] for c in columns if c["required"] and c["name"] not in (key_name, target)]
    if full:
        checks.add(
            "",
            f"required: {len(full)} columns were never empty here and are marked "
            f"required ({', '.join(full[:6])}{', ...' if len(full) > 6 else ''}); "
            "set required = false for any that later files or requests may leave "
            "blank (then it is imputed)",
        )
    return Draft(data, decisions, checks, key_added, observed, t.missing, found.leaks)


def _pick_key(
    by: dict[str, Profile], target: str, key: str | None, decisions: list[str], checks: Checks
) -> tuple[str, bool]:
    if key is not None:
        if key not in by:
            raise ProjectError(
                f"--key {key!r} is not a column{_hint(key, list(by))}; columns: {list(by)}"
            )
        p = by[key]
        if not p.unique or p.type not in ("integer", "string"):
            raise ProjectError(
                f"--key {key!r} is not a key: "
                + (
                    f"{p.missing:,} rows have no value"
                    if p.missing
                    else "some values repeat"
                    if not p.unique
                    else f"it holds {p.type} values"
                )
            )
        decisions.append(f"key: {key} (given; unique and never empty)")
        return key, False
    fits = [
        p
        for p in by.values()
        if p.name != target
        and p.unique
        and not p.unnamed
        and p.type in ("integer", "string")
        and (p.type == "string" or p.low >= 0)
    ]
    named = [p for p in fits if _ID_NAME.search(p.name)]
    if named or fits:
        p = (named or fits)[0]
        decisions.append(
            f"key: {p.name} (unique and never empty" + (", and named like an id)" if named else ")")
        )
        if not named:
            checks.add(
                p.name,
                f"key {p.name}: chosen only because it is unique; pass --key "
                "if another column identifies a row",
            )
        return p.name, False
    name = next(n for n in ("row_id", "row_number", "minimlops_row") if n not in by)
    decisions.append(
        f"key: none of the columns is unique and never empty; {name} is "
        "generated at ingestion from each row's values: land your files as "
        "they are"
    )
    checks.add(
        name,
        f"key {name}: a row with the same values as a loaded one is that row (a "
        "cumulative export adds only its new rows); if a column does identify a row, "
        "pass --key (then a later row with a known key replaces that row)",
    )
    return name, True


PAIR_COLUMNS = 6  # columns tried two by two for a key made of two (15 pairs at most)


def _unique_pair(path: Path, by: dict[str, Profile], target: str) -> tuple[str, str] | None:
    """Two columns that together identify every row of the file (a date and a
    store, a customer and a month), or None. Tried: columns never empty, of
    text, whole numbers or dates, that repeat (a unique one is a key alone),
    dates and id-like names first; each pair is counted over the whole file,
    whole numbers by value."""
    import itertools

    fits = [
        p
        for p in by.values()
        if p.name != target
        and not p.unnamed
        and p.missing == 0
        and p.present > 0
        and p.type in ("string", "integer", "date", "timestamp")
        and not p.unique
        and (p.overflow or len(p.distinct) > 1)
    ]
    fits.sort(key=lambda p: (p.time is None, not _ID_NAME.search(p.name), p.name))
    names = [p.name for p in fits[:PAIR_COLUMNS]]
    if len(names) < 2:
        return None
    try:
        raw = pacsv.open_csv(path).schema.names  # as written (" store"), not as read ("store")
        written = dict(zip(header_names(raw), raw, strict=True))
        table = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                include_columns=[written[n] for n in names],
                column_types={written[n]: pa.string() for n in names},
            ),
        )
    except (pa.ArrowException, KeyError, ValueError):  # a hint only: no pair, then
        return None
    # whole numbers compared as the key compares them ("7" and "07" are one value)
    for name in names:
        if by[name].type == "integer":
            column = written[name]
            try:
                number = pc.cast(pc.utf8_trim_whitespace(table[column]), pa.int64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # "1,000": kept as written
                continue
            table = table.set_column(table.schema.get_field_index(column), column, number)
    for a, b in itertools.combinations(names, 2):
        counts = table.group_by([written[a], written[b]]).aggregate([([], "count_all")])
        if counts.num_rows == table.num_rows:
            return a, b
    return None


def _sorted(p: Profile) -> list[str]:
    """A column's distinct values in their order: numbers by value (1, 2, 10,
    not 1, 10, 2), text as text."""
    if p.type in ("integer", "float"):
        return sorted(p.distinct, key=float)
    return sorted(p.distinct)


def _pick_task(
    t: Profile, task: str | None, decisions: list[str], checks: Checks
) -> tuple[str, list[Any] | None, Any]:
    values = _sorted(t)
    if task is None:
        if t.type == "float" and t.integers < t.present:
            task = "regression"
            decisions.append(f"task: regression (target {t.name} holds decimal numbers)")
        elif t.n_distinct == 2:
            task = "binary"
            decisions.append(f"task: binary (target {t.name} has two values: {values})")
        elif t.type in ("integer", "float") and t.n_distinct > 2:
            if t.n_distinct > 20 or t.overflow:
                task = "regression"
                decisions.append(
                    f"task: regression (target {t.name}: "
                    f"{'many' if t.overflow else t.n_distinct} whole numbers)"
                )
                # Codes of classes are a doubt only while a multiclass target
                # could hold them: more distinct values than MAX_CLASSES (a
                # price, a count) are quantities, and --task multiclass would
                # be refused, so the note would be a false alarm.
                if not t.overflow and t.n_distinct <= MAX_CLASSES:
                    checks.add_field(
                        "task",
                        f"task: {t.name} holds {t.n_distinct} distinct whole "
                        "numbers only; if they are codes of classes, pass --task "
                        "multiclass",
                    )
            else:
                raise ProjectError(
                    f"target {t.name!r} has {t.n_distinct} distinct whole numbers "
                    f"{[_typed(v, t.type) for v in values[:10]]}: "
                    "they may be classes or quantities. Pass --task multiclass or "
                    "--task regression"
                )
        elif t.n_distinct > MAX_CLASSES or t.overflow:
            raise ProjectError(
                f"target {t.name!r} holds text with {t.n_distinct:,}+ distinct "
                "values: too many for classes. Is it the right column?"
            )
        elif t.n_distinct < 2:
            raise ProjectError(f"target {t.name!r} has a single value {values}: nothing to learn")
        else:
            task = "multiclass"
            decisions.append(f"task: multiclass (target {t.name} has {t.n_distinct} values)")
    else:
        decisions.append(f"task: {task} (given)")
    if task == "regression":
        if t.type not in ("integer", "float"):
            raise ProjectError(f"--task regression needs a numeric target; {t.name!r} holds text")
        return task, None, None
    if t.overflow or t.n_distinct > MAX_CLASSES:
        raise ProjectError(f"target {t.name!r} has too many distinct values for {task}")
    if task == "binary" and t.n_distinct != 2:
        raise ProjectError(f"--task binary needs two values; {t.name!r} has {values}")
    if task == "multiclass" and t.n_distinct < 3:
        raise ProjectError(
            f"--task multiclass needs 3 values or more; {t.name!r} has {values} (binary?)"
        )
    classes = [_typed(v, t.type) for v in values]
    positive = None
    if task == "binary":
        raw, why = _positive(values, t.distinct)
        positive = _typed(raw, t.type)
        share = t.distinct[raw] / t.present
        decisions.append(f"positive class: {raw!r} ({why}; {share:.0%} of rows)")
        checks.add_field(
            "positive_class",
            f"positive_class {raw!r}: the class whose probability is served; "
            "swap it if the other is the one you care about",
        )
        if share < RARE_POSITIVE:
            checks.add_field(
                "positive_class",
                f"{raw!r} is {share:.1%} of rows: answered only from probability 0.5 up, "
                "it will rarely be the answer; if missing one costs more than a false "
                "alarm, set threshold (for instance 0.2) below positive_class, and "
                "read the precision-recall curve on each version's evaluation page",
            )
    return task, classes, positive


def _shown(value: str) -> str:
    """A value as a TOML comment can hold it: quoted, escaped, at most 40 characters."""
    text = json.dumps(value if len(value) <= 40 else value[:39] + "…", ensure_ascii=False)
    return text.replace("\x7f", "\\u007f")


def _number(value: float, type_: str) -> str:
    return str(int(value)) if type_ == "integer" else f"{value:.6g}"


def _time_features(type_: str) -> str:
    return TIME_FEATURES + (" (and the hour)" if type_ == "timestamp" else "")


def _observed(p: Profile, col: dict[str, Any], is_key: bool) -> str | None:
    """What this file held, to copy into rules if they should hold for every
    file and request: the range of a number, the categories of a text column;
    for dates, also how they are read and what features they make (one line
    each)."""
    if p.time is not None and not is_key:
        read = "read as ISO 8601" if p.time.format is None else f"read with {p.time.format}"
        lines = [f"observed {p.time.span}", "; ".join([read, *p.time.notes])]
        lines.append(f"minimlops makes {_time_features(p.time.type)} features from it")
        return "\n".join(lines)
    if is_key or p.unnamed or p.present == 0 or "allowed" in col or col.get("kind") == "text":
        return None
    if p.type in ("integer", "float"):
        if p.type == "integer" and not p.overflow and p.n_distinct <= FEW_VALUES:
            return "observed values " + ", ".join(
                str(v) for v in sorted(int(v) for v in p.distinct)
            )
        return f"observed {_number(p.low, p.type)} to {_number(p.high, p.type)}"
    if p.type != "string":
        return None
    top = [v for v, _ in p.distinct.most_common(SHOWN)]
    more = (
        ""
        if not p.overflow and p.n_distinct <= SHOWN
        else (f" and {'over ' if p.uncounted else ''}{p.n_distinct - SHOWN:,} more")
    )
    return "observed " + ", ".join(_shown(v) for v in top) + more


def _typed(value: str, type_: str) -> Any:
    if type_ == "integer":  # "3.0" is the whole number 3, as ingestion reads it
        return int(value) if "." not in value else int(float(value))
    if type_ == "float":
        return float(value)
    if type_ == "boolean":
        return value.lower() in TRUE
    return value


def _column(
    p: Profile,
    is_key: bool,
    is_target: bool,
    task: str,
    classes: list[Any] | None,
    decisions: list[str],
    checks: Checks,
) -> dict[str, Any]:
    col: dict[str, Any] = {"name": p.name, "type": p.type, "required": p.missing == 0 or is_target}
    say = f"{p.name}: {p.type}"
    if p.missing:
        say += f", optional ({p.missing:,} of {p.rows:,} empty)"
    if p.unnamed and not is_target and not is_key:
        col.update(required=False, kind="text")  # later files may leave it out
        decisions.append(say + ", no name in the header (pandas' index?), optional, not a feature")
        checks.add(
            p.name,
            f"{p.name}: a column with no name, as pandas writes its index "
            "(to_csv(index=False) leaves it out); not a feature and not the key: a "
            "row's position is nothing to learn from, and every file restarts it",
        )
        return col
    if p.time is not None:
        if p.time.format is not None:
            col["format"] = p.time.format
        say += (
            f" ({p.time.format or 'ISO 8601'}), {p.time.span}; minimlops makes "
            f"{_time_features(p.time.type)} features from it"
        )
        for note in p.time.checks:
            checks.add(p.name, note)
    if is_target and classes is not None:
        col["allowed"] = classes
        say += f", classes {classes}"
    elif p.type in ("integer", "float") and not is_key:
        if p.low >= 0:
            col["min"] = 0
            say += ", never negative (min = 0)"
        if (
            p.type == "integer"
            and not is_target
            and 2 <= p.n_distinct <= FEW_VALUES
            and not p.overflow
        ):
            observed = sorted(int(v) for v in p.distinct)
            if observed == [0, 1]:
                col["kind"] = "categorical"
                say += ", 0/1 (encoded as a category)"
                checks.add(
                    p.name,
                    f"{p.name}: 0/1 values, encoded as a category; fine as a number "
                    'too (kind = "numeric")',
                )
            else:
                checks.add(
                    p.name,
                    f"{p.name}: only {p.n_distinct} distinct whole numbers "
                    f'{observed}: codes of categories? then kind = "categorical"',
                )
    elif is_key and p.type == "integer":
        col.update(min=0, max=2147483647)
    if p.type == "string" and not is_target and not is_key:
        share = p.n_distinct / max(p.present, 1)
        if p.overflow or (p.n_distinct > 50 and share > 0.5):
            # not read by the model, so not asked of every request either
            col.update(kind="text", required=False)
            say += (
                f", free text ({'over ' if p.uncounted else ''}{p.n_distinct:,} distinct),"
                " not a feature"
            )
            checks.add(
                p.name,
                f"{p.name}: mostly distinct text, so not used by the model, nor required "
                "of a request; a derived feature can extract something from it (then "
                "required = true, if it needs a value)",
            )
        else:
            say += f", a category ({p.n_distinct} value{'s' if p.n_distinct != 1 else ''} seen)"
        if p.present and p.dates == p.present and p.not_time_why:
            checks.add(
                p.name,
                f"{p.name}: dates (such as {min(p.distinct)!r}), read as "
                f"{'text' if col.get('kind') == 'text' else 'a category'}: "
                f"{p.not_time_why}. Rewrite them in one form (ISO 8601: 2026-06-20) "
                'and declare type = "date" (or "timestamp"), or write the format '
                '(format = "%d/%m/%Y"): minimlops then makes '
                f"{_time_features('timestamp')} features from them",
            )
        if p.codes:
            example = min((v for v in p.distinct if PADDED.match(v)), default="0…")
            checks.add(
                p.name,
                f"{p.name}: whole numbers written with leading zeros (such as {example!r}): "
                "read as text, a code, so the zeros stay; if they are amounts, declare "
                'type = "integer"',
            )
        if (commas := _decimal_commas(p)) is not None:
            checks.add(
                p.name,
                f"{p.name}: read as text, its values look like numbers written with a "
                f"comma (such as {commas!r}: a decimal comma, or thousands separators); "
                "if they are, save the file with plain numbers (decimal points, no "
                "separators) to read them as numbers (with "
                "pandas: pd.read_csv(path, decimal=',') or thousands=',', then "
                ".to_csv(new_path, index=False))",
            )
        col["max_length"] = max(64, 2 ** math.ceil(math.log2(max(p.longest, 1) * 2)))
    if not is_key and not is_target and p.present == 0:
        col["kind"] = "text"  # not a feature: a later file that fills it needs a decision
        say += ", empty in every row, not a feature"
        checks.add(
            p.name,
            f"{p.name}: empty in every row, so not a feature; if later files fill it, "
            'declare what it holds (type = "float" and kind = "numeric", or '
            'kind = "categorical")',
        )
    if not is_key and not is_target and not p.overflow and p.n_distinct == 1:
        only = next(iter(p.distinct))
        checks.add(
            p.name,
            f"{p.name}: one value only ({only!r}"
            + (f", empty in {p.missing:,} rows" if p.missing else " in every row")
            + "): "
            + (
                "only whether it is empty can be learnt"
                if p.missing
                else "nothing to learn from; leave it out of features"
            ),
        )
    if is_key:
        say += ", the key"
        if p.type == "string":
            col["kind"] = "text"
            col["max_length"] = max(64, p.longest * 2)
    if is_target:
        say += ", the target"
    decisions.append(say)
    return col


# Words in column names. Ids and the entities whose rows repeat (a customer's
# orders): groups. Times: the row's own event, or something that happens later
# (known only after the outcome: leakage if used) or an attribute (a birth date).
_ID_WORDS = {"id", "ids", "uuid", "guid"}
_ENTITIES = {
    "user", "customer", "client", "patient", "account", "member", "subscriber",
    "subject", "household", "device", "session", "visitor", "player", "driver",
    "employee", "person", "student", "merchant", "vendor", "supplier",
}  # fmt: skip
_NAME_WORDS = {"name", "code", "no", "nr", "number", "num", "key", "email"}
_EVENT = {
    "order", "ordered", "transaction", "txn", "event", "created", "creation",
    "timestamp", "ts", "datetime", "purchase", "purchased", "sale", "sold", "visit",
    "admission", "admitted", "booking", "booked", "occurred", "recorded", "observed",
    "logged", "sent", "received", "submitted", "application", "applied", "invoice",
    "invoiced", "payment", "paid", "claim", "trip", "pickup", "request", "requested",
    "reported", "measured", "sampled", "call", "login", "posted", "issued",
}  # fmt: skip
_LATER = {
    "updated", "modified", "deleted", "closed", "ended", "end", "shipped", "delivered",
    "cancelled", "canceled", "cancellation", "churned", "churn", "resolved", "discharge",
    "discharged", "death", "died", "completed", "finished", "returned", "refunded",
    "outcome", "result", "expiry", "expiration", "expires", "expired", "due", "last",
    "until", "termination", "terminated", "settled", "approved", "rejected", "decision",
}  # fmt: skip
_ATTRIBUTE = {"birth", "dob", "born", "birthday", "founded", "built", "established"}
_GENERIC = {"date", "time", "day", "dt", "at", "on", "when", "period", "week", "month"}
LEAK = 0.99  # a column alone this good at the target is named (and left out)
MIN_ROWS = 30  # fewer labelled rows: nothing is said about relations
MIN_GROUPS = 30  # an id with fewer values is a category, not groups to split by


def _tokens(name: str) -> list[str]:
    """A column name's words, lower case: "CustomerID" and "customer_id" are
    ["customer", "id"]."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


def _id_named(name: str) -> bool:
    words = _tokens(name)
    return bool(words) and (words[-1] in _ID_WORDS or (len(words) == 1 and words[0] in _ENTITIES))


def _worded(sample: pa.Table, name: str) -> bool:
    """Whether most of a text column's values are several words: free text,
    not an id (ids have no spaces)."""
    if name not in sample.column_names:
        return False
    values = sample.column(name).drop_null()
    if len(values) == 0:
        return False
    spaced = pc.sum(pc.match_substring(values, " ")).as_py() or 0
    return spaced > len(values) / 2


def _group_named(name: str) -> bool:
    words = _tokens(name)
    return _id_named(name) or (
        any(w in _ENTITIES for w in words) and words[-1] in _NAME_WORDS | _ID_WORDS
    )


def _event_score(name: str) -> int:
    """How much a date column's name reads as the time the row happened: 3 an
    event (order_date, created_at), 2 a plain date or time, 1 anything else,
    0 something later or an attribute (shipped_at, date_of_birth)."""
    words = set(_tokens(name))
    if words & (_LATER | _ATTRIBUTE):
        return 0
    return 3 if words & _EVENT else 2 if words & _GENERIC else 1


@dataclass
class Relations:
    """What the rows say about the columns together: the features (None: the
    default), the split proposed (None: random, the default), comment lines
    for the [split] table, and the columns left out as possible leakage."""

    features: list[str] | None = None
    split: dict[str, Any] | None = None
    split_notes: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)


@dataclass
class _Group:
    name: str
    groups: int
    rows: int
    repeated: int  # rows whose value other rows share

    @property
    def per(self) -> float:
        return self.rows / self.groups


def _group_stats(name: str, sample: pa.Table) -> _Group | None:
    values = sample.column(name).drop_null()
    if len(values) == 0:
        return None
    counts = pc.struct_field(pc.value_counts(values), "counts").to_numpy()
    return _Group(name, len(counts), len(values), int(counts[counts > 1].sum()))


def _relations(
    by: dict[str, Profile],
    sample: pa.Table,
    rows: int,
    key: str,
    target: str,
    task: str,
    columns: list[dict[str, Any]],
    decisions: list[str],
    checks: Checks,
) -> Relations:
    """Ids and groups left out of the features, the leakage guard, and the split."""
    out = Relations()
    kinds = {c["name"]: c.get("kind") for c in columns}
    others = [
        p for p in by.values() if p.name not in (key, target) and not p.unnamed and p.present > 0
    ]
    left_out: dict[str, str] = {}  # column: why, for the features' CHECK

    # ids and groups: an id of something whose rows repeat is how rows are
    # grouped; as a feature it is only memorised, useless on a new value
    groups: list[_Group] = []
    for p in others:
        if p.type not in ("integer", "string") or kinds.get(p.name) == "text" and p.unique:
            continue
        if kinds.get(p.name) == "text" and _worded(sample, p.name):
            continue  # free text (a subject line), however its name reads: no id, no group
        if _group_named(p.name) and not p.unique:
            g = _group_stats(p.name, sample)
            if g and g.groups >= MIN_GROUPS and g.repeated >= 0.3 * g.rows:
                groups.append(g)
                left_out[p.name] = "an id whose values repeat"
                continue
        if _id_named(p.name) and (p.unique or p.overflow or p.n_distinct >= MIN_GROUPS):
            left_out[p.name] = "an identifier"
            checks.add(
                p.name,
                f"{p.name}: an identifier ({'unique' if p.unique else 'many values'}, named "
                "like an id): left out of the features, as a model would only memorise "
                "its values and new rows bring new ones",
            )
        elif (
            p.type == "integer"
            and p.unique
            and p.present >= MIN_ROWS
            and p.high - p.low + 1 == p.present
        ):
            left_out[p.name] = "a row number"
            checks.add(
                p.name,
                f"{p.name}: a row number ({_number(p.low, 'integer')} to "
                f"{_number(p.high, 'integer')}, each once): left out of the features, "
                "as a row's position says nothing of it",
            )
    groups.sort(key=lambda g: (not _id_named(g.name), -g.repeated / g.rows))

    # leakage: each column alone against the target
    labelled = sample.filter(pc.is_valid(sample.column(target))) if len(sample) else sample
    candidates = [
        p
        for p in others
        if p.name not in left_out
        and kinds.get(p.name) != "text"
        and p.type != "timestamp"
        and (p.overflow or p.n_distinct > 1 or p.missing)
    ]
    if len(labelled) >= MIN_ROWS and candidates:
        y = _target_values(labelled.column(target), by[target], task)
        method = (
            "the most common class among the other rows with the same value, leave-one-out; "
            "numbers by percentile bins" + (" and by one cut-off" if task == "binary" else "")
            if task != "regression"
            else "Spearman's rank correlation for numbers; for others the mean of the other "
            "rows with the same value, leave-one-out"
        )
        found = []
        for p in candidates:
            why = _leak(p, labelled.column(p.name), y, task, target)
            if why:
                found.append(p.name)
                left_out[p.name] = "possible leakage"
                checks.add(
                    p.name,
                    f"{p.name}: possible leakage: {why}; left out of the features. A "
                    "column filled in after the outcome, or computed from it, scores like "
                    "this here and fails in use: add it back to features only if its value "
                    f"is known when a prediction is asked",
                )
        out.leaks = found
        where = (
            f"the first {len(labelled):,} labelled rows"
            if len(sample) < rows
            else (f"{len(labelled):,} labelled rows")
        )
        decisions.append(
            f"leakage check: each column alone against {target} on {where} ({method}); "
            f"{LEAK:.0%} or better: "
            + (", ".join(found) + " (left out of the features)" if found else "none")
        )

    # times: the row's event time, to split by; later events, to doubt
    times = [p for p in others if p.time is not None]
    for p in times:
        if _event_score(p.name) == 0 and set(_tokens(p.name)) & _LATER:
            checks.add(
                p.name,
                f"{p.name}: named like something that happens later: if it is known only "
                f"after {target} is (or after the prediction is asked), it leaks; then leave "
                "it out of features",
            )
    spread = [
        p
        for p in times
        if _event_score(p.name) > 0
        and p.missing <= 0.2 * p.rows
        and (p.overflow or p.n_distinct >= 10)
        and max(p.distinct.values()) < 0.5 * p.present
        and p.time.low < p.time.high  # type: ignore[union-attr]
    ]
    spread.sort(key=lambda p: (-_event_score(p.name), p.missing))
    when = spread[0] if spread else None
    group = groups[0] if groups else None

    if when is not None:
        info = when.time
        assert info is not None
        days = (_day(info.high) - _day(info.low)).days
        unit = "weeks" if days >= 60 else "days" if days >= 3 else "hours"
        also = [p.name for p in spread[1:]] + [
            p.name for p in times if p not in spread and p is not when
        ]
        text = (
            f"split: by time on {when.name}: it spans {info.span}: a random split would put "
            f"rows of the same {unit} in TRAIN and VALIDATION and over-promise; TRAIN is "
            "the oldest 70 %, VALIDATION the next 15 %, TEST the newest 15 %, as the model "
            "is used: on what comes after. The served model learns from TRAIN and "
            "VALIDATION, so the newest 15 % reach it only as later files land: "
            "fractions = [0.85, 0.15, 0] serves a fit of every row, with no TEST figure"
        )
        if also:
            text += f"; other dates: {', '.join(also)} ({when.name} reads most like the rows' time)"
        if group is not None:
            text += f"; {group.name} repeats too (see its CHECK)"
        text += '; strategy = "random" if when a row happened does not matter'
        checks.add_field("split", text)
        out.split = {"strategy": "time", "column": when.name, "fractions": [0.7, 0.15, 0.15]}
        decisions.append(
            f"split: by time on {when.name} (oldest 70 % TRAIN, next 15 % VALIDATION, "
            f"newest 15 % TEST)" + (f"; not by group on {group.name}" if group else "")
        )
        out.split_notes = _cutoffs(when, sample, rows)
    elif group is not None:
        checks.add_field(
            "split",
            f"split: by group on {group.name}: {group.groups:,} values, {group.per:.1f} rows "
            f"each on average ({group.repeated / group.rows:.0%} of rows share theirs): a "
            f"random split would put rows of one {_entity(group.name)} in TRAIN and TEST, "
            f"so the model is scored on {_entity(group.name)}s it has already seen and "
            f"over-promises; every {_entity(group.name)} is on one side, about 70 % / 15 % "
            "/ 15 % of them TRAIN / VALIDATION / TEST. If the model only ever serves "
            f'{_entity(group.name)}s it has seen, strategy = "random" is fair',
        )
        out.split = {"strategy": "group", "column": group.name, "fractions": [0.7, 0.15, 0.15]}
        decisions.append(
            f"split: by group on {group.name} (every {group.name} on one side; "
            f"{group.groups:,} values, {group.per:.1f} rows each)"
        )
    else:
        decisions.append(
            "split: random by the key (no date column spread over time, no id that repeats)"
        )
    for g in groups:
        if out.split and out.split["column"] == g.name:
            continue
        instead = (
            f"the split is by time on {when.name}: a {_entity(g.name)}'s older rows train "
            f"and newer ones are tested, as when a returning {_entity(g.name)} is served; "
            f'if the model must serve new ones, strategy = "group", column = "{g.name}"'
            if when is not None
            else f'the split is by group on {group.name}; strategy = "group", column = '  # type: ignore[union-attr]
            f'"{g.name}" splits by this one instead'
        )
        checks.add(
            g.name,
            f"{g.name}: repeats ({g.groups:,} values, {g.per:.1f} rows each on average): "
            f"left out of the features (a model would memorise them) and not the split: " + instead,
        )

    # the features: the default but what was left out here (never none)
    default = [
        c["name"]
        for c in columns
        if c["name"] not in (key, target)
        and c.get("kind") != "text"
        and not (
            out.split and out.split["strategy"] == "group" and c["name"] == out.split["column"]
        )
    ]
    features = [n for n in default if n not in left_out]
    if features and len(features) < len(default):
        out.features = features
        dropped = [n for n in default if n in left_out]
        decisions.append("features: all but " + ", ".join(f"{n} ({left_out[n]})" for n in dropped))
        checks.add_field(
            "features",
            "features: every column but the key, the target and free text, less "
            + ", ".join(f"{n} ({left_out[n]})" for n in dropped)
            + ": see their CHECKs",
        )
    return out


def _day(key: int) -> dt.date:
    text = f"{key:014d}"
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return dt.date(int(text[:4]), int(text[4:6]), 28)


def _cutoffs(p: Profile, sample: pa.Table, rows: int) -> list[str]:
    """Comment lines: cut-off dates instead of fractions, those that give
    70 / 15 / 15 % on this file (when the sample is the whole file)."""
    info = p.time
    assert info is not None
    lines = ["fractions: TRAIN / VALIDATION / TEST, by time; or cut-off dates instead of fractions"]
    values = sample.column(p.name).drop_null()
    if len(sample) < rows or len(values) < MIN_ROWS:
        return [*lines, 'validation_from = "2026-01-01"', 'test_from = "2026-04-01"']
    keys = np.sort(_time_keys(_date_parts(values, info.family), info.order))
    # the rule training applies (domain.splits.cutoffs_from_counts), on this file
    unique, counts = np.unique(keys, return_counts=True)
    found = cutoffs_from_counts(
        [(int(k), int(n)) for k, n in zip(unique, counts, strict=True)], marks(DEFAULT_FRACTIONS)
    )
    if found is None or found[1] > int(unique[-1]):
        return lines
    a, b = (_from_key(int(k), False) for k in found)
    if a == b:
        return lines
    return [
        *lines[:1],
        f"(on this file, {p.name} from {a} is the newest 30 %, from {b} the newest 15 %):",
        f'validation_from = "{a}"',
        f'test_from = "{b}"',
    ]


def _target_values(column: pa.ChunkedArray, t: Profile, task: str) -> np.ndarray:
    """The target as numbers (regression) or as class codes 0..K-1."""
    if task == "regression" or t.type == "integer":
        numbers = pc.cast(column, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        if task == "regression":
            return numbers
        column = pa.array(np.floor(numbers).astype(np.int64)).cast(pa.string())
    if t.type == "boolean":
        column = pc.utf8_lower(column)
    return _codes(column)


def _codes(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A code per distinct value, no value being one of them."""
    encoded = pc.dictionary_encode(values, null_encoding="encode")
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _bins(x: np.ndarray, n_bins: int) -> np.ndarray:
    """Percentile bins of numbers (ties in one bin), no value as bin -1."""
    out = np.full(len(x), -1, dtype=np.int64)
    ok = ~np.isnan(x)
    if ok.any():
        ranks = pc.rank(pa.array(x[ok]), tiebreaker="min").to_numpy().astype(np.int64) - 1
        out[ok] = ranks * n_bins // ok.sum()
    return out


def _lookup_accuracy(codes: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out accuracy of "the most common class among the other rows
    with the same value": a row is right when its class, less itself, still
    outnumbers every other class of its value (ties are wrong, and so is a
    value no other row has)."""
    k = int(y.max()) + 1
    pairs, n = np.unique(codes * k + y, return_counts=True)
    value = pairs // k
    order = np.lexsort((-n, value))
    value, n = value[order], n[order]
    first = np.r_[True, value[1:] != value[:-1]]
    top = n[first]
    second = np.zeros(len(top), dtype=np.int64)
    runner = np.r_[False, first[:-1]] & ~first
    second[(np.cumsum(first) - 1)[runner]] = n[runner]
    return float(top[top - 1 > second].sum() / len(y))


def _cut_accuracy(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The best accuracy of one cut-off on a number for two classes (0/1),
    rows without a number given their majority; and the cut-off."""
    ok = ~np.isnan(x)
    rest = y[~ok]
    right = max(int(rest.sum()), len(rest) - int(rest.sum()))
    xs, ys = x[ok], y[ok]
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    positives = int(ys.sum())
    left = np.cumsum(ys)[:-1]  # positives at or below each cut
    size = np.arange(1, len(xs))
    cut = xs[1:] != xs[:-1]
    if not cut.any():
        return 0.0, math.nan
    below_neg = (size - left) + (positives - left)  # below: class 0, above: class 1
    below_pos = left + (len(xs) - size) - (positives - left)
    best = np.maximum(below_neg, below_pos)
    best = np.where(cut, best, -1)
    i = int(best.argmax())
    return float((best[i] + right) / len(y)), float((xs[i] + xs[i + 1]) / 2)


def _leak(p: Profile, values: pa.ChunkedArray, y: np.ndarray, task: str, target: str) -> str:
    """Why ``p`` alone predicts the target almost perfectly, or "" when it does not."""
    numeric = p.type in ("integer", "float")
    x = (
        pc.cast(values, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        if numeric
        else None
    )
    if task == "regression":
        if x is not None:
            ok = ~np.isnan(x) & ~np.isnan(y)
            if ok.sum() < MIN_ROWS:
                return ""
            rx = _average_ranks(x[ok])
            ry = _average_ranks(y[ok])
            if rx.std() == 0 or ry.std() == 0:
                return ""
            rho = float(np.corrcoef(rx, ry)[0, 1])
            if abs(rho) >= LEAK:
                return f"its rank correlation with {target} is {rho:+.3f} (Spearman)"
            return ""
        codes = _codes(values)
        total, count = np.bincount(codes, weights=y), np.bincount(codes)
        n = len(y)
        others = count[codes] - 1
        pred = np.where(
            others > 0,
            (total[codes] - y) / np.maximum(others, 1),
            (y.sum() - y) / max(n - 1, 1),
        )
        spread = float(((y - y.mean()) ** 2).sum())
        if spread == 0:
            return ""
        r2 = 1 - float(((y - pred) ** 2).sum()) / spread
        if r2 >= LEAK:
            return (
                f"the mean {target} of the other rows with the same value explains "
                f"{r2:.1%} of its variance (leave-one-out)"
            )
        return ""
    base = float(np.bincount(y).max() / len(y))
    limit = min(1 - LEAK, 0.1 * (1 - base))

    def said(accuracy: float, how: str) -> str:
        return (
            f"alone it predicts {target} for {_share(accuracy)} of rows ({how}), against "
            f"{_share(base)} for always the most common class"
        )

    if x is not None and (p.overflow or p.n_distinct > 20):
        accuracy = _lookup_accuracy(_bins(x, max(2, min(100, len(y) // 20))), y)
        if 1 - accuracy <= limit:
            return said(accuracy, "the most common class in its percentile bin, leave-one-out")
        if task == "binary":
            accuracy, cut = _cut_accuracy(x, y)
            if 1 - accuracy <= limit:
                return said(accuracy, f"one cut-off, at {cut:.6g}")
        return ""
    accuracy = _lookup_accuracy(_codes(values), y)
    if 1 - accuracy <= limit:
        return said(accuracy, "the most common class among the other rows with its value")
    return ""


def _share(x: float) -> str:
    """A share as a percentage that is never rounded up to 100 %."""
    return f"{math.floor(x * 10000) / 100:.2f} %"


def _entity(name: str) -> str:
    """What an id names: "customer" for customer_id (the name when unsure)."""
    words = [w for w in _tokens(name) if w not in _ID_WORDS | _NAME_WORDS]
    return " ".join(words) if words else name


def _average_ranks(x: np.ndarray) -> np.ndarray:
    a = pa.array(x)
    low = pc.rank(a, tiebreaker="min").to_numpy()
    high = pc.rank(a, tiebreaker="max").to_numpy()
    return (low + high) / 2.0
