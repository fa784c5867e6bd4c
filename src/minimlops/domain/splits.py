"""How a project splits its labelled rows into TRAIN, VALIDATION and TEST.

Four strategies, declared in the project file's ``[split]`` table:

- ``random``: a hash of the row key (the default, for exchangeable rows). With
  the default fractions the split is the one ingestion stored with each row.
- ``time``: on a date or timestamp column, TRAIN the oldest rows, VALIDATION the
  next, TEST the newest, by fractions of the rows or by cut-off dates. A row
  without a time goes to TRAIN: it cannot be placed in time, so it is never
  scored as "later" data.
- ``group``: on an id-like column (a customer, a patient), a hash of its value,
  so every row of a group is on one side. A row without a group is split by
  its key, like ``random``.
- ``column``: a column of the file holds TRAIN, VALIDATION or TEST for each
  row (the exercise's "flags"). A row without a value is split by its key.

The split is computed by the warehouse over the newest row of each key, in
SQL that DuckDB and BigQuery share (:meth:`Split.sql`), and in Python by
:meth:`Split.of_row`, which the tests hold equal to it. A time split by
fractions is resolved into cut-offs once per training run
(the warehouse's ``time_cutoffs``); the version records them.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from minimlops.domain.schema import SPLIT_BOUNDS, SPLITS, key_int, key_int_sql

STRATEGIES = ("random", "time", "group", "column")
DEFAULT_FRACTIONS = (
    SPLIT_BOUNDS[0],
    round(SPLIT_BOUNDS[1] - SPLIT_BOUNDS[0], 10),
    round(1 - SPLIT_BOUNDS[1], 10),
)
FIELDS = ("strategy", "column", "fractions", "validation_from", "test_from")
_GOLDEN = 2654435761
_MASK = 0xFFFFFFFF


@dataclass(frozen=True)
class SplitSpec:
    """The project's declaration: a strategy, its column, fractions or cut-offs."""

    strategy: str = "random"
    column: str | None = None
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    validation_from: str | None = None  # time: ISO date (or timestamp) VALIDATION starts at
    test_from: str | None = None  # time: where TEST starts

    @property
    def stored(self) -> bool:
        """The split ingestion stored with each row is this one."""
        return self.strategy == "random" and self.fractions == DEFAULT_FRACTIONS

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"strategy": self.strategy}
        if self.column:
            out["column"] = self.column
        if self.validation_from:
            out["validation_from"] = self.validation_from
            if self.test_from:
                out["test_from"] = self.test_from
        elif self.fractions != DEFAULT_FRACTIONS:
            out["fractions"] = list(self.fractions)
        return out

    def describe(self) -> str:
        """One line for people: what goes where."""
        if self.strategy == "time":
            if self.validation_from:
                test = f", TEST from {self.test_from}" if self.test_from else ""
                return (
                    f"by time on {self.column!r}: TRAIN before {self.validation_from}, "
                    f"VALIDATION from {self.validation_from}{test}"
                )
            return f"by time on {self.column!r}: {_shares(self.fractions)}, oldest to newest"
        if self.strategy == "group":
            return f"by group on {self.column!r}: every {self.column} on one side, " + _shares(
                self.fractions
            )
        if self.strategy == "column":
            return f"as the column {self.column!r} says (TRAIN, VALIDATION or TEST)"
        return f"at random by the row key: {_shares(self.fractions)}"


def describe(recorded: Mapping[str, Any] | None) -> str:
    """:meth:`SplitSpec.describe` of a split recorded as plain data."""
    data = dict(recorded or {"strategy": "random"})
    if "fractions" in data:
        data["fractions"] = tuple(data["fractions"])
    return SplitSpec(**{k: v for k, v in data.items() if k in FIELDS}).describe()


def _shares(f: Sequence[float]) -> str:
    return " / ".join(f"{x:.0%}" for x in f) + " TRAIN / VALIDATION / TEST"


