"""Feature building on plain dicts, by column kind, shared by training and serving.

:func:`fit_spec` learns from TRAIN rows only what the features need (medians
for imputation, the categories seen) and returns plain data stored in the
model. :class:`FeatureSet` compiles a spec into lookups once; serving calls
:meth:`FeatureSet.vector` on one request (plain Python, no numpy) and batches
and training call :meth:`FeatureSet.matrix` (numpy a column at a time).
``test_matrix_and_vector_agree`` holds the two equal on every row of every example.

Encodings: a number is its value, the TRAIN median when missing, plus a
missing indicator for an optional column; a boolean is 0/1 (missing: the TRAIN
mode plus an indicator); a category is one-hot over the categories seen in
TRAIN (at most ``MAX_CATEGORIES``, the most frequent) plus one "other" slot for
missing, rare and unseen values, so a new value at serving time is no error.
A category with more values than that (a state, a ticket number) gets,
instead of one-hot slots, two numbers: its TRAIN frequency
(``name_frequency``: the share of TRAIN rows with the value; 0 for a value
TRAIN never had) and its target encoding (``name_target``; multiclass, one a
class: ``name_target=<class>``): the smoothed mean of the label among TRAIN
rows with the value (scikit-learn's ``TargetEncoder``, its empirical-Bayes
smoothing), the label's mean for a value TRAIN never had. Never a thousand
one-hot columns, and rare values still differ. The target encoding is the
only encoding that reads labels, so a training row never gets it from its
own: ``ml.encoding`` gives each TRAIN row the encoding fitted on the
other folds (cross fitting; in time order, on the rows before it; by group,
on the other groups), and serving uses the one fitted on every TRAIN row.
Nothing comes from VALIDATION or TEST.
A date or timestamp column becomes numbers, each a numeric feature as above
(median fill, indicator when optional): ``name_year``, ``name_month``,
``name_day``, ``name_day_of_week`` (Monday 0), ``name_day_of_year``,
``name_days_since_1970`` (a trend) and, of a timestamp, ``name_hour`` (UTC).
Their values are ``datetime.date`` and timezone-aware ``datetime.datetime``
(training rows from Arrow, requests as the request models decode them), or
their ISO 8601 text (a spec's typical row is JSON).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from itertools import islice, repeat
from typing import Any

import numpy as np

from minimlops.domain.project import Project
from minimlops.errors import DerivedFeatureError

MAX_CATEGORIES = 50  # one-hot slots per column at most; the rest share "other"
MAX_FREQUENCIES = 5000  # values whose TRAIN frequency is kept; rarer ones get the smallest kept
MIN_CATEGORY_ROWS = 1
# a request's number past either end of the fitted values by more than this
# share of their span is said to be far outside them (FeatureSet.far; a date
# by more than the whole span: _far_limits)
FAR = 0.1
FIT_CHUNK = 20_000  # rows fit_spec reads at a time, a column at a time
Derive = Mapping[str, Callable[[Mapping[str, Any]], Any]]
_EPOCH = date(1970, 1, 1).toordinal()


def as_time(value: Any) -> Any:
    """A date or timestamp value as the features read it: a ``date``, or a
    ``datetime`` in UTC (naive: read as UTC); ISO 8601 text is parsed; None
    stays None."""
    kind = type(value)
    if kind is date or value is None:
        return value
    if kind is datetime or isinstance(value, datetime):
        zone = value.tzinfo
        return value if zone is UTC or zone is None else value.astimezone(UTC)
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 10:
            return date.fromisoformat(text)
        return as_time(datetime.fromisoformat(text))
    if isinstance(value, date):
        return value
    raise TypeError(f"{value!r} is not a date or a timestamp")


def _year(v: Any) -> int:
    return v.year


def _month(v: Any) -> int:
    return v.month


def _day(v: Any) -> int:
    return v.day


def _day_of_week(v: Any) -> int:
    return v.weekday()


_BEFORE = (0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)  # days before a month


def _day_of_year(v: Any) -> int:
    # what timetuple().tm_yday says, in a tenth of its time on a timestamp
    y, m = v.year, v.month
    leap = m > 2 and y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    return _BEFORE[m] + v.day + leap


def _days_since_1970(v: Any) -> int:
    return v.toordinal() - _EPOCH


def _hour(v: Any) -> int:
    return v.hour if type(v) is not date else 0


# A date's parts, in feature order (a timestamp's add its hour, in UTC)
DATE_PARTS: dict[str, Callable[[Any], int]] = {
    "year": _year,
    "month": _month,
    "day": _day,
    "day_of_week": _day_of_week,
    "day_of_year": _day_of_year,
    "days_since_1970": _days_since_1970,
}
TIMESTAMP_PARTS = {**DATE_PARTS, "hour": _hour}


def date_part(part: str) -> Callable[[Any], Any]:
    """``part`` (a key of ``TIMESTAMP_PARTS``) of one value, None for None."""
    fn, read = TIMESTAMP_PARTS[part], as_time

    def of(value: Any) -> Any:
        return None if value is None else fn(read(value))

    return of


def _columns(project: Project) -> list[dict[str, Any]]:
    derived = {d.name: d for d in project.derived}
    out = []
    for name in project.features:
        if name in derived:
            d = derived[name]
            out.append(
                {
                    "name": name,
                    "kind": d.kind,
                    "derived": True,
                    "optional": True,
                    "inputs": list(d.inputs),
                }
            )
        elif (c := project.column(name)).kind == "date":
            parts = TIMESTAMP_PARTS if c.type == "timestamp" else DATE_PARTS
            out += [
                {
                    "name": f"{name}_{part}",
                    "kind": "numeric",
                    "derived": False,
                    "optional": not c.required,
                    "date": [name, part],  # the column, and which of its parts
                }
                for part in parts
            ]
        else:
            kind = "categorical" if c.kind == "text" else c.kind
            out.append({"name": name, "kind": kind, "derived": False, "optional": not c.required})
    return out


def fit_spec(
    rows: Iterable[Mapping[str, Any]],
    project: Project,
    derive: Derive,
    like: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What the features need, learned from TRAIN rows (never VALIDATION/TEST).

    With ``like`` (the spec selection chose on, when the chosen model is
    refitted on more rows), a category is encoded the way it was there
    (one-hot slots, or frequency and target encoding), whatever its number
    of values in the new rows: the refit serves what selection measured.

    One pass that keeps counts and numbers, not the rows: the rows may be
    streamed, and are read ``FIT_CHUNK`` at a time, a column at a time (with
    derived features' batch forms where the project has them, as
    :meth:`FeatureSet.matrix` does).

    Raises:
        DerivedFeatureError: a derived feature raised on a row (named by its key).
    """
    columns = _columns(project)
    numbers: dict[str, list[np.ndarray]] = {
        c["name"]: [] for c in columns if c["kind"] != "categorical"
    }
    counts: dict[str, Counter[Any]] = {c["name"]: Counter() for c in columns}
    missing: dict[str, int] = dict.fromkeys(numbers, 0)
    inputs = project.input_columns
    raw_counts: dict[str, Counter[Any]] = {c: Counter() for c in inputs}
    parts = _parts(columns)
    batch = {
        c["name"]: (fn.minimlops_batch, c["inputs"])
        for c in columns
        if c["derived"]
        and c.get("inputs")
        and getattr(fn := derive[c["name"]], "minimlops_batch", None)
    }
    it = iter(rows)
    while chunk := list(islice(it, FIT_CHUNK)):
        column = _column_reader(chunk)

        for c in inputs:
            raw_counts[c].update(column(c))  # None too: a column mostly empty is typically empty
        for col in columns:
            name = col["name"]
            values = _values(chunk, col, derive, project.key, parts, batch, column)
            if col["kind"] == "categorical":
                counts[name].update(values)
                continue
            x = (
                values.astype(np.float64)
                if isinstance(values, np.ndarray)
                else np.array(values, np.float64)  # None reads as NaN
            )
            gap = np.isnan(x)
            missing[name] += int(gap.sum())
            numbers[name].append(x[~gap])
    # a refit encodes each category as selection's spec did (see ``like``)
    before = {c["name"]: c for c in like["columns"]} if like is not None else {}
    outputs = _outputs(project)
    for col in columns:
        name = col["name"]
        if col["kind"] == "categorical":
            ranked = [(v, n) for v, n in counts[name].most_common() if v is not None]
            common = [v for v, n in ranked if n >= MIN_CATEGORY_ROWS][:MAX_CATEGORIES]
            col["categories"] = sorted(common, key=str)
            many = len(ranked) > MAX_CATEGORIES
            if name in before:
                many = before[name].get("target_encoding") is not None
            if many:
                total = sum(counts[name].values())
                kept = ranked[:MAX_FREQUENCIES]
                col["frequency"] = {str(v): n / total for v, n in kept}
                # a value past the kept ones is at most as frequent as the last kept;
                # a value TRAIN never had is 0
                col["frequency_rest"] = (
                    kept[-1][1] / total if kept and len(ranked) > len(kept) else 0.0
                )
                # its target encoding instead of one-hot slots of its commonest
                # values (measured on the Titanic example's tickets and family
                # names: one-hot slots beside it did no better); filled by
                # ml.encoding, once the labels are read
                col["one_hot"] = False
                zeros = [0.0] * len(outputs)
                col["target_encoding"] = {
                    "outputs": outputs,
                    "values": {},
                    "rest": zeros,
                    "missing": list(zeros),
                }
        else:
            values = np.concatenate(numbers[name]) if numbers[name] else np.zeros(0)
            fill = float(np.median(values)) if len(values) else 0.0
            col["fill"] = float(round(fill) if col["kind"] == "boolean" else fill)
            col["indicator"] = col["optional"] and (not col["derived"] or missing[name] > 0)
            if len(values) and _ranged(col):  # what a request far outside of is said (far)
                lo, hi = float(values.min()), float(values.max())
                col["range"], col["far"] = [lo, hi], _far_limits(col, project, lo, hi)
    return {
        "format": 2,
        "task": project.task,
        "key": project.key,
        "columns": columns,
        "classes": list(project.classes) if project.classes else None,
        "reference": _reference(project, raw_counts),
        # binary: the probability from which the version answers the positive class
        **({"threshold": project.threshold} if project.task == "binary" else {}),
        # regression: the target's declared min and max, which answers keep within
        **({"bounds": bounds} if (bounds := _bounds(project)) else {}),
    }


