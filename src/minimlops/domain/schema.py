"""Table schemas, composed from the project's columns and the pipeline's own,
and the split and sample hashes of the row key.

The data tables (training_data, predictions_data, feedback) are the project's
columns plus the pipeline's columns (:func:`table_schema`); the pipeline's own
tables (the ingestion ledger, the retrain triggers) are JSON files in
``infrastructure/bigquery/``, where the Titanic example's generated schemas are
also kept for review (a test holds them equal).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from minimlops.domain.project import Project

SPLITS = ("TRAIN", "VALIDATION", "TEST")
SPLIT_BOUNDS = (0.70, 0.85)  # u < 0.70 TRAIN, < 0.85 VALIDATION, else TEST
_GOLDEN = 2654435761  # Knuth's multiplicative hash: well spread, SQL-friendly
# The sample's order: two multiply-xorshift rounds (constants of xxHash and
# MurmurHash2), each product under 2**63 for keys under 2**31, so SQL's 64-bit
# integers compute it exactly. Independent of the split's hash.
SAMPLE_MULTIPLIERS = (2246822519, 1540483477)
SAMPLE_SHIFTS = (13, 16)
PIPELINE_TABLES = ("ingestion_ledger", "retrain_triggers")
DATA_TABLES = ("training_data", "predictions_data", "feedback")


def newest_row_sql(key: str) -> str:
    """In SQL (DuckDB and BigQuery alike): the newest row of each key, for QUALIFY."""
    return (
        f"row_number() OVER (PARTITION BY {key} ORDER BY ingested_at DESC, ingestion_id DESC) = 1"
    )


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


def table_schema(table: str, project: Project | None = None) -> tuple[Column, ...]:
    """The columns of a table.

    Args:
        table: training_data, predictions_data or feedback (composed from the
            project), or ingestion_ledger or retrain_triggers (fixed).
        project: the data set; needed for the data tables.

    Raises:
        FileNotFoundError: there is no table of that name.
    """
    if table in DATA_TABLES:
        if project is None:
            raise ValueError(f"{table} is composed from a project: pass one")
        return _data_table(table, project)
    return _fixed_table(table)


@cache
def _fixed_table(table: str) -> tuple[Column, ...]:
    text = resources.files("minimlops").joinpath("schemas", f"{table}.json")
    fields = json.loads(text.read_text(encoding="utf-8"))
    return tuple(
        Column(
            f["name"],
            f["type"].upper(),
            f.get("mode", "NULLABLE").upper(),
            f.get("description", ""),
        )
        for f in fields
    )


def key_int(key: int | str) -> int:
    """The integer the split and the sample hash: an integer key itself, a
    string key the first 31 bits of the MD5 of its UTF-8 bytes (MD5 because
    Python, DuckDB and BigQuery all have it, not for security; 31 bits, like
    integer keys, keep the sample's products within SQL's 64-bit integers)."""
    if isinstance(key, str):
        return int.from_bytes(hashlib.md5(key.encode("utf-8")).digest()[:4], "big") >> 1
    return key


def key_int_sql(column: str, key_type: str, dialect: str) -> str:
    """:func:`key_int` as SQL over the key column, in DuckDB's or BigQuery's words."""
    if key_type != "string":
        return column
    if dialect == "bigquery":
        return f"(CAST(CONCAT('0x', SUBSTR(TO_HEX(MD5({column})), 1, 8)) AS INT64) >> 1)"
    return f"(CAST('0x' || substr(md5({column}), 1, 8) AS BIGINT) >> 1)"


def split_unit(key: int | str) -> float:
    """The row key mapped into [0, 1), the same in Python, Arrow and SQL."""
    return ((key_int(key) * _GOLDEN) % 2**32) / 2**32


def split_for(key: int | str) -> str:
    """TRAIN, VALIDATION or TEST for a row key; a row keeps its split forever."""
    u = split_unit(key)
    return SPLITS[0] if u < SPLIT_BOUNDS[0] else (SPLITS[1] if u < SPLIT_BOUNDS[1] else SPLITS[2])


def sample_rank(key: int | str) -> int:
    """Where a row key stands in a sample: training reads the rows of a split
    with the smallest ranks first. The same in Python and SQL (see the
    warehouse adapters), so the same rows give the same sample on every backend.
    """
    x = (key_int(key) * SAMPLE_MULTIPLIERS[0]) & 0xFFFFFFFF
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


# The pipeline's columns of the data tables, around the project's.
_TRAINING_OWN = (
    Column("split", "STRING", "REQUIRED", "TRAIN, VALIDATION or TEST, from the row key."),
    Column("ingestion_id", "STRING", "REQUIRED", "The ingestion that loaded the row."),
    Column("source_uri", "STRING", "REQUIRED", "The landed file."),
    Column("ingested_at", "TIMESTAMP", "REQUIRED", "When the row was loaded."),
)
_PREDICTION_IDS = (
    Column("uuid", "STRING", "REQUIRED", "Id returned to the client."),
    Column("created_at", "TIMESTAMP", "REQUIRED", "When the prediction was made."),
    Column("model_version", "STRING", "REQUIRED", "The model version that answered."),
)


def _mode(required: bool) -> str:
    return "REQUIRED" if required else "NULLABLE"


def _data_table(table: str, project: Project) -> tuple[Column, ...]:
    p, target = project, project.target_column
    if table == "training_data":
        return (
            tuple(Column(c.name, c.bq_type, _mode(c.required), c.description) for c in p.columns)
            + _TRAINING_OWN
        )
    if table == "feedback":
        return (
            Column("uuid", "STRING", "NULLABLE", "The prediction this label belongs to."),
            Column(
                p.key,
                p.key_column.bq_type,
                "NULLABLE",
                "Or the row key, for labels that arrive in a landed file.",
            ),
            Column(p.target, target.bq_type, "REQUIRED", "The true label."),
            Column("received_at", "TIMESTAMP", "REQUIRED", "When the label arrived."),
            Column("source", "STRING", "NULLABLE", "api, or the landed file's URI."),
        )
    # predictions_data: the key is optional in a request, the rest as declared
    inputs = tuple(
        Column(c.name, c.bq_type, _mode(c.required and c.name != p.key), "")
        for c in p.columns
        if c.name != p.target
    )
    return _PREDICTION_IDS + inputs + _answer_columns(project)


def _answer_columns(project: Project) -> tuple[Column, ...]:
    prediction = project.target_column.bq_type
    if project.task == "binary":
        return (
            Column("probability", "FLOAT", "REQUIRED", "Probability of the positive class."),
            Column("prediction", prediction, "REQUIRED", "The predicted class."),
            Column(
                "shadow_model_version",
                "STRING",
                "NULLABLE",
                "The challenger scored in the shadow, if any.",
            ),
            Column(
                "shadow_probability",
                "FLOAT",
                "NULLABLE",
                "The challenger's probability (never returned).",
            ),
        )
    if project.task == "multiclass":
        return (
            Column("probability", "FLOAT", "REQUIRED", "Probability of the predicted class."),
            Column("probabilities", "STRING", "REQUIRED", "Every class's probability, as JSON."),
            Column("prediction", prediction, "REQUIRED", "The predicted class."),
            Column(
                "shadow_model_version",
                "STRING",
                "NULLABLE",
                "The challenger scored in the shadow, if any.",
            ),
            Column(
                "shadow_prediction",
                prediction,
                "NULLABLE",
                "The challenger's class (never returned).",
            ),
        )
    return (
        Column("prediction", "FLOAT", "REQUIRED", "The predicted value."),
        Column(
            "shadow_model_version",
            "STRING",
            "NULLABLE",
            "The challenger scored in the shadow, if any.",
        ),
        Column(
            "shadow_prediction", "FLOAT", "NULLABLE", "The challenger's value (never returned)."
        ),
    )