def parse_time(text: str, type_: str) -> dt.date | dt.datetime:
    """An ISO 8601 date or timestamp (a timestamp without an offset is UTC).

    Raises:
        ValueError: not one.
    """
    if type_ == "date":
        return dt.date.fromisoformat(text)
    value = dt.datetime.fromisoformat(text)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def parse(raw: Any, columns: Mapping[str, Any], key: str, target: str) -> SplitSpec:
    """The ``[split]`` table, checked against the project's columns.

    ``columns`` maps names to ColumnSpec. Raises ProjectError (through the
    caller's ``fail``) with the field and what is allowed.
    """
    from minimlops.domain.project import ProjectError, closest

    def fail(where: str, message: str) -> ProjectError:
        return ProjectError(f"project file: split.{where}: {message}")

    if raw is None:
        return SplitSpec()
    if not isinstance(raw, Mapping):
        raise ProjectError("project file: split: must be a table ([split])")
    if unknown := [f for f in raw if f not in FIELDS]:
        raise ProjectError(
            f"project file: split: unknown field {unknown[0]!r}{closest(unknown[0], FIELDS)}; "
            f"known: {list(FIELDS)}"
        )
    strategy = raw.get("strategy", "random")
    if strategy not in STRATEGIES:
        raise fail(
            "strategy", f"{strategy!r}{closest(strategy, STRATEGIES)}; one of {list(STRATEGIES)}"
        )
    column = raw.get("column")
    names = list(columns)
    if strategy == "random":
        if column is not None:
            raise fail("column", "a random split is by the row key; it names no column")
    elif column is None:
        raise fail("column", f"a {strategy} split needs a column: name one of {names}")
    elif column not in columns:
        raise fail(
            "column",
            f"a {strategy} split needs a column: {column!r} is not one{closest(column, names)}",
        )
    if column is not None:
        spec = columns[column]
        if column in (key, target):
            raise fail("column", f"{column!r} is the {'key' if column == key else 'target'}")
        if strategy == "time" and spec.type not in ("date", "timestamp"):
            raise fail(
                "column",
                f"a time split needs a date or timestamp column; {column!r} is {spec.type} "
                '(declare it type = "date")',
            )
        if strategy == "group" and spec.type not in ("integer", "string"):
            raise fail(
                "column",
                f"a group split needs an integer or string column; {column!r} is {spec.type}",
            )
        if strategy == "column" and (
            spec.type != "string" or not spec.allowed or not set(spec.allowed) <= set(SPLITS)
        ):
            raise fail(
                "column",
                f"{column!r} must be a string column with allowed = "
                f'["TRAIN", "VALIDATION", "TEST"] (or some of them)',
            )
    fractions = raw.get("fractions")
    if fractions is not None:
        if strategy == "column":
            raise fail("fractions", "a column split takes its rows' own labels; no fractions")
        if (
            not isinstance(fractions, list)
            or len(fractions) != 3
            or not all(
                isinstance(f, int | float) and not isinstance(f, bool) and f >= 0 for f in fractions
            )
            or not math.isclose(sum(fractions), 1.0, abs_tol=1e-9)
            or fractions[0] <= 0
            or fractions[1] <= 0
        ):
            raise fail(
                "fractions",
                f"{fractions!r}: three shares of TRAIN, VALIDATION and TEST that add up to 1, "
                "TRAIN and VALIDATION above 0, for instance [0.7, 0.15, 0.15]",
            )
        fractions = tuple(float(f) for f in fractions)
    cut = {f: raw.get(f) for f in ("validation_from", "test_from")}
    if any(v is not None for v in cut.values()):
        if strategy != "time":
            raise fail("validation_from", "only a time split has cut-off dates")
        if fractions is not None:
            raise fail("fractions", "give fractions or cut-off dates, not both")
        if cut["validation_from"] is None:
            raise fail("validation_from", "with test_from, say where VALIDATION starts too")
        type_ = columns[str(column)].type
        parsed: dict[str, Any] = {}
        for name, value in cut.items():
            if value is None:
                continue
            text = value.isoformat() if isinstance(value, dt.date) else value
            try:
                parsed[name] = parse_time(str(text), type_)
            except ValueError:
                raise fail(
                    name, f"{value!r} is not an ISO 8601 {type_}, for instance 2026-07-01"
                ) from None
            cut[name] = str(text)
        if "test_from" in parsed and parsed["test_from"] <= parsed["validation_from"]:
            raise fail("test_from", "must come after validation_from")
    return SplitSpec(
        strategy,
        column,
        fractions or DEFAULT_FRACTIONS,
        cut["validation_from"],
        cut["test_from"],
    )