def _ranged(col: Mapping[str, Any]) -> bool:
    """Whether a spec column keeps the range of its fitted values: a number a
    person types (not a derived one, not a boolean), and a date's day count
    (one range for the date)."""
    if col["kind"] != "numeric" or col["derived"]:
        return False
    return not col.get("date") or col["date"][1] == "days_since_1970"


def _far_limits(col: Mapping[str, Any], project: Project, lo: float, hi: float) -> list[float]:
    """The values past which a request's number or date is far outside the
    fitted ``lo`` to ``hi``: past either by ``FAR`` of the span; a whole
    number by at least 1 (fitted 0 to 8 siblings: 9 is next to them, 10 is
    not); a date by the whole span, at least a day (a time-ordered table's
    newest rows are past the fitted ones by design, and so is tomorrow's
    traffic: a date is far once it is as far past them again as they span)."""
    span = hi - lo
    if col.get("date"):
        slack = max(span, 1.0)
    elif project.column(col["name"]).type == "integer":
        slack = max(FAR * span, 1.0)
    else:
        slack = FAR * span
    return [lo - slack, hi + slack]


def _bounds(project: Project) -> list[float | None] | None:
    """A regression target's declared [min, max] (None where undeclared), or
    None: a count, a price or a share is never answered below 0 or above 1
    because a linear model extrapolated (a ridge model's date trend gave a
    shop's January sales as -6 units)."""
    t = project.target_column
    if project.task != "regression" or (t.min is None and t.max is None):
        return None
    return [t.min, t.max]


