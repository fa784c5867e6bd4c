"""Synthetic passengers in the Titanic data set's shape, for tests and benchmarks.

Distributions follow the real data (class mix, ages, fares by class, ports,
cabins mostly in first class, titles by age and sex); survival follows a known
rule plus noise (:func:`survival_probability`), so a model trained on it has
something true to find. ``bad_rows`` plants rows that break the schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

SURNAMES = (
    "Smith",
    "Brown",
    "Andersson",
    "Sage",
    "Goodwin",
    "Johnson",
    "Carter",
    "Panula",
    "Skoog",
    "Rice",
    "Fortune",
    "Asplund",
    "Kelly",
    "Baclini",
)
FIRST_M = ("John", "William", "Owen", "Karl", "Patrick", "James", "Ernst", "Leo")
FIRST_F = ("Mary", "Anna", "Elizabeth", "Margaret", "Helen", "Ellen", "Alice")
# dates and timestamps of generated rows: spread over these years
TIME_SPAN = (np.datetime64("2019-01-01T00:00:00", "s"), np.datetime64("2026-01-01T00:00:00", "s"))
FAULTS = (
    ("Age", "abc"),
    ("Pclass", ""),
    ("Sex", "unknown"),
    ("Survived", "2"),
    ("Fare", "-5"),
    ("SibSp", "1.5"),
    ("Embarked", "X"),
)


def survival_probability(
    female: np.ndarray, pclass: np.ndarray, age: np.ndarray, family: np.ndarray
) -> np.ndarray:
    """The known rule: women, children and first class first."""
    age = np.where(np.isnan(age), 30.0, age)
    logit = (
        -0.6
        + 2.6 * female
        - 1.0 * (pclass - 2)
        + 1.6 * (age < 13)
        - 0.02 * (age - 30)
        - 0.5 * np.maximum(family - 4, 0)
    )
    return 1 / (1 + np.exp(-logit))


def passengers(rows: int, *, seed: int = 0, start_id: int = 1) -> pa.Table:
    """A table of generated passengers with the 12 data set columns (as text-ready values)."""
    rng = np.random.default_rng(seed)
    pclass = rng.choice([1, 2, 3], rows, p=[0.24, 0.21, 0.55])
    female = rng.random(rows) < 0.35
    age = np.clip(rng.normal(29.5, 14, rows), 0.42, 80).round(1)
    age = np.where(rng.random(rows) < 0.2, np.nan, age)
    sibsp = rng.choice(
        [0, 1, 2, 3, 4, 5, 8], rows, p=[0.68, 0.235, 0.031, 0.018, 0.02, 0.006, 0.01]
    )
    parch = rng.choice(
        [0, 1, 2, 3, 4, 5, 6], rows, p=[0.76, 0.132, 0.09, 0.006, 0.004, 0.006, 0.002]
    )
    mu = np.choose(pclass - 1, [np.log(60), np.log(15), np.log(8)])
    fare = np.round(np.exp(rng.normal(mu, 0.5)), 4)
    embarked = rng.choice(np.array(["S", "C", "Q", ""]), rows, p=[0.72, 0.19, 0.087, 0.003])
    has_cabin = rng.random(rows) < np.choose(pclass - 1, [0.8, 0.1, 0.03])
    deck = rng.choice(np.array(list("ABCDEFG")), rows)
    cabin = np.where(has_cabin, np.char.add(deck, rng.integers(1, 130, rows).astype(str)), "")
    p = survival_probability(female, pclass, age, sibsp + parch + 1)
    survived = (rng.random(rows) < p).astype(np.int64)
    return pa.table(
        {
            "PassengerId": np.arange(start_id, start_id + rows, dtype=np.int64),
            "Survived": survived,
            "Pclass": pclass.astype(np.int64),
            "Name": _names(rng, female, age),
            "Sex": np.where(female, "female", "male"),
            "Age": pa.array(age, from_pandas=True),
            "SibSp": sibsp.astype(np.int64),
            "Parch": parch.astype(np.int64),
            # parties shared a ticket: about 3 of 4 distinct, as in the exercise's file
            "Ticket": np.char.add(
                "A/5 ", rng.integers(1000, 1000 + max(2, int(1.7 * rows)), rows).astype(str)
            ),
            "Fare": fare,
            "Cabin": cabin,
            "Embarked": embarked,
        }
    )


def _names(rng: np.random.Generator, female: np.ndarray, age: np.ndarray) -> np.ndarray:
    n = len(female)
    young = np.nan_to_num(age, nan=30) < 13
    title = np.where(
        female,
        np.where((np.nan_to_num(age, nan=30) < 18) | (rng.random(n) < 0.4), "Miss", "Mrs"),
        np.where(young, "Master", "Mr"),
    )
    title = np.where(rng.random(n) < 0.01, rng.choice(np.array(["Dr", "Rev", "Col"]), n), title)
    first = np.where(female, rng.choice(np.array(FIRST_F), n), rng.choice(np.array(FIRST_M), n))
    last = rng.choice(np.array(SURNAMES), n)
    return np.char.add(np.char.add(np.char.add(last, ", "), np.char.add(title, ". ")), first)


def write_csv(path: Path, rows: int, *, seed: int = 0, bad_rows: int = 0, start_id: int = 1) -> int:
    """Write generated passengers as CSV; returns the number of rows planted bad."""
    table = passengers(rows, seed=seed, start_id=start_id)
    if bad_rows:
        table = _plant_faults(table, min(bad_rows, rows), seed)
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="needed"))
    return min(bad_rows, rows)


def _plant_faults(table: pa.Table, k: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed + 1)
    where = rng.choice(table.num_rows, k, replace=False)
    kinds = rng.integers(0, len(FAULTS), k)
    cols = {name: table.column(name).cast(pa.string()).to_pylist() for name in table.column_names}
    for row, kind in zip(where, kinds, strict=True):
        column, value = FAULTS[kind]
        cols[column][row] = value
    return pa.table({n: pa.array(v, pa.string()) for n, v in cols.items()})


# -- any project: rows from its rules, the target from a known rule plus noise --


def rows_for(
    project: Any, rows: int, *, seed: int = 0, start_id: int = 1, missing: float = 0.1
) -> pa.Table:
    """Synthetic rows of a project from its columns and rules (Titanic: its own generator);
    with a key made of columns, fewer rows when their values repeat. Every feature moves
    the target through a hidden linear score (random weights, fixed by ``seed``) plus
    noise, so a model has something to learn: the classes by the score's bands, or a
    number from it.
    """
    if project.extras.get("data") == "titanic":
        return passengers(rows, seed=seed, start_id=start_id)
    rng = np.random.default_rng(seed)
    weights = np.random.default_rng(12345)  # the rule: the same for every seed
    columns: dict[str, Any] = {}
    score = np.zeros(rows)
    for c in project.columns:
        if c.name in (project.key, project.target):
            continue
        values, signal = _column_values(c, rows, rng)
        if not c.required:
            gone = rng.random(rows) < missing
            values = pa.array(
                [None if g else v for v, g in zip(values.to_pylist(), gone, strict=True)],
                values.type,
            )
            signal = np.where(gone, 0.0, signal)
        columns[c.name] = values
        score += weights.normal(0, 1) * signal
    score = (score - score.mean()) / (score.std() or 1.0)
    key = project.key_column
    columns[project.key] = (
        pa.array(np.arange(start_id, start_id + rows, dtype=np.int64))
        if key.type == "integer"
        else pa.array([f"{project.name}-{i:09d}" for i in range(start_id, start_id + rows)])
    )
    columns[project.target] = _target(project, score, rng)
    table = pa.table({c.name: columns[c.name] for c in project.columns})
    if project.key_parts:  # a key made of columns: their values, each pair once (the first)
        from minimlops.services.content_keys import joined_keys

        made = joined_keys(table, project.key_parts)
        _, first = np.unique(made.to_numpy(zero_copy_only=False), return_index=True)
        table = table.set_column(table.schema.get_field_index(project.key), project.key, made)
        table = table.take(pa.array(np.sort(first)))
    return table


def _column_values(c: Any, n: int, rng: np.random.Generator) -> tuple[pa.Array, np.ndarray]:
    """Values of one column within its rules, and their standardized signal."""
    if c.type in ("date", "timestamp"):  # uniform over TIME_SPAN; the signal: how late
        start, end = TIME_SPAN
        seconds = rng.integers(0, int((end - start) / np.timedelta64(1, "s")), n)
        moments = start + seconds.astype("timedelta64[s]")
        values = (
            pa.array(moments.astype("datetime64[D]"))
            if c.type == "date"
            else pa.array(moments).cast(pa.timestamp("us", tz="UTC"))
        )
        return values, (seconds - seconds.mean()) / (seconds.std() or 1.0)
    arrow = {
        "integer": pa.int64(),
        "float": pa.float64(),
        "string": pa.string(),
        "boolean": pa.bool_(),
    }[c.type]
    if c.allowed:
        pick = rng.integers(0, len(c.allowed), n)
        effect = np.random.default_rng(len(c.name)).normal(0, 1, len(c.allowed))
        return pa.array([c.allowed[i] for i in pick], arrow), effect[pick]
    if c.type == "boolean":
        b = rng.random(n) < 0.4
        return pa.array(b), b - 0.4
    if c.type in ("integer", "float"):
        lo = c.min if c.min is not None else 0.0
        hi = c.max if c.max is not None else lo + 100.0
        span = hi - lo
        x = np.clip(rng.normal(lo + span * 0.4, span * 0.15, n), lo, hi)
        x = np.round(x).astype(np.int64) if c.type == "integer" else np.round(x, 4)
        return pa.array(x, arrow), (x - x.mean()) / (x.std() or 1.0)
    cats = [f"{c.name[:8]}_{i}" for i in range(6)]
    pick = rng.integers(0, len(cats), n)
    width = c.max_length or 100
    effect = np.random.default_rng(len(c.name) + 1).normal(0, 1, len(cats))
    return pa.array([cats[i][:width] for i in pick]), effect[pick]


def _target(project: Any, score: np.ndarray, rng: np.random.Generator) -> pa.Array:
    t = project.target_column
    arrow = {
        "integer": pa.int64(),
        "float": pa.float64(),
        "string": pa.string(),
        "boolean": pa.bool_(),
    }[t.type]
    noisy = score + rng.normal(0, 0.5, len(score))
    if project.task == "regression":
        lo = t.min if t.min is not None else 0.0
        hi = t.max if t.max is not None else lo + 100.0
        y = np.clip(lo + (hi - lo) * (0.5 + 0.15 * noisy), lo, hi)
        return pa.array(np.round(y) if t.type == "integer" else np.round(y, 4), arrow)
    classes = list(project.classes)
    edges = np.quantile(noisy, np.linspace(0, 1, len(classes) + 1)[1:-1])
    if project.task == "binary":  # about a third positive
        edges = np.quantile(noisy, [0.65])
    which = np.searchsorted(edges, noisy)
    return pa.array([classes[i] for i in which], arrow)


def write_project_csv(
    project: Any, path: Path, rows: int, *, seed: int = 0, bad_rows: int = 0, start_id: int = 1
) -> int:
    """Write generated rows of a project as CSV; returns how many were planted bad
    (a value that breaks the column's rule, or a required value left out)."""
    if project.extras.get("data") == "titanic":
        return write_csv(path, rows, seed=seed, bad_rows=bad_rows, start_id=start_id)
    table = rows_for(project, rows, seed=seed, start_id=start_id)
    for c in project.columns:  # dates and timestamps as the file writes them
        if c.type in ("date", "timestamp"):
            i = table.schema.get_field_index(c.name)
            table = table.set_column(i, c.name, written_times(table.column(c.name), c.format))
    k = min(bad_rows, rows)
    if k:
        rng = np.random.default_rng(seed + 1)
        cols = {n: table.column(n).cast(pa.string()).to_pylist() for n in table.column_names}
        breakable = [
            c
            for c in project.columns
            if c.name != project.key
            and (
                c.required
                or c.allowed
                or c.type in ("integer", "float", "boolean", "date", "timestamp")
            )
        ]
        for row in rng.choice(rows, k, replace=False):
            c = breakable[int(rng.integers(0, len(breakable)))]
            cols[c.name][row] = (
                ""
                if c.required and not c.allowed and c.type == "string"
                else "not-a-value"
                if c.type != "string"
                else "__unknown__"
            )
        table = pa.table({n: pa.array(v, pa.string()) for n, v in cols.items()})
    if project.key_column.generated:  # written by ingestion, as for the user's own files
        table = table.drop_columns([project.key])
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="needed"))
    return k


def written_times(values: pa.ChunkedArray | pa.Array, fmt: str | None = None) -> pa.Array:
    """Dates or UTC timestamps as text: in the strptime format ``fmt`` (whole
    seconds), or ISO 8601 (``2026-06-20``, ``2026-06-20T14:05:00Z``)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_date(values.type):
        return pc.strftime(values, fmt or "%Y-%m-%d")
    whole = values.cast(pa.timestamp("s", tz="UTC"), safe=False)  # %S without a fraction
    return pc.strftime(whole, fmt or "%Y-%m-%dT%H:%M:%SZ")