def marks(fractions: Sequence[float]) -> tuple[float, float]:
    """Where VALIDATION and TEST start, as shares of the rows in time order."""
    return fractions[0], fractions[0] + fractions[1]


def cutoffs_from_counts(
    counts: Sequence[tuple[Any, int]], at: tuple[float, float]
) -> tuple[Any, Any] | None:
    """Where VALIDATION and TEST start, from a time column's (value, rows)
    sorted by value: the first value with at least ``at[i]`` of the rows
    before it. Rows tied on a cut-off all go to the later split. None: no
    times. The warehouses compute the same in SQL (``time_cutoffs``); this is
    the rule in Python, for the tests and the fakes."""
    total = sum(n for _, n in counts)
    if not total:
        return None
    found: list[Any] = [None, None]
    seen = 0
    for value, n in counts:
        for i in (0, 1):
            if found[i] is None and seen >= at[i] * total:
                found[i] = value
        seen += n
    return finish(found[0], found[1], counts[-1][0])


def cutoffs_sql(newest: str, at: tuple[float, float]) -> str:
    """:func:`cutoffs_from_counts` in SQL that DuckDB and BigQuery share, over
    ``newest`` (a query of one column ``t``): one row of ``first``,
    ``second`` (NULL past the last row), ``last`` and ``total`` (NULL: no times)."""
    return (
        "WITH c AS (SELECT t, COUNT(*) AS n FROM (" + newest + ") WHERE t IS NOT NULL "
        "GROUP BY t), s AS (SELECT t, SUM(n) OVER (ORDER BY t ROWS BETWEEN UNBOUNDED "
        "PRECEDING AND CURRENT ROW) - n AS seen, SUM(n) OVER () AS total FROM c) "
        f"SELECT MIN(CASE WHEN seen >= {at[0]!r} * total THEN t END) AS first, "
        f"MIN(CASE WHEN seen >= {at[1]!r} * total THEN t END) AS second, "
        "MAX(t) AS last, MAX(total) AS total FROM s"
    )


def finish(first: Any, second: Any, last: Any) -> tuple[Any, Any]:
    """Cut-offs whose share lies past the last row: just after it (nothing beyond)."""
    return (
        _after(last) if first is None else first,
        _after(last) if second is None else second,
    )


def _after(value: Any) -> Any:
    if isinstance(value, int):
        return value + 1
    if isinstance(value, dt.datetime):
        return value + dt.timedelta(microseconds=1)
    return value + dt.timedelta(days=1)