def _outputs(project: Project) -> list[str]:
    """What a target encoding has one number for: the label's mean (binary:
    the positive class's share), or each class's share (multiclass)."""
    if project.task == "multiclass":
        return [str(c) for c in project.classes or ()]
    return ["target"]


def target_encoded(spec: Mapping[str, Any]) -> list[str]:
    """The spec columns that get a target encoding."""
    return [c["name"] for c in spec["columns"] if c.get("target_encoding") is not None]


def _reference(project: Project, counts: Mapping[str, Counter[Any]]) -> dict[str, Any]:
    """A typical row of the training rows: medians of numbers, modes of the
    rest (for explanations and the page's defaults); optional text is None."""
    ref: dict[str, Any] = {}
    for c in project.columns:
        if c.name in (project.target, project.key):
            continue
        seen = counts.get(c.name) or Counter()
        empty = seen.pop(None, 0)  # fit_spec's own counts, read once: no copy
        if c.kind == "text" and not c.required:
            ref[c.name] = None
        elif c.kind == "date" and seen:  # the median day (or instant), as JSON writes it
            ref[c.name] = _median_time(seen).isoformat()
        elif c.kind == "numeric" and seen:
            med = _weighted_median(seen)  # of the values given (a missing one is imputed so)
            # 10 significant digits: the median of 2.09 and 2.11 is 2.1, not 2.0999999999999996
            ref[c.name] = int(round(med)) if c.type == "integer" else float(f"{med:.10g}")
        else:
            # most_common keeps first-seen order on ties, as statistics.mode does; an
            # optional column empty in more rows than its commonest value is typically empty
            mode = seen.most_common(1)[0] if seen else (None, 0)
            ref[c.name] = mode[0] if mode[1] >= empty else None
    return ref


