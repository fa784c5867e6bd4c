"""Date and timestamp columns of a project through every warehouse: loaded
(DuckDB DATE and TIMESTAMPTZ; BigQuery DATE and TIMESTAMP, staged as Parquet),
appended, and logged through the BigQuery Storage Write API (DATE as int32
days, TIMESTAMP as int64 microseconds since the epoch), read back as the same
days and instants."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from minimlops.adapters.bigquery_write import CommittedStreamWriter
from minimlops.adapters.duckdb_warehouse import DuckDBWarehouse
from minimlops.domain.schema import table_schema
from minimlops.services.tables import arrow_schema
from tests import projects as shapes
from tests.conftest import key_of, schemas_of
from tests.contract.test_gcp_ports import _unique, bq, gcs, make_bucket  # noqa: F401 (fixtures)
from tests.contract.test_ports import _ledger_row
from tests.fakes import InMemoryWarehouse

EVENTS = shapes.events()
SEEN = datetime(2026, 6, 20, 12, 5, 0, 250000, tzinfo=UTC)


def _training(rows: pa.Table) -> pa.Table:
    n = rows.num_rows
    return (
        rows.append_column("split", pa.array(["TRAIN"] * n))
        .append_column("ingestion_id", pa.array(["i1"] * n))
        .append_column("source_uri", pa.array(["gs://b/e.csv"] * n))
        .append_column(
            "ingested_at",
            pa.array([datetime(2026, 1, 1, tzinfo=UTC)] * n, pa.timestamp("us", tz="UTC")),
        )
    )


def _predictions(rows: pa.Table, start: int = 0) -> list[dict]:
    first = {k: v for k, v in rows.to_pylist()[0].items() if k != EVENTS.target}
    return [
        {
            **first,
            "event_id": None,
            "day": date(2026, 6, 20 + i),
            "signed_on": None if i else date(1999, 12, 31),
            "seen_at": SEEN + timedelta(minutes=i),
            "uuid": f"u{i}",
            "created_at": datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
            "model_version": "1",
            "probability": 0.25,
            "prediction": False,
        }
        for i in range(start, start + 3)
    ]


class AbstractDateStorageTests:
    @pytest.fixture
    def wh(self, tmp_path: Path):  # pragma: no cover - overridden
        raise NotImplementedError

    def test_dates_and_timestamps_load_and_read_back_as_such(self, wh) -> None:
        rows = shapes.rows(EVENTS, 40, seed=3)
        wh.load("training_data", _training(rows).to_batches(), _ledger_row())
        got = wh.read("training_data").sort_by("event_id")
        assert pa.types.is_date32(got.schema.field("day").type)
        seen = got.schema.field("seen_at").type
        assert pa.types.is_timestamp(seen) and seen.tz is not None
        for column in ("day", "signed_on", "seen_at"):
            assert got.column(column).to_pylist() == rows.column(column).to_pylist(), column
        assert got.column("day").null_count == 0 and got.column("seen_at").null_count > 0
        latest = wh.latest_rows("training_data").sort_by("event_id")
        assert latest.column("day").to_pylist() == rows.column("day").to_pylist()

    def test_dates_and_timestamps_append_and_read_back_as_such(self, wh) -> None:
        rows = shapes.rows(EVENTS, 2, seed=4)
        schema = arrow_schema("predictions_data", EVENTS)
        wh.append("predictions_data", pa.Table.from_pylist(_predictions(rows), schema=schema))
        back = sorted(wh.read("predictions_data").to_pylist(), key=lambda r: r["uuid"])
        assert [r["day"] for r in back] == [date(2026, 6, 20 + i) for i in range(3)]
        assert [r["signed_on"] for r in back] == [date(1999, 12, 31), None, None]
        assert [r["seen_at"] for r in back] == [SEEN + timedelta(minutes=i) for i in range(3)]


class TestInMemoryDates(AbstractDateStorageTests):
    @pytest.fixture
    def wh(self, tmp_path: Path):
        return InMemoryWarehouse(schemas_of(EVENTS), key=key_of(EVENTS))


class TestDuckDBDates(AbstractDateStorageTests):
    @pytest.fixture
    def wh(self, tmp_path: Path):
        wh = DuckDBWarehouse(
            tmp_path / "e.duckdb", schemas_of(EVENTS), "ingestion_ledger", key=key_of(EVENTS)
        )
        wh.ensure_tables()
        yield wh
        wh.close()

    def test_the_columns_are_duckdb_dates_and_instants(self, wh) -> None:
        wh.load("training_data", _training(shapes.rows(EVENTS, 5)).to_batches(), _ledger_row())
        types = wh.query(
            "SELECT typeof(day) AS d, typeof(signed_on) AS s, typeof(seen_at) AS t "
            "FROM training_data LIMIT 1"
        ).to_pylist()
        assert types == [{"d": "DATE", "s": "DATE", "t": "TIMESTAMP WITH TIME ZONE"}]


def test_the_write_api_rows_carry_days_and_microseconds() -> None:
    """https://cloud.google.com/bigquery/docs/supported-data-types: DATE as
    int32 days since 1970-01-01, TIMESTAMP as int64 microseconds."""
    columns = table_schema("predictions_data", EVENTS)
    writer = CommittedStreamWriter(
        None, "projects/p/datasets/d/tables/t", columns, arrow_schema("predictions_data", EVENTS)
    )
    rows = _predictions(shapes.rows(EVENTS, 1))
    (first, *_) = writer.encode(rows)
    message = writer._row()
    message.ParseFromString(first)
    assert message.day == (date(2026, 6, 20) - date(1970, 1, 1)).days
    assert message.signed_on == (date(1999, 12, 31) - date(1970, 1, 1)).days
    assert message.seen_at == int(SEEN.timestamp()) * 1_000_000 + 250000
    assert CommittedStreamWriter.supports(columns)


@pytest.mark.gcp
class TestBigQueryDates(AbstractDateStorageTests):
    @pytest.fixture
    def wh(self, bq, gcs, make_bucket):  # noqa: F811 (the fixtures imported above)
        from minimlops.adapters.bigquery_warehouse import BigQueryWarehouse
        from minimlops.adapters.gcp_clients import make_clients
        from minimlops.config import Settings

        wh = BigQueryWarehouse(
            bq,
            _unique("ds"),
            schemas_of(EVENTS),
            "ingestion_ledger",
            staging=(gcs, make_bucket(_unique("staging").replace("_", "-"))),
            storage_api=False,
            key=key_of(EVENTS),
            write_client=make_clients(Settings.from_env(os.environ, backend="gcp")).bigquery_write,
        )
        wh.ensure_tables()
        return wh

    def test_the_prediction_log_writes_dates_through_the_storage_write_api(self, wh) -> None:
        rows = _predictions(shapes.rows(EVENTS, 1))
        wh.log_rows("predictions_data", rows)
        assert wh._writers["predictions_data"] is not None, "written through the Write API"
        back = sorted(wh.read("predictions_data").to_pylist(), key=lambda r: r["uuid"])
        assert [r["day"] for r in back] == [date(2026, 6, 20 + i) for i in range(3)]
        assert [r["signed_on"] for r in back] == [date(1999, 12, 31), None, None]
        assert [r["seen_at"] for r in back] == [SEEN + timedelta(minutes=i) for i in range(3)]