@dataclass(frozen=True)
class Split:
    """A split resolved for one training run: the project's declaration, the
    type of its column and, for time, the cut-offs (VALIDATION from, TEST from)."""

    spec: SplitSpec = SplitSpec()
    column_type: str | None = None
    cutoffs: tuple[Any, Any] | None = None

    @property
    def stored(self) -> bool:
        return self.spec.stored

    def to_dict(self) -> dict[str, Any]:
        """For the version's metadata."""
        out = {**self.spec.to_dict(), "description": self.spec.describe()}
        if self.cutoffs is not None:
            out["validation_from"], out["test_from"] = (iso(c) for c in self.cutoffs)
        return out

    def _bounds(self) -> tuple[float, float]:
        f = self.spec.fractions
        return f[0] * 2**32, (f[0] + f[1]) * 2**32

    def of_row(self, row: Mapping[str, Any], key: str) -> str:
        """The split of one row (its stored ``split`` for the fallbacks)."""
        s = self.spec
        if s.stored:
            return str(row["split"])
        if s.strategy == "time":
            t = row.get(s.column or "")
            if t is None or self.cutoffs is None or t < self.cutoffs[0]:
                return SPLITS[0]
            return SPLITS[1] if t < self.cutoffs[1] else SPLITS[2]
        if s.strategy == "column":
            value = row.get(s.column or "")
            return str(value) if value is not None else str(row["split"])
        value = row.get(s.column or "") if s.strategy == "group" else row[key]
        if value is None:
            return str(row["split"])
        h = (key_int(value if s.strategy == "random" else str(value)) * _GOLDEN) & _MASK
        lo, hi = self._bounds()
        return SPLITS[0] if h < lo else SPLITS[1] if h < hi else SPLITS[2]

    def sql(self, dialect: str, quote: Callable[[str], str], key: str, key_type: str) -> str:
        """The split as a SQL expression over a data table's columns (DuckDB's
        or BigQuery's words); ``split`` itself when it is the stored one."""
        s = self.spec
        if s.stored:
            return "split"
        if s.strategy == "time":
            if self.cutoffs is None:
                return f"'{SPLITS[0]}'"
            t = quote(s.column or "")
            a, b = (_literal(c, dialect) for c in self.cutoffs)
            return (
                f"(CASE WHEN {t} IS NULL OR {t} < {a} THEN '{SPLITS[0]}' "
                f"WHEN {t} < {b} THEN '{SPLITS[1]}' ELSE '{SPLITS[2]}' END)"
            )
        if s.strategy == "column":
            return f"COALESCE({quote(s.column or '')}, split)"
        if s.strategy == "random":
            value, type_ = quote(key), key_type
        else:
            text = "STRING" if dialect == "bigquery" else "VARCHAR"
            value, type_ = f"CAST({quote(s.column or '')} AS {text})", "string"
        h = f"(({key_int_sql(value, type_, dialect)} * {_GOLDEN}) & {_MASK})"
        lo, hi = self._bounds()
        return (
            f"(CASE WHEN {value} IS NULL THEN split WHEN {h} < {lo!r} THEN '{SPLITS[0]}' "
            f"WHEN {h} < {hi!r} THEN '{SPLITS[1]}' ELSE '{SPLITS[2]}' END)"
        )


def iso(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def _literal(value: Any, dialect: str) -> str:
    if isinstance(value, dt.datetime):
        utc = value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
        return f"TIMESTAMPTZ '{utc}'" if dialect == "duckdb" else f"TIMESTAMP '{utc}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    raise TypeError(f"a time cut-off is a date or a timestamp, not {value!r}")


def recorded_split(project: Any, recorded: Mapping[str, Any] | None) -> Split | None:
    """The split a version recorded (its strategy, column and cut-offs), to
    read the rows it was trained on again; None: the stored random split (a
    version trained before splits were recorded, or one whose split can no
    longer be read with this project's columns)."""
    if (
        not recorded
        or recorded.get("strategy", "random") == "random"
        and not recorded.get("fractions")
    ):
        return None
    raw = {k: recorded[k] for k in FIELDS if k in recorded}
    cut = (raw.pop("validation_from", None), raw.pop("test_from", None))
    try:
        spec = parse(raw, {c.name: c for c in project.columns}, project.key, project.target)
    except ValueError:
        return None
    column_type = project.column(spec.column).type if spec.column else None
    if spec.strategy != "time" or column_type is None or cut[0] is None:
        return Split(spec, column_type)
    times = tuple(parse_time(str(c), column_type) for c in cut)
    return Split(spec, column_type, (times[0], times[1]))


def resolve(
    spec: SplitSpec,
    column_type: str | None,
    cutoffs: Callable[[str, tuple[float, float]], tuple[Any, Any] | None],
) -> Split:
    """The split of one training run: a time split's cut-offs, declared or
    found from the rows (``cutoffs(column, marks)``: the warehouse's
    ``time_cutoffs``); the other strategies need nothing from the data."""
    if spec.strategy != "time" or column_type is None:
        return Split(spec, column_type)
    if spec.validation_from:
        start = parse_time(spec.validation_from, column_type)
        end = (
            parse_time(spec.test_from, column_type)
            if spec.test_from
            else parse_time("9999-12-31", column_type)  # no TEST
        )
        return Split(spec, column_type, (start, end))
    return Split(spec, column_type, cutoffs(spec.column or "", marks(spec.fractions)))