def _weighted_median(counts: Counter[Any]) -> float:
    """The median of values given as value -> count (as statistics.median of
    the values repeated, without repeating them)."""
    items = sorted(counts.items())
    total = sum(n for _, n in items)
    below, middle = 0, []
    for value, n in items:
        for rank in {(total - 1) // 2, total // 2}:  # the one or two middle ranks
            if below <= rank < below + n:
                middle.append(float(value))
        below += n
    return sum(middle) / len(middle) if len(middle) == 2 else middle[0]


def _median_time(counts: Counter[Any]) -> Any:
    """The lower median of dates or timestamps given as value -> count (a value seen)."""
    items = sorted((as_time(v), n) for v, n in counts.items())
    rank, below = (sum(n for _, n in items) - 1) // 2, 0
    for value, n in items:
        below += n
        if rank < below:
            return value
    raise ValueError("no values")


def _parts(columns: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, Callable[[Any], Any]]]:
    """The date parts among spec columns: name -> (the date column, part of a value)."""
    return {c["name"]: (c["date"][0], date_part(c["date"][1])) for c in columns if c.get("date")}


def _value(
    row: Mapping[str, Any],
    col: Mapping[str, Any],
    derive: Derive,
    key: str,
    parts: Mapping[str, tuple[str, Callable[[Any], Any]]] | None = None,
) -> Any:
    if parts and col["name"] in parts:
        column, part = parts[col["name"]]
        return part(row.get(column))
    if not col["derived"]:
        return row.get(col["name"])
    try:
        return derive[col["name"]](row)
    except Exception as exc:
        raise DerivedFeatureError(col["name"], None, exc, row.get(key)) from exc


def _column_reader(rows: list[Mapping[str, Any]]) -> Callable[[str], list[Any]]:
    """A column of the rows, read out of them once."""
    read: dict[str, list[Any]] = {}

    def column(c: str) -> list[Any]:
        if c not in read:
            read[c] = [r.get(c) for r in rows]
        return read[c]

    return column


def _values(
    rows: list[Mapping[str, Any]],
    col: Mapping[str, Any],
    derive: Derive,
    key: str,
    parts: Mapping[str, tuple[str, Callable[[Any], Any]]],
    batch: Mapping[str, tuple[Any, list[str]]],
    column: Callable[[str], list[Any]],
) -> Any:
    """One spec column's values on many rows (a list, or an array from a
    batch form; a categorical batch's NaN is None, as the row form says missing)."""
    name = col["name"]
    if name in parts:
        source, part = parts[name]
        return list(map(part, column(source)))
    if not col["derived"]:
        return column(name)
    fn = derive[name]
    try:
        if name not in batch:
            return [fn(r) for r in rows]
        function, inputs = batch[name]
        values = function({c: list(column(c)) for c in inputs})
    except Exception as exc:
        for r in rows:  # the first row it fails on, named by its key
            _value(r, col, derive, key)
        raise DerivedFeatureError(name, None, exc) from exc
    if col["kind"] == "categorical":
        return [None if isinstance(v, float) and v != v else v for v in values]
    return values


