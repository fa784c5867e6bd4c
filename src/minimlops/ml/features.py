"""Feature building on plain dicts, shared by training and serving.

Training calls :func:`matrix` on every row and serving calls :func:`vector` on
one request: both run the same Python, so they cannot disagree. The few
statistics a feature needs (imputation values) are learned from TRAIN rows
only (:func:`fit_spec`) and stored inside the model artifact.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

TITLES = ("Mr", "Mrs", "Miss", "Master", "Rare")
DECKS = ("A", "B", "C", "D", "E", "F", "G", "U")
PORTS = ("C", "Q", "S")
_TITLE_MAP = {"Mlle": "Miss", "Ms": "Miss", "Mme": "Mrs", "Lady": "Rare",
              "Countess": "Rare", "the Countess": "Rare", "Dona": "Rare"}  # fmt: skip
_TITLE_RE = re.compile(r",\s*([^.]+)\.")

FEATURE_NAMES: tuple[str, ...] = (
    "pclass_1", "pclass_2", "pclass_3", "female", "age", "age_missing",
    "sibsp", "parch", "family_size", "alone", "fare", "log_fare",
    "fare_per_person", *(f"embarked_{p}" for p in PORTS),
    *(f"title_{t}" for t in TITLES), *(f"deck_{d}" for d in DECKS),
)  # fmt: skip
# The request fields the model reads (Name and Cabin only for title and deck).
MODEL_INPUTS = ("Pclass", "Sex", "Age", "SibSp", "Parch", "Fare", "Embarked",
                "Name", "Cabin")  # fmt: skip


def title(row: Mapping[str, Any]) -> str:
    """Title from the name ("Braund, Mr. Owen" -> Mr), or a guess without one.

    Without a name, boys under 13 are "Master", other males "Mr", females
    under 18 "Miss", other females "Mrs": the titles' meaning in 1912.
    """
    name = row.get("Name") or ""
    match = _TITLE_RE.search(name)
    if match:
        raw = match.group(1).strip()
        mapped = _TITLE_MAP.get(raw, raw)
        return mapped if mapped in TITLES else "Rare"
    age = row.get("Age")
    if row.get("Sex") == "female":
        return "Miss" if age is not None and age < 18 else "Mrs"
    return "Master" if age is not None and age < 13 else "Mr"


def deck(row: Mapping[str, Any]) -> str:
    """Deck letter from the cabin ("C85" -> C); U when unknown."""
    cabin = (row.get("Cabin") or "").strip()
    letter = cabin[:1].upper()
    return letter if letter in DECKS else "U"


def fit_spec(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Imputation values learned from training rows (never VALIDATION/TEST).

    One pass that keeps numbers and counts, not the rows: the rows may be
    streamed (training on a million rows reads them a chunk at a time).
    """
    ages: dict[str, list[float]] = {t: [] for t in TITLES}
    fares: dict[str, list[float]] = {"1": [], "2": [], "3": []}
    ports: dict[str, int] = dict.fromkeys(PORTS, 0)
    seen: dict[str, Counter[Any]] = {c: Counter() for c in _MODE_COLUMNS}
    for row in rows:
        for column, counts in seen.items():
            if (value := row.get(column)) is not None:
                counts[value] += 1
        if row.get("Age") is not None:
            ages[title(row)].append(float(row["Age"]))
        if row.get("Fare") is not None:
            fares[str(row["Pclass"])].append(float(row["Fare"]))
        if row.get("Embarked") in ports:
            ports[row["Embarked"]] += 1
    all_ages = [a for v in ages.values() for a in v] or [28.0]
    all_fares = [f for v in fares.values() for f in v] or [14.45]
    age_all, fare_all = statistics.median(all_ages), statistics.median(all_fares)
    # a typical passenger of the training rows: medians and modes (for explanations);
    # most_common keeps first-seen order on ties, as statistics.mode does
    mode = {c: counts.most_common(1)[0][0] if counts else None for c, counts in seen.items()}
    port = max(ports, key=lambda p: ports[p])
    return {
        "reference": {"Pclass": mode["Pclass"] or 3, "Sex": mode["Sex"] or "male", "Age": age_all,
                      "SibSp": mode["SibSp"] or 0, "Parch": mode["Parch"] or 0,
                      "Fare": fare_all, "Embarked": port, "Name": None, "Cabin": None},
        "age_by_title": {t: statistics.median(v) if v else age_all
                         for t, v in ages.items()},
        "fare_by_class": {c: statistics.median(v) if v else fare_all
                          for c, v in fares.items()},
        "embarked_mode": port,
    }  # fmt: skip


_MODE_COLUMNS = ("Pclass", "Sex", "SibSp", "Parch")


