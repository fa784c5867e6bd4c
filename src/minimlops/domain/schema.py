"""Table schemas (from ``infrastructure/bigquery/*.json``), value rules and the split.

The JSON files are the single source of truth for columns, types and modes, on
every backend. This module is the only place that names the Titanic columns.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

DATA_COLUMNS = (
    "PassengerId", "Survived", "Pclass", "Name", "Sex", "Age",
    "SibSp", "Parch", "Ticket", "Fare", "Cabin", "Embarked",
)  # fmt: skip
INPUT_COLUMNS = tuple(c for c in DATA_COLUMNS if c != "Survived")
LABEL = "Survived"
KEY = "PassengerId"

# Values a column may take beyond its type (None = any value of the type).
ALLOWED_VALUES: dict[str, tuple[object, ...]] = {
    "Survived": (0, 1),
    "Pclass": (1, 2, 3),
    "Sex": ("male", "female"),
    "Embarked": ("C", "Q", "S"),
}
# Inclusive numeric ranges; the key bound keeps the split hash in 64 bits.
RANGES: dict[str, tuple[float, float]] = {
    "PassengerId": (1, 2**31 - 1),
    "Age": (0, 150),
    "SibSp": (0, 100),
    "Parch": (0, 100),
    "Fare": (0, 1_000_000),
}

SPLITS = ("TRAIN", "VALIDATION", "TEST")
SPLIT_BOUNDS = (0.70, 0.85)  # u < 0.70 TRAIN, < 0.85 VALIDATION, else TEST
_GOLDEN = 2654435761  # Knuth's multiplicative hash: well spread, SQL-friendly
# The sample's order: two multiply-xorshift rounds (constants of xxHash and
# MurmurHash2), each product under 2**63 for keys under 2**31, so SQL's 64-bit
# integers compute it exactly. Independent of the split's hash.
SAMPLE_MULTIPLIERS = (2246822519, 1540483477)
SAMPLE_SHIFTS = (13, 16)
# In SQL (DuckDB and BigQuery alike): the newest row of each key, for QUALIFY.
NEWEST_ROW_SQL = (f"row_number() OVER (PARTITION BY {KEY} "
                  "ORDER BY ingested_at DESC, ingestion_id DESC) = 1")


@dataclass(frozen=True)
class Column:
    """One column of a BigQuery JSON schema."""

    name: str
    type: str
    mode: str = "NULLABLE"
    description: str = ""

    @property
    def required(self) -> bool:
        return self.mode == "REQUIRED"


@cache
def table_schema(table: str) -> tuple[Column, ...]:
    """The columns of a table, read once from its JSON schema file.

    Args:
        table: schema name: training_data, predictions_data, feedback or
            ingestion_ledger.

    Raises:
        FileNotFoundError: there is no schema file of that name.
    """
    text = resources.files("minimlops").joinpath("schemas", f"{table}.json")
    fields = json.loads(text.read_text(encoding="utf-8"))
    return tuple(
        Column(f["name"], f["type"].upper(), f.get("mode", "NULLABLE").upper(),
               f.get("description", ""))
        for f in fields
    )  # fmt: skip


def split_unit(passenger_id: int) -> float:
    """The row key mapped into [0, 1), the same in Python, Arrow and SQL."""
    return ((passenger_id * _GOLDEN) % 2**32) / 2**32


def split_for(passenger_id: int) -> str:
    """TRAIN, VALIDATION or TEST for a row key; a row keeps its split forever."""
    u = split_unit(passenger_id)
    return SPLITS[0] if u < SPLIT_BOUNDS[0] else (
        SPLITS[1] if u < SPLIT_BOUNDS[1] else SPLITS[2])  # fmt: skip


def sample_rank(passenger_id: int) -> int:
    """Where a row key stands in a sample: training reads the rows of a split
    with the smallest ranks first. The same in Python and SQL (see the
    warehouse adapters), so the same rows give the same sample on every backend.
    """
    x = (passenger_id * SAMPLE_MULTIPLIERS[0]) & 0xFFFFFFFF
    x ^= x >> SAMPLE_SHIFTS[0]
    x = (x * SAMPLE_MULTIPLIERS[1]) & 0xFFFFFFFF
    return x ^ (x >> SAMPLE_SHIFTS[1])


def sample_rank_sql(column: str, xor: Callable[[str, str], str]) -> str:
    """:func:`sample_rank` as a SQL expression over an integer column, in a
    dialect given by how it writes a bitwise exclusive or. Only ``*``, ``&``
    and ``>>``, which BigQuery and DuckDB share (BigQuery has no ``%``)."""
    x = f"(({column} * {SAMPLE_MULTIPLIERS[0]}) & 4294967295)"
    x = xor(x, f"({x} >> {SAMPLE_SHIFTS[0]})")
    x = f"(({x} * {SAMPLE_MULTIPLIERS[1]}) & 4294967295)"
    return xor(x, f"({x} >> {SAMPLE_SHIFTS[1]})")
