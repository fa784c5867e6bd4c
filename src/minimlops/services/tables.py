"""Arrow schemas built from the BigQuery JSON schemas."""

from __future__ import annotations

from functools import cache

import pyarrow as pa

from minimlops.domain.project import Project
from minimlops.domain.schema import table_schema

ARROW_TYPES = {
    "INTEGER": pa.int64(),
    "INT64": pa.int64(),
    "FLOAT": pa.float64(),
    "FLOAT64": pa.float64(),
    "NUMERIC": pa.float64(),
    "STRING": pa.string(),
    "BOOLEAN": pa.bool_(),
    "BOOL": pa.bool_(),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    "DATE": pa.date32(),
}


def arrow_schema(schema_name: str, project: Project | None = None) -> pa.Schema:
    """The Arrow schema of a table (REQUIRED -> not nullable); the data tables
    need the project they are composed from."""
    if project is None:
        return _fixed(schema_name)
    return pa.schema(
        [
            pa.field(c.name, ARROW_TYPES[c.type], nullable=not c.required)
            for c in table_schema(schema_name, project)
        ]
    )


@cache
def _fixed(schema_name: str) -> pa.Schema:
    return pa.schema(
        [
            pa.field(c.name, ARROW_TYPES[c.type], nullable=not c.required)
            for c in table_schema(schema_name)
        ]
    )
