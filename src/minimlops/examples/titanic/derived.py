"""Derived features of the Titanic example: plain functions of one row.

minimlops calls each with the row as a read-only mapping of column names to
values (every column, a missing value as None), at training and at serving
alike; the project file names them, their types and the columns they read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

TITLES = ("Mr", "Mrs", "Miss", "Master", "Rare")
DECKS = ("A", "B", "C", "D", "E", "F", "G")
_TITLE_MAP = {
    "Mlle": "Miss",
    "Ms": "Miss",
    "Mme": "Mrs",
    "Lady": "Rare",
    "Countess": "Rare",
    "the Countess": "Rare",
    "Dona": "Rare",
}
_TITLE_RE = re.compile(r",\s*([^.]+)\.")


def family_size(row: Mapping[str, Any]) -> int:
    return row["SibSp"] + row["Parch"] + 1


def alone(row: Mapping[str, Any]) -> bool:
    return row["SibSp"] + row["Parch"] == 0


def log_fare(row: Mapping[str, Any]) -> float | None:
    fare = row.get("Fare")
    return None if fare is None else math.log1p(fare)


def fare_per_person(row: Mapping[str, Any]) -> float | None:
    fare = row.get("Fare")
    return None if fare is None else fare / (row["SibSp"] + row["Parch"] + 1)


def title(row: Mapping[str, Any]) -> str:
    """Title from the name ("Braund, Mr. Owen" -> Mr), or a guess without one.

    Without a name, boys under 13 are "Master", other males "Mr", females
    under 18 "Miss", other females "Mrs": the titles' meaning in 1912.
    """
    match = _TITLE_RE.search(row.get("Name") or "")
    if match:
        raw = match.group(1).strip()
        mapped = _TITLE_MAP.get(raw, raw)
        return mapped if mapped in TITLES else "Rare"
    age = row.get("Age")
    if row.get("Sex") == "female":
        return "Miss" if age is not None and age < 18 else "Mrs"
    return "Master" if age is not None and age < 13 else "Mr"


def surname(row: Mapping[str, Any]) -> str | None:
    """Family name from the name ("Braund, Mr. Owen" -> Braund); None without one."""
    name = (row.get("Name") or "").strip()
    return name.split(",", 1)[0].strip() or None if "," in name else None


def deck(row: Mapping[str, Any]) -> str:
    """Deck letter from the cabin ("C85" -> C); U when unknown."""
    letter = (row.get("Cabin") or "").strip()[:1].upper()
    return letter if letter in DECKS else "U"


# Batch forms (optional): the same features for many rows at once, from the
# columns they read (lists, None for missing); NaN means missing. minimlops uses
# them for training and batches, the functions above for one request, and a
# test holds the two equal on every row.
Columns = Mapping[str, Sequence[Any]]


def _numbers(values: Sequence[Any]) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def family_size_batch(c: Columns) -> np.ndarray:
    return np.asarray(c["SibSp"], np.int64) + np.asarray(c["Parch"], np.int64) + 1


def alone_batch(c: Columns) -> np.ndarray:
    return (np.asarray(c["SibSp"], np.int64) + np.asarray(c["Parch"], np.int64)) == 0


def log_fare_batch(c: Columns) -> np.ndarray:
    return np.log1p(_numbers(c["Fare"]))


def fare_per_person_batch(c: Columns) -> np.ndarray:
    return _numbers(c["Fare"]) / family_size_batch(c)


def title_batch(c: Columns) -> list[str]:
    """:func:`title` of every row: the guess from sex and age for all rows at
    once, then the rows that have a name."""
    age = _numbers(c["Age"])
    female = np.array([s == "female" for s in c["Sex"]])
    with np.errstate(invalid="ignore"):  # NaN ages compare False, as None does
        guess = np.where(
            female, np.where(age < 18, "Miss", "Mrs"), np.where(age < 13, "Master", "Mr")
        ).tolist()
    for i, name in enumerate(c["Name"]):
        if name:
            guess[i] = title({"Name": name, "Sex": c["Sex"][i], "Age": c["Age"][i]})
    return guess


def surname_batch(c: Columns) -> list[str | None]:
    """:func:`surname` of every row."""
    return [
        (name.partition(",")[0].strip() or None) if name and "," in name else None
        for name in c["Name"]
    ]


def deck_batch(c: Columns) -> list[str]:
    """:func:`deck` of every row."""
    return [
        letter if (letter := (cabin or "").strip()[:1].upper()) in DECKS else "U"
        for cabin in c["Cabin"]
    ]
