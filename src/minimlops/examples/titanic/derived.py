"""Derived features of the Titanic example: plain functions of one row.

minimlops calls each with the row as a dict (missing values are None) at
training and at serving alike; the project file names them and their types.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

TITLES = ("Mr", "Mrs", "Miss", "Master", "Rare")
DECKS = ("A", "B", "C", "D", "E", "F", "G")
_TITLE_MAP = {"Mlle": "Miss", "Ms": "Miss", "Mme": "Mrs", "Lady": "Rare",
              "Countess": "Rare", "the Countess": "Rare", "Dona": "Rare"}
_TITLE_RE = re.compile(r",\s*([^.]+)\.")


def family_size(row: Mapping[str, Any]) -> int:
    return int(row["SibSp"]) + int(row["Parch"]) + 1


def alone(row: Mapping[str, Any]) -> bool:
    return family_size(row) == 1


def log_fare(row: Mapping[str, Any]) -> float | None:
    fare = row.get("Fare")
    return None if fare is None else math.log1p(fare)


def fare_per_person(row: Mapping[str, Any]) -> float | None:
    fare = row.get("Fare")
    return None if fare is None else fare / family_size(row)


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


def deck(row: Mapping[str, Any]) -> str:
    """Deck letter from the cabin ("C85" -> C); U when unknown."""
    letter = (row.get("Cabin") or "").strip()[:1].upper()
    return letter if letter in DECKS else "U"