def feature_names(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """The model's input columns, in order (one-hot columns as ``name=value``)."""
    names: list[str] = []
    for col in spec["columns"]:
        if col["kind"] == "categorical":
            if col.get("one_hot", True):
                names += [f"{col['name']}={v}" for v in col["categories"]]
                names.append(f"{col['name']}=other")
            if col.get("frequency") is not None:
                names.append(f"{col['name']}_frequency")
            names += target_names(col)
        else:
            names.append(col["name"])
            if col["indicator"]:
                names.append(f"{col['name']}_missing")
    return tuple(names)


def target_names(col: Mapping[str, Any]) -> list[str]:
    te = col.get("target_encoding")
    if te is None:
        return []
    if te["outputs"] == ["target"]:
        return [f"{col['name']}_target"]
    return [f"{col['name']}_target={o}" for o in te["outputs"]]


class FeatureSet:
    """A spec compiled into lookups, with the project's derived-feature code."""

    def __init__(self, spec: Mapping[str, Any], derive: Derive) -> None:
        self.spec, self.derive = spec, derive
        self.key = spec.get("key")
        self.names = feature_names(spec)
        self.width = len(self.names)
        self._plan: list[tuple[Any, ...]] = []
        self._readers: dict[type, _StructReader | None] = {}
        # the inputs of derived features, so that a request's dict without an
        # optional one reads it as None, as a training row (every column) does
        self._inputs = dict.fromkeys(
            c for col in spec["columns"] if col["derived"] for c in col.get("inputs") or ()
        )
        # date parts: name -> (the date column, the part of one value)
        self._parts = _parts(spec["columns"])
        at = 0
        self._batch: dict[str, tuple[Any, list[str]]] = {}
        # typed columns scored by one-hot slots alone: (name, the categories learnt)
        self.learnt: list[tuple[str, tuple[Any, ...], frozenset[Any]]] = []
        # numbers and dates a request may be far outside of (see far): the
        # column, a date's day count, the lowest and highest fitted, and the
        # limits past which a value is far
        self.ranges: list[tuple[str, Callable[[Any], Any] | None, float, float, float, float]] = []
        self._found = threading.local()  # what this thread's last matrix() found far
        self._reads: dict[type, tuple[bool, list[tuple[Any, ...]]]] = {}  # far(), by row type
        for col in spec["columns"]:
            fn = derive[col["name"]] if col["derived"] else None
            if col.get("date"):  # a function of the row, as a derived one is
                fn = _of_row(*col["date"])
            if (
                col["kind"] == "categorical"
                and fn is None
                and col.get("one_hot", True)
                and col.get("frequency") is None
                and col.get("target_encoding") is None
            ):
                self.learnt.append(
                    (col["name"], tuple(col["categories"]), frozenset(col["categories"]))
                )
            if fn is not None and getattr(fn, "minimlops_batch", None) and col.get("inputs"):
                self._batch[col["name"]] = (fn.minimlops_batch, col["inputs"])
            if col["kind"] == "categorical":
                cats = col["categories"]
                hot = {
                    v: tuple(float(i == j) for j in range(len(cats) + 1))
                    for i, v in enumerate(cats)
                }
                other = tuple(float(j == len(cats)) for j in range(len(cats) + 1))
                index = {v: i for i, v in enumerate(cats)}
                if col.get("one_hot", True):
                    self._plan.append(("c", col["name"], fn, hot, other, index, at))
                    at += len(cats) + 1
                if col.get("frequency") is not None:  # by the value's text, as JSON keeps it
                    self._plan.append(
                        (
                            "f",
                            col["name"],
                            fn,
                            col["frequency"],
                            col.get("frequency_rest", 0.0),
                            None,
                            at,
                        )
                    )
                    at += 1
                te = col.get("target_encoding")
                for j in range(len(te["outputs"]) if te is not None else 0):
                    # one step a slot: a value's j-th number, the rest's, a missing one's
                    found = {v: e[j] for v, e in te["values"].items()}
                    self._plan.append(
                        ("t", col["name"], fn, found, te["rest"][j], te["missing"][j], at)
                    )
                    at += 1
            else:
                # a number a request may be far outside of: its entry in ranges
                ranged = None
                if col.get("range") is not None:
                    ranged = len(self.ranges)
                    lo, hi = col["range"]
                    name, days = (
                        (col["date"][0], date_part("days_since_1970"))
                        if col.get("date")
                        else (col["name"], None)
                    )
                    low, high = col["far"]
                    self.ranges.append((name, days, lo, hi, low, high))
                self._plan.append(("n", col["name"], fn, col["fill"], col["indicator"], ranged, at))
                at += 2 if col["indicator"] else 1

    def unseen(
        self,
        rows: Sequence[Any],
        learnt: Sequence[tuple[str, tuple[Any, ...], frozenset[Any]]] | None = None,
    ) -> list[tuple[str, Any, int, int, tuple[Any, ...]]]:
        """Values of typed categorical columns that no one-hot slot learnt
        (scored as the rest: "other"): (column, the first such value, the
        first row holding one, how many rows do, the categories learnt).
        Columns with many values (frequency or target encoded) have a long
        tail by nature and are not named. ``learnt``: those of :attr:`learnt`
        to look at (all by default). A row may be a request's struct."""
        learnt = self.learnt if learnt is None else learnt
        found: dict[str, list[Any]] = {}
        for i, row in enumerate(rows):
            get = row.get
            for name, _, known in learnt:
                v = get(name)
                if v is not None and v not in known:
                    if name in found:
                        found[name][2] += 1
                    else:
                        found[name] = [v, i, 1]
        return [
            (name, found[name][0], found[name][1], found[name][2], cats)
            for name, cats, _ in learnt
            if name in found
        ]

    def far(self, rows: Sequence[Any]) -> list[tuple[str, Any, int, int, float, float, bool]]:
        """Values of numbers and dates far outside those the model was fitted
        on (past the limits the spec keeps: ``_far_limits``), one finding a
        column and side: (column, the first such value, the first row holding
        one, how many rows do, the lowest and highest fitted (a date's as days
        since 1970), whether they are above). A row may be a request's struct.
        Row by row (a few rows; :meth:`matrix` finds them in a batch:
        :meth:`far_found`)."""
        if not self.ranges:
            return []
        found: dict[tuple[str, bool], list[Any]] = {}
        cls = type(rows[0]) if rows else dict
        if (read := self._reads.get(cls)) is None:
            attrs = getattr(cls, "minimlops_attrs", None)  # a request's struct: attributes
            read = self._reads[cls] = (
                attrs is not None,  # (a struct's get() is Python: read its attributes)
                [
                    (r[0], r[0] if attrs is None else attrs[r[0]], r[1], r[4], r[5])
                    for r in self.ranges
                    if attrs is None or r[0] in attrs
                ],
            )
        struct, ranges = read
        for i, row in enumerate(rows):
            get = None if struct else row.get
            for name, key, days, low, high in ranges:
                v = getattr(row, key) if get is None else get(key)
                if v is None:
                    continue
                x = v if days is None else days(v)
                if low <= x <= high or x != x:  # (NaN: missing, as None)
                    continue
                side = (name, x > high)
                if side in found:
                    found[side][2] += 1
                else:
                    found[side] = [v, i, 1]
        return self._said(found)

    def far_found(self, n: int) -> list[tuple[str, Any, int, int, float, float, bool]] | None:
        """What :meth:`far` says of the rows of the last :meth:`matrix` call
        on this thread, taken (None if that was not of ``n`` rows, or none was
        made since the last take)."""
        found, self._found.last = getattr(self._found, "last", None), None
        return self._said(found[1]) if found is not None and found[0] == n else None

    def _said(
        self, found: Mapping[tuple[str, bool], list[Any]]
    ) -> list[tuple[str, Any, int, int, float, float, bool]]:
        if not found:
            return []
        return [
            (name, *found[(name, above)], lo, hi, above)
            for name, _, lo, hi, _, _ in self.ranges
            for above in (False, True)
            if (name, above) in found
        ]

    def _reader(self, cls: type) -> _StructReader | None:
        """How rows of this class are read: None for a mapping, else a
        reader of the request's structs (see ``entrypoints.http.request_models.row_class``)."""
        if cls not in self._readers:
            struct = getattr(cls, "minimlops_values", None) is not None
            self._readers[cls] = (
                _StructReader(self._plan, self._batch, cls, self._parts) if struct else None
            )
        return self._readers[cls]

    def _failed(
        self, name: str, fn: Any, rows: Sequence[Mapping[str, Any]], exc: Exception
    ) -> DerivedFeatureError:
        """The error of the first row ``fn`` fails on (found again, row by row)."""
        for i, row in enumerate(rows):
            try:
                fn(row)
            except Exception as first:
                return DerivedFeatureError(name, i, first, row.get(self.key) if self.key else None)
        return DerivedFeatureError(name, None, exc)

    def vector(self, row: Mapping[str, Any]) -> list[float]:
        """The feature vector of one row, in :attr:`names` order (plain Python:
        a few us for the Titanic example's features; numpy's set-up alone costs
        ~30 us). The row is a mapping (absent means None), a request struct too."""
        row = self._with_inputs(row)
        out: list[float] = []
        append, extend, get = out.append, out.extend, row.get
        # each step reads its value as linear()'s score does; one shared reader
        # (a list of the values, then a second loop) costs a row ~25 % more
        for kind, name, fn, a, b, m, _ in self._plan:
            if fn is None:
                v = get(name)
            else:
                try:
                    v = fn(row)
                except Exception as exc:
                    raise self._failed(name, fn, [row], exc) from exc
            if kind == "c":
                extend(a.get(v, b))
            elif kind == "f":
                append(0.0 if v is None else a.get(str(v), b))
            elif kind == "t":
                append(m if v is None else a.get(str(v), b))
            elif v is None:
                append(a)
                if b:
                    append(1.0)
            else:
                append(float(v))
                if b:
                    append(0.0)
        return out

    def linear(self, weights: Sequence[float], bias: float) -> Callable[[Mapping[str, Any]], float]:
        """``score(row)``: ``bias`` plus the dot product of ``weights`` with
        :meth:`vector` of the row, without building the vector: a category's
        one-hot slots and their weights become one looked-up number, a missing
        number's filled value and indicator another (wide churn row: ~2 us,
        against ~4 us for the vector and ~1.5 for the product)."""
        if len(weights) != self.width:
            raise ValueError(f"{len(weights)} weights for {self.width} features")
        w = [float(x) for x in weights]
        plan: list[tuple[Any, ...]] = []
        for kind, name, fn, a, b, index, at in self._plan:
            if kind == "c":  # the value's slot's weight; "other" for the rest
                plan.append(
                    ("c", name, fn, {v: w[at + i] for v, i in index.items()}, w[at + len(index)])
                )
            elif kind == "f":
                plan.append(("f", name, fn, {v: w[at] * f for v, f in a.items()}, w[at] * b))
            elif kind == "t":  # the missing value's term rides in the map, under None
                found: dict[Any, float] = {v: w[at] * e for v, e in a.items()}
                found[None] = w[at] * index
                plan.append(("t", name, fn, found, w[at] * b))
            else:  # a number: its weight, and what a missing one adds (filled, indicator)
                plan.append(("n", name, fn, w[at], w[at] * a + (w[at + 1] if b else 0.0)))
        with_inputs, failed = self._with_inputs, self._failed

        def score(row: Mapping[str, Any]) -> float:
            row = with_inputs(row)
            z, get = bias, row.get
            # the values are read as vector() reads them (see there)
            for kind, name, fn, a, b in plan:
                if fn is None:
                    v = get(name)
                else:
                    try:
                        v = fn(row)
                    except Exception as exc:
                        raise failed(name, fn, [row], exc) from exc
                if kind == "c":
                    z += a.get(v, b)
                elif kind == "n":
                    z += b if v is None else a * float(v)
                elif kind == "t":
                    z += a[None] if v is None else a.get(str(v), b)
                elif v is not None:  # a frequency (absent: 0, as vector writes it)
                    z += a.get(str(v), b)
            return z

        return score

    def _with_inputs(self, row: Mapping[str, Any]) -> Mapping[str, Any]:
        """A request's dict without an optional input of a derived feature
        gets it as None (a training row has every column)."""
        if self._inputs and isinstance(row, dict) and not self._inputs.keys() <= row.keys():
            return {**self._inputs, **row}
        return row

    def matrix(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Feature vectors of many rows as a float64 matrix, a column at a time.
        Rows are mappings (absent means None) or request structs, whose columns
        are read with one C call a row and one transpose (a wide batch of
        1,000: ~0.5 instead of ~2 ms for dicts)."""
        n = len(rows)
        out = np.zeros((n, self.width), dtype=np.float64)
        if n == 0:
            return out
        every = np.arange(n)
        reader = self._reader(type(rows[0]))
        if self._inputs and reader is None:
            inputs = self._inputs
            rows = [
                r if not isinstance(r, dict) or inputs.keys() <= r.keys() else {**inputs, **r}
                for r in rows
            ]
        # each input column read out of the rows once
        columns: dict[str, Sequence[Any]] = {} if reader is None else reader.columns(rows)
        derived: dict[str, Any] = {}

        def column(c: str) -> Sequence[Any]:
            if c not in columns:
                columns[c] = [r.get(c) for r in rows]
            return columns[c]

        parts = self._parts
        far: dict[tuple[str, bool], list[Any]] = {}  # what far() would say of these rows
        for kind, name, fn, a, b, index, at in self._plan:
            values: Any
            if fn is None:
                values = column(name)
            elif name in parts:  # a date's part: of the date column, read once
                source, part = parts[name]
                try:
                    values = list(map(part, column(source)))
                except Exception as exc:
                    raise self._failed(name, fn, rows, exc) from exc
            elif name in derived:
                values = derived[name]
            else:
                try:
                    values = derived[name] = self._derived(name, fn, rows, column)
                except Exception as exc:
                    raise self._failed(name, fn, rows, exc) from exc
            if kind == "c":
                get = index.get
                out[every, at + np.fromiter(map(get, values, repeat(len(index))), np.int64, n)] = (
                    1.0
                )
                continue
            if kind == "f":  # a batch form's NaN is missing, as its row form's None
                get = a.get
                out[:, at] = [0.0 if v is None or v != v else get(str(v), b) for v in values]
                continue
            if kind == "t":
                get = a.get
                out[:, at] = [index if v is None or v != v else get(str(v), b) for v in values]
                continue
            # numpy reads None as NaN when it builds a float64 array
            x = (
                values.astype(np.float64)
                if isinstance(values, np.ndarray)
                else np.array(values, np.float64)
            )
            gap = np.isnan(x)
            out[:, at] = np.where(gap, a, x)
            if b:
                out[:, at + 1] = gap
            if index is not None:  # a number a request may be far outside of (NaN is not)
                column_name, _, _, _, low, high = self.ranges[index]
                for above, outside in ((False, x < low), (True, x > high)):
                    if (count := int(np.count_nonzero(outside))) > 0:
                        first = int(np.argmax(outside))
                        v = column(column_name)[first] if name in parts else values[first]
                        far[(column_name, above)] = [v, first, count]
        self._found.last = (n, far)
        return out

    def values(
        self, rows: Sequence[Mapping[str, Any]], names: Iterable[str]
    ) -> dict[str, list[Any]]:
        """Categorical spec columns' values on training rows (dicts), None for
        missing: what their target encodings are fitted on."""
        steps = {step[1]: step for step in self._plan if step[0] in ("c", "t")}
        read = _column_reader(list(rows))
        out: dict[str, list[Any]] = {}
        for name in names:
            fn = steps[name][2]
            try:
                got = read(name) if fn is None else self._derived(name, fn, rows, read)
            except Exception as exc:
                raise self._failed(name, fn, rows, exc) from exc
            out[name] = [None if isinstance(v, float) and v != v else v for v in got]
        return out

    def _derived(
        self,
        name: str,
        fn: Any,
        rows: Sequence[Mapping[str, Any]],
        column: Callable[[str], list[Any]],
    ) -> Any:
        """A derived feature of many rows: its batch form when the project has
        one (NaN for missing), else the one-row function on each row."""
        batch = self._batch.get(name)
        if batch is None:
            return [fn(r) for r in rows]
        function, inputs = batch
        return function({c: list(column(c)) for c in inputs})


def _of_row(column: str, part: str) -> Callable[[Mapping[str, Any]], Any]:
    """A date part as a function of a row (how vector() and linear() read it)."""
    fn, read = TIMESTAMP_PARTS[part], as_time

    def of(row: Mapping[str, Any]) -> Any:
        v = row.get(column)
        if v is None:
            return None
        # the common values as they are: a date, a timestamp in UTC
        return fn(v if type(v) is date or getattr(v, "tzinfo", 0) is UTC else read(v))

    return of


class _StructReader:
    """Reads the input columns of many request structs for a :class:`FeatureSet`:
    each row's fields in one C call (``minimlops_values``, in ``minimlops_order``),
    then one transpose (a wide batch of 1,000: ~0.55x the time of an
    ``attrgetter`` of the needed fields a row)."""

    def __init__(
        self,
        plan: Sequence[tuple[Any, ...]],
        batch: Mapping[str, Any],
        cls: type,
        parts: Mapping[str, tuple[str, Any]] | None = None,
    ) -> None:
        attrs: Mapping[str, str] = cls.minimlops_attrs  # type: ignore[attr-defined]
        order = {attr: i for i, attr in enumerate(cls.minimlops_order)}  # type: ignore[attr-defined]
        needed = [step[1] for step in plan if step[2] is None]
        needed += [c for _, inputs in batch.values() for c in inputs]
        needed += [column for column, _ in (parts or {}).values()]
        self.needed = tuple(dict.fromkeys(c for c in needed if c in attrs))
        self._at = tuple(order[attrs[c]] for c in self.needed)
        self._values = cls.minimlops_values  # type: ignore[attr-defined]

    def columns(self, rows: Sequence[Any]) -> dict[str, Sequence[Any]]:
        """The needed input columns of many rows (tuples)."""
        if not self.needed:
            return {}
        every = list(zip(*map(self._values, rows), strict=True))
        return {c: every[i] for c, i in zip(self.needed, self._at, strict=True)}
