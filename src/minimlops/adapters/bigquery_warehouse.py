"""BigQueryWarehouse: the Warehouse port on BigQuery (google-cloud-bigquery).

Loading a file (``load``) follows BigQuery's batch path, never row-by-row
inserts: the validated rows are streamed, as Parquet, straight into an object
in a staging area of Cloud Storage (a resumable upload, 8 MiB at a time: no
temporary file, since a Cloud Run instance's disk is its memory), then ONE
load job appends it. A load job is atomic (all
rows or none), and its job id is derived from the content's SHA-256, so a
retried or duplicated event finds the job that already ran instead of loading
twice. The ledger row is written after the job succeeded; the staged object
carries that row, so a crash between the two is repaired by the next delivery.

Prediction rows go in exactly once through the Storage Write API
(``log_rows``, :mod:`.bigquery_write`). Other rows (``append``) go in with
streaming inserts, split so that no
request passes BigQuery's documented limits (500 rows, as Google recommends,
and well under 10 MB), with the prediction's uuid as insert id. BigQuery's
de-duplication of insert ids is best effort, so a retried request can leave a
prediction twice in the table: every read of predictions keeps one row per
uuid. Every request has a bounded timeout and a bounded retry, and every
query a bound on the bytes it may bill.

Only training's reads go through the BigQuery Storage Read API (fast for
hundreds of thousands of rows, and a permission only ``train_model`` has);
other reads page through the query's results.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core import exceptions as gexc
from google.cloud import bigquery

from minimlops.adapters.bigquery_write import CommittedStreamWriter
from minimlops.domain.schema import Column, key_int_sql, newest_row_sql, sample_rank_sql
from minimlops.domain.splits import Split, cutoffs_sql, finish
from minimlops.errors import ConflictError, ProjectMismatchError, QueryError
from minimlops.ports import DataSummary, KeySpec

logger = logging.getLogger(__name__)
TIMEOUT = 120.0  # seconds to wait for one job or request
RETRY = bigquery.DEFAULT_RETRY.with_timeout(60.0)  # bounded: never the library's 10 minutes
LEDGER_META = b"minimlops.ledger_row"
STAGING_PREFIX = "staging/"
STAGE_CHUNK = 8 << 20  # bytes a staged upload holds in memory (a multiple of 256 KiB)
INSERT_ROWS = 500  # rows per insertAll request: Google's recommendation (limit 50,000)
INSERT_BYTES = 9_000_000  # JSON bytes per insertAll request (limit 10 MB)
RECENT_DAYS = 7  # recent predictions are looked for in the last week's partitions first
READ_ONLY = {"SELECT"}
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _param(name: str, value: Any) -> bigquery.ScalarQueryParameter | bigquery.ArrayQueryParameter:
    if isinstance(value, list | tuple):
        kind = "INT64" if value and isinstance(value[0], int) else "STRING"
        return bigquery.ArrayQueryParameter(name, kind, list(value))
    kind = (
        "BOOL"
        if isinstance(value, bool)
        else "INT64"
        if isinstance(value, int)
        else "FLOAT64"
        if isinstance(value, float)
        else "TIMESTAMP"
        if isinstance(value, datetime)
        else "DATE"
        if isinstance(value, date)
        else "STRING"
    )
    return bigquery.ScalarQueryParameter(name, kind, value)


class BigQueryWarehouse:
    """The Warehouse port on one BigQuery dataset; tables come from the JSON schemas.

    Args:
        client: a BigQuery client for the project.
        dataset: the dataset id (``titanic``).
        schemas: table name -> columns (from ``infrastructure/bigquery``).
        ledger_table: the ingestion ledger's table name.
        staging: (storage client, bucket) where ``load`` stages its Parquet files.
        location: the dataset's location when it is created.
        storage_api: read training's rows through the BigQuery Storage Read
            API (much faster; off on emulators).
        partitioning: table -> (its day-partitioning column, its clustering
            columns), applied when the table is created.
        max_bytes_billed: the most bytes one query may bill (it fails, unbilled,
            instead of reading more).
        write_client: makes a BigQuery Storage Write API client (None: the
            prediction log uses streaming inserts).
    """

    def __init__(
        self,
        client: bigquery.Client,
        dataset: str,
        schemas: Mapping[str, tuple[Column, ...]],
        ledger_table: str,
        *,
        staging: tuple[Any, str],
        location: str = "US",
        storage_api: bool = True,
        key: KeySpec | None = None,
        partitioning: Mapping[str, tuple[str, tuple[str, ...]]] | None = None,
        max_bytes_billed: int | None = None,
        write_client: Any = None,
    ) -> None:
        self.key = key or KeySpec()
        self._k, self._y = f"`{self.key.key}`", f"`{self.key.target}`"  # quoted: any column name
        k = self._k
        self._newest = newest_row_sql(k)
        self._rank = sample_rank_sql(
            key_int_sql(k, self.key.key_type, "bigquery"), lambda a, b: f"({a} ^ {b})"
        )
        self.client, self.dataset = client, dataset
        self.schemas, self.ledger_table = dict(schemas), ledger_table
        self.storage, self.staging_bucket = staging
        self.location, self.storage_api = location, storage_api
        self.partitioning = dict(partitioning or {})
        self.max_bytes_billed = max_bytes_billed
        self.write_client = write_client
        self._writers: dict[str, Any] = {}

    # -- names and plumbing ------------------------------------------------------
    def table_id(self, table: str) -> str:
        if table not in self.schemas:
            raise KeyError(f"unknown table {table!r}")
        return f"{self.client.project}.{self.dataset}.{table}"

    def _t(self, table: str) -> str:
        return f"`{self.table_id(table)}`"

    def _schema(self, table: str) -> list[bigquery.SchemaField]:
        return [
            bigquery.SchemaField(
                c.name,
                "FLOAT64" if c.type == "NUMERIC" else c.type,
                mode=c.mode,
                description=c.description or None,
            )
            for c in self.schemas[table]
        ]

    def _arrow_schema(self, table: str) -> pa.Schema:
        return pa.schema(
            [
                pa.field(c.name, ARROW_TYPES[c.type], nullable=not c.required)
                for c in self.schemas[table]
            ]
        )

    def _job(self, sql: str, params: Mapping[str, Any] | None = None, **config: Any) -> Any:
        job_config = bigquery.QueryJobConfig(
            query_parameters=[_param(k, v) for k, v in (params or {}).items()],
            maximum_bytes_billed=self.max_bytes_billed,
            **config,
        )
        return self.client.query(
            sql, job_config=job_config, retry=RETRY, job_retry=None, timeout=TIMEOUT
        )

    def _arrow(
        self, sql: str, params: Mapping[str, Any] | None = None, *, read_api: bool = False
    ) -> pa.Table:
        job = self._job(sql, params)
        rows = job.result(timeout=TIMEOUT, retry=RETRY)
        return rows.to_arrow(create_bqstorage_client=read_api and self.storage_api)

    def _predictions(self, table: str, where: str = "TRUE") -> str:
        """The predictions table with one row per uuid (a retried streaming
        insert may have left one twice), as a subquery."""
        return (
            f"(SELECT * FROM {self._t(table)} WHERE {where} "
            "QUALIFY row_number() OVER (PARTITION BY uuid ORDER BY created_at) = 1)"
        )

    def _cast(self, table: str, data: pa.Table) -> pa.Table:
        """Query results typed like the table's schema (empty results too)."""
        schema = pa.schema([f.with_nullable(True) for f in self._arrow_schema(table)])
        if data.num_rows == 0:
            return schema.empty_table()
        cols = [
            data.column(f.name).cast(f.type)
            if f.name in data.column_names
            else pa.nulls(data.num_rows, f.type)
            for f in schema
        ]
        return pa.Table.from_arrays(cols, schema=schema)

    # -- tables ------------------------------------------------------------------
    def ensure_tables(self) -> None:
        """Create the dataset and missing tables; add NULLABLE columns a newer
        schema has (schemas are extended, never renamed)."""
        self.ensure_dataset()
        for table in self.schemas:
            self.ensure_table(table)

    def ensure_dataset(self) -> str:
        """Create the dataset if missing: 'created' or 'found'."""
        ds = bigquery.Dataset(f"{self.client.project}.{self.dataset}")
        ds.location = self.location
        try:
            self.client.create_dataset(ds, retry=RETRY, timeout=TIMEOUT)
            return "created"
        except gexc.Conflict:
            return "found"

    def ensure_table(self, table: str) -> str:
        """Create one table (or add its new columns); 'created', 'updated' or 'found'."""
        wanted = self._schema(table)
        try:
            current = self.client.get_table(self.table_id(table), retry=RETRY, timeout=TIMEOUT)
        except gexc.NotFound:
            new = bigquery.Table(self.table_id(table), schema=wanted)
            if table in self.partitioning:  # by day; clustered for reads by version or uuid
                column, cluster = self.partitioning[table]
                new.time_partitioning = bigquery.TimePartitioning(
                    type_=bigquery.TimePartitioningType.DAY, field=column
                )
                new.clustering_fields = list(cluster) or None
            with contextlib.suppress(gexc.Conflict):
                self.client.create_table(new, retry=RETRY, timeout=TIMEOUT)
                return "created"
            return "found"
        have = {f.name: f for f in current.schema}
        names = {f.name: f for f in wanted}
        problems = [f"column {n!r} removed" for n in have if n not in names]
        same = {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN"}  # legacy = standard

        def kind(f: bigquery.SchemaField) -> str:
            return same.get(f.field_type, f.field_type)

        problems += [
            f"column {f.name!r} retyped from {kind(have[f.name])} to {kind(f)}"
            for f in wanted
            if f.name in have and kind(have[f.name]) != kind(f)
        ]
        problems += [
            f"column {f.name!r} added as REQUIRED"
            for f in wanted
            if f.name not in have and f.mode == "REQUIRED"
        ]
        if problems:  # never half-migrated: refused before any change
            raise ProjectMismatchError(
                f"table {self.table_id(table)} does not fit the project: {'; '.join(problems)}. "
                "Only a new nullable column is added in place; use another dataset "
                "(MINIMLOPS_DATASET) for an incompatible project"
            )
        extra = [f for f in wanted if f.name not in have and f.mode != "REQUIRED"]
        if table in self.partitioning and current.time_partitioning is None:
            logger.warning(
                "bigquery: %s is not partitioned (made before partitioning); reads "
                "scan all of it. A partitioned copy: see docs/gcp.md",
                self.table_id(table),
            )
        # a column the project made optional: REQUIRED relaxed to NULLABLE, which
        # BigQuery allows in place ("Relax a column's mode", cloud.google.com/
        # bigquery/docs/managing-table-schemas#relax_a_columns_mode)
        relaxed = {
            f.name
            for f in wanted
            if f.name in have and f.mode != "REQUIRED" and have[f.name].mode == "REQUIRED"
        }
        if not extra and not relaxed:
            return "found"
        kept = [
            bigquery.SchemaField(f.name, f.field_type, mode="NULLABLE", description=f.description)
            if f.name in relaxed
            else f
            for f in current.schema
        ]
        current.schema = [*kept, *extra]
        self.client.update_table(current, ["schema"], retry=RETRY, timeout=TIMEOUT)
        return "updated"

    # -- loading -----------------------------------------------------------------
    def load(
        self, table: str, batches: Iterable[pa.RecordBatch], ledger_row: Mapping[str, Any]
    ) -> int:
        """Stage the rows as Parquet, append them with one load job, then record
        the ledger row. See the module docstring for the crash and retry story.

        When an earlier delivery of the same content staged or loaded it, this
        one adopts that delivery's ledger row (``ledger_row`` is updated in
        place when it is mutable) instead of loading again.
        """
        digest = str(ledger_row["content_sha256"])
        staged_name = f"{STAGING_PREFIX}{digest}.parquet"
        job, staged_row = self._finished_load(table, digest), None
        if job is None:
            staged_row = self._stage(table, batches, ledger_row, staged_name)
            job = self._run_load(table, digest, staged_name)
        if any(r["status"] == "loaded" for r in self.ledger(content_sha256=digest)):
            # Recorded already: another delivery loaded this content and wrote the
            # ledger (a redelivery of that same object stops before this call).
            self._drop_staged(staged_name)
            raise ConflictError(f"content {digest[:12]} was loaded by another delivery")
        row = staged_row or self._staged_ledger_row(staged_name)
        row = dict(row, rows_loaded=int(row.get("rows_loaded") or job.output_rows or 0))
        self._insert_rows(self.ledger_table, [row], [f"{row['ingestion_id']}-loaded"])
        self._drop_staged(staged_name)
        if isinstance(ledger_row, MutableMapping):
            ledger_row.update(row)
        return int(row["rows_loaded"])

    def _stage(
        self,
        table: str,
        batches: Iterable[pa.RecordBatch],
        ledger_row: Mapping[str, Any],
        name: str,
    ) -> dict[str, Any]:
        """Write the validated rows to the staging object (create-only).

        Iterating ``batches`` validates the file; if it raises, nothing was
        uploaded. If another delivery staged the same content first, its
        staged ledger row is returned instead of ours.
        """
        schema = self._arrow_schema(table)
        bucket = self.storage.bucket(self.staging_bucket)
        partial = bucket.blob(f"{name}.{uuid.uuid4().hex}.partial")
        sink = partial.open("wb", chunk_size=STAGE_CHUNK, timeout=TIMEOUT)
        try:
            rows = 0
            with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
                for batch in batches:
                    writer.write_table(
                        pa.Table.from_batches([batch]).select(schema.names).cast(schema)
                    )
                    rows += batch.num_rows
                # Complete only now that every row was seen (the bad-row counts).
                row = {k: _jsonable(v) for k, v in dict(ledger_row, rows_loaded=rows).items()}
                writer.add_key_value_metadata({LEDGER_META: json.dumps(row).encode()})
            sink.close()  # the upload completes here, under a name nothing reads
            final, token = bucket.blob(name), None
            try:
                while True:  # a server-side copy; big objects take several calls
                    token, _, _ = final.rewrite(
                        partial, token=token, if_generation_match=0, timeout=TIMEOUT, retry=RETRY
                    )
                    if token is None:
                        break
            except gexc.PreconditionFailed:
                logger.info("bigquery: %s was staged by another delivery; adopting it", name)
                return self._staged_ledger_row(name)
            row["ingested_at"] = datetime.fromisoformat(row["ingested_at"])
            return row
        finally:
            # A file that failed validation never reaches the staged name; the
            # partial object (finished by close, if it was not) is removed.
            with contextlib.suppress(Exception):
                sink.close()
            with contextlib.suppress(gexc.NotFound):
                partial.delete(timeout=TIMEOUT, retry=RETRY)

    def _staged_ledger_row(self, name: str) -> dict[str, Any]:
        blob = self.storage.bucket(self.staging_bucket).blob(name)
        with blob.open("rb") as fh:
            meta = pq.read_metadata(fh).metadata or {}
        row = json.loads(meta[LEDGER_META])
        row["ingested_at"] = datetime.fromisoformat(row["ingested_at"])
        return dict(row)

    def _drop_staged(self, name: str) -> None:
        with contextlib.suppress(gexc.NotFound):
            self.storage.bucket(self.staging_bucket).delete_blob(name, timeout=TIMEOUT)

    def _job_ids(self, table: str, digest: str) -> Iterable[str]:
        """Job ids are per project: derived from the destination table and the content."""
        key = hashlib.sha256(f"{self.table_id(table)}\n{digest}".encode()).hexdigest()[:40]
        return (f"minimlops_load_{key}_{n}" for n in range(5))

    def _finished_load(self, table: str, digest: str) -> Any:
        """The successful load job of this content, if one ran; waits for a running one."""
        for job_id in self._job_ids(table, digest):
            try:
                job = self.client.get_job(
                    job_id, location=self.location, retry=RETRY, timeout=TIMEOUT
                )
            except gexc.NotFound:
                return None
            with contextlib.suppress(gexc.GoogleAPICallError):
                job.result(timeout=TIMEOUT, retry=RETRY)
            if job.error_result is None:
                return job
        return None

    def _run_load(self, table: str, digest: str, staged_name: str) -> Any:
        """One load job from the staged gs:// URI, under the first unused job id."""
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            schema=self._schema(table),
        )
        uri = f"gs://{self.staging_bucket}/{staged_name}"
        last: Exception | None = None
        for job_id in self._job_ids(table, digest):
            try:
                job = self.client.load_table_from_uri(
                    uri,
                    self.table_id(table),
                    job_id=job_id,
                    job_config=config,
                    location=self.location,
                    retry=RETRY,
                    timeout=TIMEOUT,
                )
            except gexc.Conflict:  # the id exists: a delivery running alongside, or a failed try
                job = self.client.get_job(
                    job_id, location=self.location, retry=RETRY, timeout=TIMEOUT
                )
            try:
                job.result(timeout=TIMEOUT, retry=RETRY)
            except gexc.GoogleAPICallError as exc:
                last = exc
                logger.warning("bigquery: load job %s failed: %s", job_id, exc)
                continue
            return job
        raise RuntimeError(f"loading {uri} failed after retries: {last}")

    # -- appends -----------------------------------------------------------------
    def _insert_rows(self, table: str, rows: list[dict[str, Any]], ids: list[str]) -> None:
        """insertAll requests of at most INSERT_ROWS rows and INSERT_BYTES of JSON."""
        payload = [{k: _jsonable(v) for k, v in r.items()} for r in rows]
        for part, part_ids in _requests(payload, ids):
            errors = self.client.insert_rows_json(
                self.table_id(table), part, row_ids=part_ids, retry=RETRY, timeout=TIMEOUT
            )
            if errors:
                raise RuntimeError(f"BigQuery refused rows of {table}: {errors[:3]}")

    def append(self, table: str, rows: pa.Table) -> None:
        """Streaming inserts, in as few requests as BigQuery's limits allow."""
        data = rows.to_pylist()
        if not data:
            return
        key = "uuid" if "uuid" in rows.column_names else None
        ids = [
            str(r[key])
            if key and r.get(key)
            else hashlib.sha256(json.dumps(r, default=str, sort_keys=True).encode()).hexdigest()
            for r in data
        ]
        self._insert_rows(table, data, ids)

    def log_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        """The prediction log's write: exactly once through a committed
        stream of the Storage Write API; streaming inserts (de-duplicated
        where read) when there is no Write API client or the table's column
        names cannot be protocol buffer fields."""
        if not rows:
            return
        if table not in self._writers:
            columns = self.schemas[table]
            self._writers[table] = (
                CommittedStreamWriter(
                    self.write_client,
                    f"projects/{self.client.project}/datasets/{self.dataset}/tables/{table}",
                    columns,
                    self._arrow_schema(table),
                )
                if self.write_client is not None and CommittedStreamWriter.supports(columns)
                else None
            )
        stream = self._writers[table]
        if stream is None:
            self.append(table, pa.Table.from_pylist(rows, schema=self._arrow_schema(table)))
        else:
            stream.write(rows)

    def close(self) -> None:
        for stream in self._writers.values():
            if stream is not None:
                stream.close()

    # -- reads -------------------------------------------------------------------
    def ledger(
        self, *, content_sha256: str | None = None, source_uri: str | None = None
    ) -> list[dict[str, Any]]:
        where, params = [], {}
        if content_sha256 is not None:
            where.append("content_sha256 = @sha")
            params["sha"] = content_sha256
        if source_uri is not None:
            where.append("source_uri = @uri")
            params["uri"] = source_uri
        # A retried streaming insert may leave a row twice; keep one per id and status.
        sql = (
            f"SELECT * FROM {self._t(self.ledger_table)} WHERE "
            + (" AND ".join(where) or "TRUE")
            + " QUALIFY row_number() OVER (PARTITION BY ingestion_id, status) = 1"
            " ORDER BY ingested_at DESC, ingestion_id DESC"
        )
        return self._cast(self.ledger_table, self._arrow(sql, params)).to_pylist()

    def _split_sql(self, split: Split | None) -> str:
        if split is None:
            return "split"
        return split.sql("bigquery", lambda c: f"`{c}`", self.key.key, self.key.key_type)

    def latest_summary(
        self,
        table: str,
        split: Split | None = None,
        *,
        ingestion_ids: Sequence[str] | None = None,
    ) -> DataSummary:
        where, params = "TRUE", {}
        if ingestion_ids is not None:
            where, params = "ingestion_id IN UNNEST(@ids)", {"ids": list(ingestion_ids)}
        # the split computed a level below: "GROUP BY split" would name the column
        sql = (
            f"SELECT split, ingestion_id, COUNT(*) AS n FROM (SELECT {self._split_sql(split)} "
            f"AS split, ingestion_id FROM (SELECT * FROM {self._t(table)} WHERE {where} "
            f"QUALIFY {self._newest})) GROUP BY split, ingestion_id"
        )
        return DataSummary.of_counts(
            (r["split"], r["ingestion_id"], r["n"]) for r in self._arrow(sql, params).to_pylist()
        )

    def time_cutoffs(
        self,
        table: str,
        column: str,
        marks: tuple[float, float],
        *,
        ingestion_ids: Sequence[str] | None = None,
    ) -> tuple[Any, Any] | None:
        where, params = "TRUE", {}
        if ingestion_ids is not None:
            where, params = "ingestion_id IN UNNEST(@ids)", {"ids": list(ingestion_ids)}
        newest = (
            f"SELECT `{column}` AS t FROM {self._t(table)} WHERE {where} QUALIFY {self._newest}"
        )
        rows = self._arrow(cutoffs_sql(newest, marks), params).to_pylist()
        if not rows or rows[0]["total"] is None:
            return None
        r = rows[0]
        return finish(r["first"], r["second"], r["last"])

    def latest_rows(
        self,
        table: str,
        *,
        ingestion_ids: Sequence[str] | None = None,
        splits: Sequence[str] | None = None,
        per_split: int | None = None,
        split: Split | None = None,
    ) -> pa.Table:
        where, params = ["TRUE"], {}
        if ingestion_ids is not None:
            where.append("ingestion_id IN UNNEST(@ids)")
            params["ids"] = list(ingestion_ids)
        computed = split is not None and not split.stored
        if splits is not None and not computed:  # a key's split never changes: filter first
            where.append("split IN UNNEST(@splits)")
            params["splits"] = list(splits)
        star = f"* REPLACE ({self._split_sql(split)} AS split)" if computed else "*"
        sql = (
            f"SELECT {star} FROM {self._t(table)} WHERE {' AND '.join(where)} "
            f"QUALIFY {self._newest}"
        )
        if splits is not None and computed:  # the newest row's split: filter after
            sql = f"SELECT * FROM ({sql}) WHERE split IN UNNEST(@splits)"
            params["splits"] = list(splits)
        if per_split is not None:  # BigQuery does the work: only the sample comes back
            sql = (
                f"SELECT * FROM ({sql}) WHERE TRUE QUALIFY row_number() OVER "
                f"(PARTITION BY split ORDER BY {self._rank}, {self._k}) <= @n"
            )
            params["n"] = int(per_split)
        return self._cast(table, self._arrow(sql + f" ORDER BY {self._k}", params, read_api=True))

    def _labelled(self, predictions: str, feedback: str) -> str:
        p, f, k, y = self._predictions(predictions), self._t(feedback), self._k, self._y
        return f"""
            WITH labels AS (
                SELECT p.* REPLACE (COALESCE(p.{k}, f.{k}) AS {k}),
                    f.{y} AS label, f.received_at AS labelled_at
                FROM {p} p JOIN {f} f ON f.uuid = p.uuid
                UNION ALL
                SELECT p.*, f.{y} AS label, f.received_at AS labelled_at
                FROM {p} p JOIN {f} f ON f.uuid IS NULL AND f.{k} = p.{k}
            )
            SELECT * FROM labels WHERE TRUE
            QUALIFY row_number() OVER (PARTITION BY uuid ORDER BY labelled_at DESC) = 1"""

    def labelled_predictions(
        self,
        predictions: str,
        feedback: str,
        limit: int | None = None,
        landed_in: str | None = None,
    ) -> pa.Table:
        sql = self._labelled(predictions, feedback)
        if landed_in is not None:
            k = self._k
            sql = (
                f"SELECT l.*, (l.{k} IS NOT NULL AND EXISTS "
                f"(SELECT 1 FROM {self._t(landed_in)} t WHERE t.{k} = l.{k})) AS landed "
                f"FROM ({sql}) l"
            )
        if limit is None:
            return self._arrow(sql + " ORDER BY created_at, uuid")
        sql = (
            f"SELECT * FROM ({sql} ORDER BY created_at DESC, uuid DESC LIMIT @n) "
            "ORDER BY created_at, uuid"
        )
        return self._arrow(sql, {"n": int(limit)})

    def labelled_accuracy(
        self,
        predictions: str,
        feedback: str,
        bucket_seconds: int | None = None,
        landed_in: str | None = None,
    ) -> list[dict[str, Any]]:
        keys, params = ["model_version"], {}
        at = "NULL"
        if bucket_seconds:
            keys.append("at")
            at, params["b"] = (
                "UNIX_SECONDS(created_at) - MOD(UNIX_SECONDS(created_at), @b)",
                int(bucket_seconds),
            )
        counted = (
            "0 AS correct, SUM(IF(learnt, NULL, ABS(prediction - label))) AS abs_error, "
            "SUM(IF(learnt, NULL, (prediction - label) * (prediction - label))) AS squared_error"
            if self.key.regression
            else "COUNTIF(NOT learnt AND prediction = label) AS correct"
        )
        delay = ""
        if not bucket_seconds:  # the label delay: from the prediction to its label, seconds
            # (APPROX_QUANTILES leaves NULLs out unless told RESPECT NULLS)
            counted += (
                ", APPROX_QUANTILES(IF(learnt, NULL, delay_s), 10)[SAFE_OFFSET(5)] AS delay_p50_s, "
                "APPROX_QUANTILES(IF(learnt, NULL, delay_s), 10)[SAFE_OFFSET(9)] AS delay_p90_s, "
                "COUNTIF(learnt) AS predicted_after_landing"
            )
            # a label that came in a file before the prediction was made counts as 0
            delay = (
                ", GREATEST(0, TIMESTAMP_DIFF(labelled_at, created_at, MILLISECOND) / 1000)"
                " AS delay_s"
            )
        learnt, landed = "FALSE", ""
        if landed_in is not None:
            # its row had landed before the prediction was made: the model may
            # have learnt the answer, so it is not a live figure
            learnt, landed = self._learnt("l", landed_in)
        sql = (
            f"SELECT {', '.join(keys)}, COUNTIF(NOT learnt) AS labelled, {counted} "
            f"FROM (SELECT model_version, {at} AS at, prediction, label, {learnt} AS learnt"
            f"{delay} FROM ({self._labelled(predictions, feedback)}) l{landed}) "
            f"{'WHERE NOT learnt ' if bucket_seconds else ''}GROUP BY {', '.join(keys)} "
            f"ORDER BY {', '.join(keys)}"
        )
        return [
            {
                **r,
                "labelled": int(r["labelled"]),
                "correct": int(r["correct"]),
                **(
                    {"predicted_after_landing": int(r["predicted_after_landing"])}
                    if "predicted_after_landing" in r
                    else {}
                ),
            }
            for r in self._arrow(sql, params).to_pylist()
        ]

    def _learnt(self, alias: str, landed_in: str) -> tuple[str, str]:
        """Whether the prediction ``alias`` was made when its key had landed in
        ``landed_in`` already: the expression, and the join it needs (an
        equality join on each key's first landing: no correlated subquery)."""
        k = self._k
        return (
            f"IFNULL(first.first_landed <= {alias}.created_at, FALSE)",
            f" LEFT JOIN (SELECT {k}, MIN(ingested_at) AS first_landed "
            f"FROM {self._t(landed_in)} GROUP BY {k}) first ON first.{k} = {alias}.{k}",
        )

    def recent_predictions(
        self, predictions: str, limit: int, since: Any = None, landed_in: str | None = None
    ) -> pa.Table:
        """The newest predictions: from the last RECENT_DAYS days' partitions
        when they hold enough, else from all of them (a quiet endpoint)."""
        from datetime import timedelta

        floors = (
            [since]
            if since is not None
            else [datetime.now(UTC) - timedelta(days=RECENT_DAYS), None]
        )
        for floor in floors:
            where, params = "TRUE", {"n": int(limit)}
            if floor is not None:  # a constant: BigQuery reads only those partitions
                where, params["since"] = "created_at >= @since", floor
            sql = f"SELECT * FROM {self._predictions(predictions, where)} ORDER BY created_at DESC LIMIT @n"
            if landed_in is not None:  # as labelled_accuracy's
                learnt, join = self._learnt("r", landed_in)
                sql = f"SELECT r.*, {learnt} AS learnt FROM ({sql}) r{join} ORDER BY r.created_at DESC"
            table = self._arrow(sql, params)
            if table.num_rows >= limit or floor is None or since is not None:
                break
        typed = self._cast(predictions, table)
        if landed_in is None:
            return typed
        learnt_col = table.column("learnt") if table.num_rows else pa.array([], pa.bool_())
        return typed.append_column("learnt", learnt_col.cast(pa.bool_()))

    def read(self, table: str) -> pa.Table:
        return self._cast(table, self._arrow(f"SELECT * FROM {self._t(table)}"))

    def labels_from_ingestion(
        self, training: str, predictions: str, feedback: str, ingestion_id: str, source: str
    ) -> int:
        k, y = self._k, self._y
        job = self._job(
            f"INSERT INTO {self._t(feedback)} (uuid, {k}, {y}, received_at, source) "
            f"SELECT NULL, t.{k}, t.{y}, CURRENT_TIMESTAMP(), @src "
            f"FROM {self._t(training)} t WHERE t.ingestion_id = @id AND t.{k} IN "
            f"(SELECT {k} FROM {self._t(predictions)} WHERE {k} IS NOT NULL)",
            {"id": ingestion_id, "src": source},
        )
        job.result(timeout=TIMEOUT, retry=RETRY)
        return int(job.num_dml_affected_rows or 0)

    def known_uuids(self, predictions: str, uuids: list[str]) -> set[str]:
        if not uuids:
            return set()
        sql = f"SELECT uuid FROM {self._t(predictions)} WHERE uuid IN UNNEST(@ids)"
        return {r["uuid"] for r in self._arrow(sql, {"ids": [str(u) for u in uuids]}).to_pylist()}

    def predictions_of(self, predictions: str, uuids: list[str]) -> pa.Table:
        # (clustered by version, partitioned by day: a uuid prunes nothing, so
        # this reads the table's columns whole; only a generated key's
        # feedback asks, and a failure there stores the labels without keys)
        sql = f"SELECT * FROM {self._predictions(predictions, 'uuid IN UNNEST(@ids)')}"
        return self._cast(predictions, self._arrow(sql, {"ids": [str(u) for u in uuids]}))

    def served_per_version(self, predictions: str) -> dict[str, int]:
        sql = f"SELECT model_version, COUNT(DISTINCT uuid) AS n FROM {self._t(predictions)} GROUP BY 1"
        return {str(r["model_version"]): int(r["n"]) for r in self._arrow(sql).to_pylist()}

    def counts(self) -> dict[str, int]:
        parts = [f"SELECT '{t}' AS t, COUNT(*) AS n FROM {self._t(t)}" for t in self.schemas]
        rows = self._arrow(" UNION ALL ".join(parts)).to_pylist()
        return {r["t"]: int(r["n"]) for r in rows}

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Read-only SQL: a dry run tells the statement type before anything runs."""
        try:
            dry = self._job(
                sql,
                params,
                dry_run=True,
                use_query_cache=False,
                default_dataset=f"{self.client.project}.{self.dataset}",
            )
        except gexc.GoogleAPICallError as exc:
            raise QueryError(f"SQL refused by BigQuery: {exc.message}") from None
        if (dry.statement_type or "").upper() not in READ_ONLY:
            raise QueryError(
                "query runs exactly one read-only statement (SELECT or WITH); "
                f"this is {dry.statement_type}"
            )
        try:
            job = self._job(sql, params, default_dataset=f"{self.client.project}.{self.dataset}")
            return job.result(timeout=TIMEOUT, retry=RETRY).to_arrow(create_bqstorage_client=False)
        except gexc.GoogleAPICallError as exc:
            raise QueryError(str(exc.message).splitlines()[0]) from None


def _requests(rows: list[dict[str, Any]], ids: list[str]) -> Iterable[tuple[list[Any], list[str]]]:
    """Rows (and their insert ids) grouped into insertAll requests that stay
    within INSERT_ROWS rows and INSERT_BYTES bytes of JSON."""
    start, size = 0, 0
    for i, row in enumerate(rows):
        n = len(json.dumps(row, default=str)) + len(ids[i]) + 32  # + the request's framing
        if i > start and (i - start >= INSERT_ROWS or size + n > INSERT_BYTES):
            yield rows[start:i], ids[start:i]
            start, size = i, 0
        size += n
    if start < len(rows):
        yield rows[start:], ids[start:]
