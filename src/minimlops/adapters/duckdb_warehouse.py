"""DuckDBWarehouse: the Warehouse port on one DuckDB file.

One process owns the file (DuckDB allows one writing process); threads in it
each use their own cursor. External file access is disabled in the database
configuration, so user SQL (``minimlops query``) cannot read or write files:
data only enters as Arrow batches handed over by the pipeline.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from minimlops.domain.schema import KEY, Column
from minimlops.errors import QueryError

DUCKDB_TYPES = {
    "INTEGER": "BIGINT", "INT64": "BIGINT", "FLOAT": "DOUBLE", "FLOAT64": "DOUBLE",
    "NUMERIC": "DOUBLE", "STRING": "VARCHAR", "BOOLEAN": "BOOLEAN", "BOOL": "BOOLEAN",
    "TIMESTAMP": "TIMESTAMPTZ", "DATE": "DATE", "BYTES": "BLOB", "JSON": "JSON",
}  # fmt: skip
READ_ONLY = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


def _run(cur: duckdb.DuckDBPyConnection, sql: str) -> list[Any]:
    """Execute and fetch, so the cursor is free for the next statement."""
    return cur.execute(sql).fetchall()


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class DuckDBWarehouse:
    """The Warehouse port on DuckDB; table names and schemas are given."""

    def __init__(
        self, path: Path, schemas: Mapping[str, tuple[Column, ...]], ledger_table: str,
        *, read_only: bool = False,
    ) -> None:  # fmt: skip
        self.path = Path(path)
        self.schemas = dict(schemas)
        self.ledger_table = ledger_table
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = duckdb.connect(
            str(self.path), read_only=read_only,
            config={"enable_external_access": False, "threads": 2},
        )  # fmt: skip
        self._local = threading.local()

    def close(self) -> None:
        self._con.close()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._local.cur = self._con.cursor()
        return cur

    def ensure_tables(self) -> None:
        cur = self._cursor()
        for table, columns in self.schemas.items():
            cols = ", ".join(
                f"{_q(c.name)} {DUCKDB_TYPES[c.type]}"
                + (" NOT NULL" if c.required else "")
                for c in columns
            )
            _run(cur, f"CREATE TABLE IF NOT EXISTS {_q(table)} ({cols})")
        _run(cur, "CREATE TABLE IF NOT EXISTS _minimlops_markers "
                  "(key VARCHAR PRIMARY KEY, position BIGINT NOT NULL)")

    def load(
        self, table: str, batches: Iterable[pa.RecordBatch], ledger_row: Mapping[str, Any]
    ) -> int:
        cur = self._cursor()
        _run(cur, "BEGIN TRANSACTION")
        try:
            loaded = 0
            for batch in batches:
                self._insert(cur, table, batch)
                loaded += batch.num_rows
            row = dict(ledger_row, rows_loaded=loaded)
            self._insert(cur, self.ledger_table, pa.Table.from_pylist([row]))
            _run(cur, "COMMIT")
        except BaseException:
            _run(cur, "ROLLBACK")
            raise
        return loaded

    def append(self, table: str, rows: pa.Table) -> None:
        cur = self._cursor()
        _run(cur, "BEGIN TRANSACTION")
        try:
            self._insert(cur, table, rows)
            _run(cur, "COMMIT")
        except BaseException:
            _run(cur, "ROLLBACK")
            raise

    def append_marked(self, table: str, rows: pa.Table, key: str, position: int) -> None:
        """Append rows and record ``position`` under ``key``, in one transaction
        (how far a journal has been imported)."""
        cur = self._cursor()
        _run(cur, "BEGIN TRANSACTION")
        try:
            self._insert(cur, table, rows)
            cur.execute("INSERT OR REPLACE INTO _minimlops_markers VALUES ($k, $p)",
                        {"k": key, "p": position}).fetchall()  # fmt: skip
            _run(cur, "COMMIT")
        except BaseException:
            _run(cur, "ROLLBACK")
            raise

    def marker(self, key: str) -> int:
        """The position recorded under key (0 if none)."""
        rows = self._cursor().execute(
            "SELECT position FROM _minimlops_markers WHERE key = $k", {"k": key}).fetchall()
        return int(rows[0][0]) if rows else 0

    def forget_marker(self, key: str) -> None:
        self._cursor().execute("DELETE FROM _minimlops_markers WHERE key = $k", {"k": key}).fetchall()

    def _insert(
        self, cur: duckdb.DuckDBPyConnection, table: str, data: pa.Table | pa.RecordBatch
    ) -> None:
        if table not in self.schemas:
            raise KeyError(f"unknown table {table!r}")
        cur.register("_minimlops_batch", data)
        try:
            _run(cur, f"INSERT INTO {_q(table)} BY NAME SELECT * FROM _minimlops_batch")
        finally:
            # In an aborted transaction unregister fails too; keep the first
            # error. The name is replaced by the next register anyway.
            with contextlib.suppress(duckdb.Error):
                cur.unregister("_minimlops_batch")

    def ledger(self, *, content_sha256: str | None = None,
               source_uri: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
        where, params = [], {}
        if content_sha256 is not None:
            where.append("content_sha256 = $sha")
            params["sha"] = content_sha256
        if source_uri is not None:
            where.append("source_uri = $uri")
            params["uri"] = source_uri
        sql = f"SELECT * FROM {_q(self.ledger_table)}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ingested_at DESC, ingestion_id DESC"
        return self._cursor().sql(sql, params=params).to_arrow_table().to_pylist()

    def latest_rows(self, table: str) -> pa.Table:
        sql = (
            f"SELECT * FROM {_q(table)} QUALIFY row_number() OVER "
            f"(PARTITION BY {_q(KEY)} ORDER BY ingested_at DESC, ingestion_id DESC) = 1"
            f" ORDER BY {_q(KEY)}"
        )
        return self._cursor().sql(sql).to_arrow_table()

    def counts(self) -> dict[str, int]:
        cur = self._cursor()
        out = {}
        for table in self.schemas:
            out[table] = int(_run(cur, f"SELECT count(*) FROM {_q(table)}")[0][0])
        return out

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.Error as exc:
            raise QueryError(f"SQL does not parse: {exc}") from None
        if len(statements) != 1 or statements[0].type not in READ_ONLY:
            raise QueryError(
                "query runs exactly one read-only statement (SELECT, WITH, "
                "DESCRIBE, SHOW, SUMMARIZE, EXPLAIN)"
            )
        cur = self._cursor()
        try:
            return cur.sql(sql, params=dict(params or {})).to_arrow_table()
        except duckdb.Error as exc:
            raise QueryError(str(exc).splitlines()[0]) from None
