"""Synthetic passengers in the Titanic data set's shape, for tests and benchmarks.

Distributions follow the real data (class mix, ages, fares by class, ports,
cabins mostly in first class, titles by age and sex); survival follows a known
rule plus noise (:func:`survival_probability`), so a model trained on it has
something true to find. ``bad_rows`` plants rows that break the schema.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

SURNAMES = ("Smith", "Brown", "Andersson", "Sage", "Goodwin", "Johnson", "Carter",
            "Panula", "Skoog", "Rice", "Fortune", "Asplund", "Kelly", "Baclini")  # fmt: skip
FIRST_M = ("John", "William", "Owen", "Karl", "Patrick", "James", "Ernst", "Leo")
FIRST_F = ("Mary", "Anna", "Elizabeth", "Margaret", "Helen", "Ellen", "Alice")
FAULTS = (("Age", "abc"), ("Pclass", ""), ("Sex", "unknown"), ("Survived", "2"),
          ("Fare", "-5"), ("SibSp", "1.5"), ("Embarked", "X"))  # fmt: skip


def survival_probability(female: np.ndarray, pclass: np.ndarray, age: np.ndarray,
                         family: np.ndarray) -> np.ndarray:  # fmt: skip
    """The known rule: women, children and first class first."""
    age = np.where(np.isnan(age), 30.0, age)
    logit = (-0.6 + 2.6 * female - 1.0 * (pclass - 2) + 1.6 * (age < 13)
             - 0.02 * (age - 30) - 0.5 * np.maximum(family - 4, 0))  # fmt: skip
    return 1 / (1 + np.exp(-logit))


def passengers(rows: int, *, seed: int = 0, start_id: int = 1) -> pa.Table:
    """A table of generated passengers with the 12 data set columns (as text-ready values)."""
    rng = np.random.default_rng(seed)
    pclass = rng.choice([1, 2, 3], rows, p=[0.24, 0.21, 0.55])
    female = rng.random(rows) < 0.35
    age = np.clip(rng.normal(29.5, 14, rows), 0.42, 80).round(1)
    age = np.where(rng.random(rows) < 0.2, np.nan, age)
    sibsp = rng.choice([0, 1, 2, 3, 4, 5, 8], rows, p=[.68, .235, .031, .018, .02, .006, .01])
    parch = rng.choice([0, 1, 2, 3, 4, 5, 6], rows, p=[.76, .132, .09, .006, .004, .006, .002])
    mu = np.choose(pclass - 1, [np.log(60), np.log(15), np.log(8)])
    fare = np.round(np.exp(rng.normal(mu, 0.5)), 4)
    embarked = rng.choice(np.array(["S", "C", "Q", ""]), rows, p=[0.72, 0.19, 0.087, 0.003])
    has_cabin = rng.random(rows) < np.choose(pclass - 1, [0.8, 0.1, 0.03])
    deck = rng.choice(np.array(list("ABCDEFG")), rows)
    cabin = np.where(has_cabin, np.char.add(deck, rng.integers(1, 130, rows).astype(str)), "")
    p = survival_probability(female, pclass, age, sibsp + parch + 1)
    survived = (rng.random(rows) < p).astype(np.int64)
    return pa.table({
        "PassengerId": np.arange(start_id, start_id + rows, dtype=np.int64),
        "Survived": survived, "Pclass": pclass.astype(np.int64),
        "Name": _names(rng, female, age), "Sex": np.where(female, "female", "male"),
        "Age": pa.array(age, from_pandas=True), "SibSp": sibsp.astype(np.int64),
        "Parch": parch.astype(np.int64),
        "Ticket": np.char.add("A/5 ", rng.integers(1000, 400000, rows).astype(str)),
        "Fare": fare, "Cabin": cabin, "Embarked": embarked,
    })  # fmt: skip


def _names(rng: np.random.Generator, female: np.ndarray, age: np.ndarray) -> np.ndarray:
    n = len(female)
    young = np.nan_to_num(age, nan=30) < 13
    title = np.where(female, np.where((np.nan_to_num(age, nan=30) < 18)
                                      | (rng.random(n) < 0.4), "Miss", "Mrs"),
                     np.where(young, "Master", "Mr"))  # fmt: skip
    title = np.where(rng.random(n) < 0.01, rng.choice(np.array(["Dr", "Rev", "Col"]), n), title)
    first = np.where(female, rng.choice(np.array(FIRST_F), n), rng.choice(np.array(FIRST_M), n))
    last = rng.choice(np.array(SURNAMES), n)
    return np.char.add(np.char.add(np.char.add(last, ", "), np.char.add(title, ". ")), first)


def write_csv(path: Path, rows: int, *, seed: int = 0, bad_rows: int = 0,
              start_id: int = 1) -> int:  # fmt: skip
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