def vector(row: Mapping[str, Any], spec: Mapping[str, Any]) -> list[float]:
    """The feature vector of one passenger, in :data:`FEATURE_NAMES` order."""
    pclass, sibsp, parch = int(row["Pclass"]), int(row["SibSp"]), int(row["Parch"])
    t, d = title(row), deck(row)
    age = row.get("Age")
    age_value = float(age) if age is not None else spec["age_by_title"][t]
    fare = row.get("Fare")
    fare_value = float(fare) if fare is not None else spec["fare_by_class"][str(pclass)]
    port = row.get("Embarked") or spec["embarked_mode"]
    family = sibsp + parch + 1
    return [
        float(pclass == 1), float(pclass == 2), float(pclass == 3),
        float(row["Sex"] == "female"), age_value, float(age is None),
        float(sibsp), float(parch), float(family), float(family == 1),
        fare_value, math.log1p(fare_value), fare_value / family,
        *_PORT_HOT.get(port, _NO_PORT), *_TITLE_HOT[t], *_DECK_HOT[d],
    ]  # fmt: skip


def _one_hot(values: tuple[str, ...]) -> dict[str, tuple[float, ...]]:
    return {v: tuple(float(v == x) for x in values) for v in values}


# The one-hot parts of vector(), looked up instead of built per request (~1 us of 2)
_PORT_HOT, _TITLE_HOT, _DECK_HOT = _one_hot(PORTS), _one_hot(TITLES), _one_hot(DECKS)
_NO_PORT = (0.0,) * len(PORTS)


def matrix(rows: Sequence[Mapping[str, Any]], spec: Mapping[str, Any]) -> np.ndarray:
    """Feature vectors of many rows as a float64 matrix (one row per passenger).

    The same features as :func:`vector`, computed a column at a time with
    numpy (~10x faster on a batch); ``test_matrix_and_vector_agree`` holds
    the two equal on every row of the data set.
    """
    n = len(rows)
    out = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float64)
    if n == 0:
        return out
    pclass = np.fromiter((int(r["Pclass"]) for r in rows), np.int64, n)
    sibsp = np.fromiter((int(r["SibSp"]) for r in rows), np.int64, n)
    parch = np.fromiter((int(r["Parch"]) for r in rows), np.int64, n)
    female = np.fromiter((r["Sex"] == "female" for r in rows), np.bool_, n)
    age = _floats(rows, "Age", n)
    fare = _floats(rows, "Fare", n)
    titles = _title_indices(rows, female, age)
    age_missing = np.isnan(age)
    by_title = np.array([spec["age_by_title"][t] for t in TITLES], dtype=np.float64)
    age = np.where(age_missing, by_title[titles], age)
    by_class = np.array([0.0, *(spec["fare_by_class"][c] for c in ("1", "2", "3"))])
    fare = np.where(np.isnan(fare), by_class[pclass], fare)
    family = sibsp + parch + 1
    columns = (pclass == 1, pclass == 2, pclass == 3, female, age, age_missing, sibsp, parch,
               family, family == 1, fare, np.log1p(fare), fare / family)  # fmt: skip
    for j, column in enumerate(columns):
        out[:, j] = column
    every = np.arange(n)
    mode = spec["embarked_mode"]
    ports = np.fromiter((PORTS.index(r.get("Embarked") or mode) for r in rows), np.int64, n)
    out[every, len(columns) + ports] = 1.0
    out[every, len(columns) + len(PORTS) + titles] = 1.0
    decks = np.fromiter((_DECK_INDEX[deck(r)] for r in rows), np.int64, n)
    out[every, len(columns) + len(PORTS) + len(TITLES) + decks] = 1.0
    return out


_DECK_INDEX = {d: i for i, d in enumerate(DECKS)}
_TITLE_INDEX = {t: i for i, t in enumerate(TITLES)}


def _floats(rows: Sequence[Mapping[str, Any]], column: str, n: int) -> np.ndarray:
    """A column as float64, missing values as NaN."""
    return np.fromiter((math.nan if (v := r.get(column)) is None else float(v) for r in rows),
                       np.float64, n)  # fmt: skip


def _title_indices(rows: Sequence[Mapping[str, Any]], female: np.ndarray,
                   age: np.ndarray) -> np.ndarray:  # fmt: skip
    """:func:`title` of every row as an index into TITLES: the guess from sex
    and age for all rows at once, then the rows that have a name."""
    i = _TITLE_INDEX
    with np.errstate(invalid="ignore"):  # NaN ages compare False, as None does
        guess = np.where(female, np.where(age < 18, i["Miss"], i["Mrs"]),
                         np.where(age < 13, i["Master"], i["Mr"]))  # fmt: skip
    for k, r in enumerate(rows):
        if r.get("Name"):
            guess[k] = i[title(r)]
    return guess.astype(np.int64)
