"""The requests the Google Cloud adapters send, checked without a network
against Google's documented limits: the client libraries talk to a recording
HTTP session instead of Google.

- insertAll: at most 10 MB a request, 50,000 rows (500 recommended)
  (https://cloud.google.com/bigquery/quotas#streaming_inserts);
- every query job has maximumBytesBilled
  (https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobConfigurationQuery);
- a load job runs in the dataset's location, appends Parquet, under an id
  derived from the content (https://cloud.google.com/bigquery/docs/locations);
- the staged file reaches its name create-only (ifGenerationMatch=0,
  https://cloud.google.com/storage/docs/request-preconditions), uploaded in
  chunks of at most 8 MiB, with nothing written to local disk.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any
from urllib.parse import parse_qs, urlparse

import google_crc32c
import pyarrow as pa
import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, storage

from minimlops.adapters.bigquery_warehouse import BigQueryWarehouse
from minimlops.domain.schema import table_schema
from minimlops.projects import load

MB = 1_000_000


class Recorder(requests.Session):
    """Answers like Google would, just enough, and keeps every request."""

    is_mtls = False  # what google-auth's AuthorizedSession would say

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, Any, dict[str, str]]] = []

    def request(
        self,
        method: str,
        url: str,
        data: Any = None,
        headers: Any = None,  # type: ignore[override]
        **_: Any,
    ) -> requests.Response:
        body = data.read() if hasattr(data, "read") else data
        self.sent.append((method, url, body, dict(headers or {})))
        path, query = urlparse(url).path, parse_qs(urlparse(url).query)
        answer: dict[str, Any] = {}
        status, extra = 200, {}
        if path.endswith("/insertAll"):
            answer = {}
        elif method == "POST" and path.endswith("/jobs"):
            job = json.loads(body)
            answer = {
                **job,
                "status": {"state": "DONE"},
                "statistics": {"load": {"outputRows": "3"}},
            }
        elif "/queries/" in path:
            answer = {
                "jobComplete": True,
                "totalRows": "0",
                "rows": [],
                "schema": {"fields": [{"name": "uuid", "type": "STRING"}]},
                "jobReference": {"projectId": "acme-ml", "jobId": path.rsplit("/", 1)[-1]},
            }
        elif "/jobs/" in path:
            answer = {
                "jobReference": {
                    "projectId": "acme-ml",
                    "jobId": path.rsplit("/", 1)[-1],
                    "location": query.get("location", [""])[0],
                },
                "status": {"state": "DONE"},
                "configuration": {"load": {}},
            }
        elif query.get("uploadType") == ["resumable"] and method == "POST":
            extra = {"Location": "https://storage.googleapis.com/upload/session-1"}
        elif path.startswith("/upload/session-1"):
            total = headers.get("content-range", headers.get("Content-Range", "")).rsplit("/", 1)[
                -1
            ]
            if total == "*":
                status, extra = 308, {"Range": f"bytes=0-{self._uploaded(len(body)) - 1}"}
            else:
                self._uploaded(len(body))
                whole = b"".join(
                    b
                    for m, u, b, _ in self.sent
                    if urlparse(u).path.startswith("/upload/session-1")
                )
                crc = base64.b64encode(google_crc32c.value(whole).to_bytes(4, "big")).decode()
                answer = {
                    "name": "x",
                    "bucket": "b",
                    "generation": "1",
                    "size": total,
                    "crc32c": crc,
                }
        elif "/rewriteTo/" in path:
            answer = {
                "done": True,
                "totalBytesRewritten": "1",
                "objectSize": "1",
                "resource": {"name": "staged", "bucket": "b", "generation": "2"},
            }
        elif method == "DELETE":
            status = 204
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(answer).encode() if status != 204 else b""
        response.headers.update({"Content-Type": "application/json", **extra})
        response.url = url
        return response

    def _uploaded(self, n: int) -> int:
        self.total = getattr(self, "total", 0) + n
        return self.total


@pytest.fixture
def bq() -> tuple[BigQueryWarehouse, Recorder, Recorder]:
    project = load("titanic")
    schemas = {
        t: table_schema(t, project)
        for t in (
            "training_data",
            "predictions_data",
            "feedback",
            "ingestion_ledger",
            "retrain_triggers",
        )
    }
    http, gcs_http = Recorder(), Recorder()
    client = bigquery.Client(
        project="acme-ml", credentials=AnonymousCredentials(), _http=http, location="europe-west3"
    )
    gcs = storage.Client(project="acme-ml", credentials=AnonymousCredentials(), _http=gcs_http)
    wh = BigQueryWarehouse(
        client,
        "titanic",
        schemas,
        "ingestion_ledger",
        staging=(gcs, "acme-ml-data-landing-zone"),
        location="europe-west3",
        storage_api=False,
        max_bytes_billed=123 * 2**20,
    )
    return wh, http, gcs_http


def _predictions(n: int, name_bytes: int = 10) -> pa.Table:
    rows = [
        {
            "uuid": f"u-{i}",
            "created_at": None,
            "model_version": "1",
            "Name": "x" * name_bytes,
            "Sex": "male",
            "probability": 0.5,
            "prediction": 1,
        }
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows)


def test_insert_all_requests_stay_within_bigquerys_limits(bq) -> None:
    wh, http, _ = bq
    wh.append("predictions_data", _predictions(1234))
    wh.append("predictions_data", _predictions(300, name_bytes=60_000))  # 18 MB in all
    requests_ = [
        json.loads(b) for m, u, b, _ in http.sent if urlparse(u).path.endswith("/insertAll")
    ]
    assert [len(r["rows"]) for r in requests_[:3]] == [500, 500, 234]
    assert len(requests_) > 4  # the wide rows needed more than one request
    for r, (_, _, body, _) in zip(
        requests_, [s for s in http.sent if urlparse(s[1]).path.endswith("/insertAll")], strict=True
    ):
        assert len(r["rows"]) <= 500 and len(body) <= 10 * MB
        assert all(row["insertId"] == row["json"]["uuid"] for row in r["rows"])
    assert sum(len(r["rows"]) for r in requests_) == 1534


def test_every_query_is_bounded_in_bytes_and_recent_reads_name_their_partitions(bq) -> None:
    wh, http, _ = bq
    wh.recent_predictions("predictions_data", 10)
    wh.ledger()
    jobs = [
        json.loads(b)
        for m, u, b, _ in http.sent
        if m == "POST" and urlparse(u).path.endswith("/jobs")
    ]
    assert jobs and all(
        j["configuration"]["query"]["maximumBytesBilled"] == str(123 * 2**20) for j in jobs
    )
    recent = jobs[0]["configuration"]["query"]
    assert "created_at >= @since" in recent["query"]
    assert "PARTITION BY uuid" in recent["query"]  # duplicates of a retried insert dropped


def test_a_load_job_appends_parquet_in_the_datasets_location_under_a_content_id(bq) -> None:
    wh, http, _ = bq
    wh._run_load("training_data", "ab" * 32, "staging/x.parquet")
    job = next(
        json.loads(b)
        for m, u, b, _ in http.sent
        if m == "POST" and urlparse(u).path.endswith("/jobs")
    )
    load_config = job["configuration"]["load"]
    assert (
        load_config["sourceFormat"] == "PARQUET"
        and load_config["writeDisposition"] == "WRITE_APPEND"
    )
    assert load_config["sourceUris"] == ["gs://acme-ml-data-landing-zone/staging/x.parquet"]
    assert job["jobReference"]["location"] == "europe-west3"
    again = BigQueryWarehouse._job_ids(wh, "training_data", "ab" * 32)
    assert job["jobReference"]["jobId"] == next(iter(again))


def test_staged_rows_stream_to_cloud_storage_and_reach_their_name_create_only(
    bq, tmp_path, monkeypatch
) -> None:
    wh, _, gcs_http = bq
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where a temporary file would go
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    schema = wh._arrow_schema("training_data")
    rng, n = __import__("numpy").random.default_rng(1), 200_000
    hexed = rng.bytes(12 * n).hex()
    text = pa.array([hexed[i * 24 : (i + 1) * 24] for i in range(n)])  # random: ~10 MB of Parquet
    fill = {
        pa.int64(): pa.array(rng.integers(0, 10**9, n)),
        pa.float64(): pa.array(rng.random(n)),
        pa.string(): text,
    }
    batch = pa.table(
        {
            f.name: fill[f.type]
            if f.type in fill
            else pa.array(rng.integers(0, 10**15, n)).cast(f.type)
            for f in schema
        }
    )
    row = {
        "ingestion_id": "i",
        "source_uri": "gs://a/b",
        "generation": "1",
        "content_sha256": "c",
        "rows_loaded": 0,
        "rows_rejected": 0,
        "report_uri": None,
        "message": None,
        "ingested_at": "2026-12-05T09:00:00",
    }
    wh._stage(
        "training_data", iter(batch.to_batches(max_chunksize=50_000)), row, "staging/c.parquet"
    )
    assert not os.listdir(tmp_path), "nothing is written to local disk"
    chunks = [b for m, u, b, _ in gcs_http.sent if urlparse(u).path.startswith("/upload/session-1")]
    assert len(chunks) >= 2 and all(len(c) <= 8 << 20 for c in chunks)
    rewrite = next(u for m, u, b, _ in gcs_http.sent if "/rewriteTo/" in u)
    assert parse_qs(urlparse(rewrite).query)["ifGenerationMatch"] == ["0"]
    assert "staging%2Fc.parquet" in rewrite.split("/rewriteTo/")[1]
    assert any(m == "DELETE" and ".partial" in u for m, u, b, _ in gcs_http.sent)


def test_the_write_api_carries_every_projects_rows_or_says_it_cannot() -> None:
    """Protocol buffer field names are identifiers; the Write API's annotation
    for other column names is experimental, so such tables use streaming
    inserts. Rows round-trip through the descriptor, timestamps as int64 micros."""
    from datetime import UTC, datetime

    from google.protobuf import descriptor_pool, message_factory

    from minimlops.adapters.bigquery_write import CommittedStreamWriter

    for name, expected in (("titanic", True), ("wine", True), ("diabetes", True), ("churn", False)):
        assert (
            CommittedStreamWriter.supports(table_schema("predictions_data", load(name))) is expected
        )
    columns = table_schema("predictions_data", load("titanic"))
    schema = BigQueryWarehouse._arrow_schema(
        type("W", (), {"schemas": {"p": columns}})(), "p"
    )  # the warehouse's typing of rows
    writer = CommittedStreamWriter(lambda: None, "projects/p/datasets/d/tables/t", columns, schema)
    when = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    [raw] = writer.encode(
        [
            {
                "uuid": "u",
                "created_at": when,
                "model_version": "7",
                "Age": None,
                "Sex": "female",
                "probability": 0.5,
                "prediction": 1,
                "PassengerId": 3,
            }
        ]
    )
    file = __import__("google.protobuf.descriptor_pb2", fromlist=["x"]).FileDescriptorProto(
        name="t.proto", package="t", syntax="proto2", message_type=[writer._descriptor]
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    row = message_factory.GetMessageClass(pool.FindMessageTypeByName("t.Row")).FromString(raw)
    assert row.created_at == int(when.timestamp() * 1_000_000)
    assert (row.uuid, row.Sex, row.probability, row.prediction, row.PassengerId) == (
        "u",
        "female",
        0.5,
        1,
        3,
    )
    assert not row.HasField("Age")  # a missing value stays missing, not 0
