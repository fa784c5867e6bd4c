"""The port contracts on the Google Cloud adapters, against the emulators.

Run by `make test-gcp` (which starts the emulators); in CI a missing emulator
fails these tests instead of skipping them.
"""

from __future__ import annotations

import contextlib
import os
import uuid

import pyarrow as pa
import pytest

from minimlops.errors import ConflictError, QueryError
from tests.conftest import SCHEMAS, TITANIC
from tests.contract.test_ports import (
    AbstractMessageBusTests,
    AbstractObjectStoreTests,
    AbstractProjectWarehouseTests,
    AbstractWarehouseTests,
    B,
    _ledger_row,
    _predicted,
    _predictions,
    _training_rows,
)

pytestmark = pytest.mark.gcp


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def gcs(gcp_emulators):
    from google.cloud import storage

    return storage.Client(project=gcp_emulators["GOOGLE_CLOUD_PROJECT"])


@pytest.fixture
def make_bucket(gcs):
    from google.api_core import exceptions as gexc

    def make(name: str) -> str:
        try:
            gcs.create_bucket(name)
        except gexc.Conflict:  # left by an earlier test: empty it
            for blob in gcs.list_blobs(name):
                blob.delete()
        return name

    return make


class TestGCSObjectStore(AbstractObjectStoreTests):
    @pytest.fixture
    def store(self, gcs, make_bucket):
        from minimlops.adapters.gcs import GCSObjectStore

        make_bucket(B)
        return GCSObjectStore(gcs)

    def test_unicode_and_spaces_in_names(self, store) -> None:
        store.write_bytes(B, "données d'été/ü ñ.csv", b"ok")
        assert [o.name for o in store.list(B)] == ["données d'été/ü ñ.csv"]

    def test_open_reads_its_generation_or_fails_never_a_mix(self, store) -> None:
        from google.api_core import exceptions as gexc

        store.write_bytes(B, "f", b"first")
        with store.open(B, "f") as fh:
            store.write_bytes(B, "f", b"second, longer")
            # pinned to the generation opened: its bytes, or gone (no versioning)
            with contextlib.suppress(gexc.NotFound):
                assert fh.read() == b"first"


@pytest.fixture
def bq(gcp_emulators):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(
        project=gcp_emulators["GOOGLE_CLOUD_PROJECT"], credentials=AnonymousCredentials()
    )


@pytest.fixture
def bq_wh(bq, gcs, make_bucket):
    from minimlops.adapters.bigquery_warehouse import BigQueryWarehouse

    staging = make_bucket(_unique("staging").replace("_", "-"))
    from minimlops.adapters.gcp_clients import make_clients
    from minimlops.config import Settings

    write_client = make_clients(Settings.from_env(os.environ, backend="gcp")).bigquery_write
    wh = BigQueryWarehouse(
        bq,
        _unique("ds"),
        SCHEMAS,
        "ingestion_ledger",
        staging=(gcs, staging),
        storage_api=False,
        max_bytes_billed=2**30,
        write_client=write_client,
        partitioning={
            "predictions_data": ("created_at", ("model_version",)),
            "feedback": ("received_at", ("uuid",)),
        },
    )
    wh.ensure_tables()
    return wh


class TestBigQueryProjects(AbstractProjectWarehouseTests):
    """String keys sampled by BigQuery's MD5, regression errors summed by it."""

    @pytest.fixture
    def make_wh(self, bq, gcs, make_bucket):
        from minimlops.adapters.bigquery_warehouse import BigQueryWarehouse
        from tests.conftest import key_of, schemas_of

        def make(p):
            staging = make_bucket(_unique("staging").replace("_", "-"))
            wh = BigQueryWarehouse(
                bq,
                _unique("ds"),
                schemas_of(p),
                "ingestion_ledger",
                staging=(gcs, staging),
                storage_api=False,
                key=key_of(p),
            )
            wh.ensure_tables()
            return wh

        return make


class TestBigQueryWarehouse(AbstractWarehouseTests):
    @pytest.fixture
    def wh(self, bq_wh):
        return bq_wh

    def test_ensure_tables_is_idempotent_and_adds_new_columns(self, wh) -> None:
        from google.cloud import bigquery

        assert wh.ensure_table("feedback") == "found"
        table = wh.client.get_table(wh.table_id("feedback"))
        table.schema = [f for f in table.schema if f.name != "source"]
        wh.client.delete_table(table)
        wh.client.create_table(bigquery.Table(wh.table_id("feedback"), schema=table.schema))
        assert wh.ensure_table("feedback") == "updated"
        assert "source" in [f.name for f in wh.client.get_table(wh.table_id("feedback")).schema]

    def test_a_crash_between_load_job_and_ledger_is_repaired(self, wh, monkeypatch) -> None:
        rows = _training_rows([1, 2, 3])
        calls = {"n": 0}
        real = wh._insert_rows

        def crash_once(table, data, ids):
            if table == "ingestion_ledger" and calls["n"] == 0:
                calls["n"] += 1
                raise RuntimeError("killed after the load job")
            return real(table, data, ids)

        monkeypatch.setattr(wh, "_insert_rows", crash_once)
        with pytest.raises(RuntimeError):
            wh.load("training_data", rows.to_batches(), _ledger_row())
        assert wh.counts()["training_data"] == 3 and wh.ledger() == []
        # the redelivery: a new attempt id, same content -> adopts the first attempt
        retry_row = _ledger_row(ingestion_id="i-retry")
        assert wh.load("training_data", rows.to_batches(), retry_row) == 3
        assert retry_row["ingestion_id"] == "i1"
        assert wh.counts()["training_data"] == 3
        assert [(r["ingestion_id"], r["rows_loaded"]) for r in wh.ledger()] == [("i1", 3)]

    def test_append_and_reads(self, wh) -> None:
        from datetime import UTC, datetime

        from minimlops.services.tables import arrow_schema

        now = datetime(2026, 3, 1, tzinfo=UTC)
        preds = _predictions(_predicted(f"u{i}", i, now, "v1") for i in range(3))
        wh.append("predictions_data", preds)
        assert wh.served_per_version("predictions_data") == {"v1": 3}
        assert wh.known_uuids("predictions_data", ["u0", "u2", "nope"]) == {"u0", "u2"}
        assert wh.recent_predictions("predictions_data", 2).num_rows == 2
        wh.append(
            "feedback",
            pa.Table.from_pylist(
                [{"uuid": "u1", "PassengerId": None, "Survived": 0, "received_at": now}],
                schema=arrow_schema("feedback", TITANIC),
            ),
        )
        labelled = wh.labelled_predictions("predictions_data", "feedback").to_pylist()
        assert [(r["uuid"], r["label"]) for r in labelled] == [("u1", 0)]

    def test_the_prediction_log_appends_exactly_once_through_a_committed_stream(self, wh) -> None:
        """https://cloud.google.com/bigquery/docs/write-api#exactly-once: an
        append retried at the same offset is refused as ALREADY_EXISTS, not
        written twice; a stream that is gone is replaced."""
        from datetime import UTC, datetime

        def rows(start: int, n: int) -> list[dict]:
            return [
                {
                    "uuid": f"w{i}",
                    "created_at": datetime(2026, 3, 1, 12, tzinfo=UTC),
                    "model_version": "v1",
                    "PassengerId": i,
                    "Pclass": 3,
                    "Sex": "male",
                    "Age": None,
                    "Name": "O'Brien, Mr. Ünal",
                    "probability": 0.25,
                    "prediction": 0,
                }
                for i in range(start, start + n)
            ]

        wh.log_rows("predictions_data", rows(0, 3))
        stream = wh._writers["predictions_data"]
        assert stream is not None, "the emulator has the Storage Write API"
        assert wh.counts()["predictions_data"] == 3
        # an append whose answer was lost: sent again at the same offset
        stream._offset -= 3
        stream._append(stream.encode(rows(0, 3)))
        assert stream.already_written == 1 and wh.counts()["predictions_data"] == 3
        stream._connection.close()  # a broken connection: the same stream, reconnected
        stream._connection = None
        wh.log_rows("predictions_data", rows(3, 2))
        stream._stream = stream._stream.rsplit("/", 1)[0] + "/0123456789abcdef"  # one that expired
        wh.log_rows("predictions_data", rows(5, 1))
        got = wh.read("predictions_data").to_pylist()
        assert sorted(r["uuid"] for r in got) == [f"w{i}" for i in range(6)]
        first = next(r for r in got if r["uuid"] == "w0")
        assert first["created_at"] == datetime(2026, 3, 1, 12, tzinfo=UTC)
        assert (first["Name"], first["Age"], first["probability"]) == (
            "O'Brien, Mr. Ünal",
            None,
            0.25,
        )

    def test_a_prediction_stored_twice_is_read_once(self, wh) -> None:
        """Streaming inserts are at-least-once: BigQuery drops a repeated insert
        id only on a best-effort basis (and bqemulator not at all), so a retried
        request can store a prediction twice. Every read keeps one row per uuid."""
        from datetime import UTC, datetime

        from minimlops.services.tables import arrow_schema

        now = datetime(2026, 3, 1, tzinfo=UTC)
        preds = _predictions(_predicted(f"u{i}", i, now, "v1") for i in range(3))
        wh.append("predictions_data", preds)
        wh.append("predictions_data", preds)  # the retried request
        assert wh.counts()["predictions_data"] == 6, "the emulator keeps both copies"
        assert wh.served_per_version("predictions_data") == {"v1": 3}
        assert sorted(wh.recent_predictions("predictions_data", 10).column("uuid").to_pylist()) == [
            "u0",
            "u1",
            "u2",
        ]
        wh.append(
            "feedback",
            pa.Table.from_pylist(
                [{"uuid": "u1", "PassengerId": None, "Survived": 0, "received_at": now}],
                schema=arrow_schema("feedback", TITANIC),
            ),
        )
        assert [
            r["uuid"] for r in wh.labelled_predictions("predictions_data", "feedback").to_pylist()
        ] == ["u1"]
        [row] = wh.labelled_accuracy("predictions_data", "feedback")
        assert (row["labelled"], row["correct"]) == (1, 0)
        assert row["delay_p50_s"] == row["delay_p90_s"] == 0  # labelled as it was predicted

    @pytest.mark.parametrize(
        "sql",
        [
            "DELETE FROM training_data WHERE TRUE",
            "DROP TABLE training_data",
            "INSERT INTO feedback (Survived) VALUES (1)",
        ],
    )
    def test_query_refuses_anything_but_reading(self, wh, sql: str) -> None:
        wh.load("training_data", _training_rows([1]).to_batches(), _ledger_row())
        with pytest.raises(QueryError):
            wh.query(sql)
        assert wh.counts()["training_data"] == 1

    def test_query_reads_with_parameters(self, wh) -> None:
        wh.load("training_data", _training_rows([1, 2]).to_batches(), _ledger_row())
        t = wh.query("SELECT COUNT(*) AS n FROM training_data WHERE Age > @a", {"a": 1})
        assert t.to_pylist() == [{"n": 2}]

    def test_a_different_delivery_of_loaded_content_conflicts(self, wh) -> None:
        wh.load("training_data", _training_rows([1]).to_batches(), _ledger_row())
        with pytest.raises(ConflictError):
            wh.load(
                "training_data",
                _training_rows([1]).to_batches(),
                _ledger_row(ingestion_id="i9", source_uri="gs://b/other.csv"),
            )
        assert wh.counts()["training_data"] == 1


class TestPubSubMessageBus(AbstractMessageBusTests):
    @pytest.fixture
    def bus(self, gcp_emulators):
        from minimlops.adapters.pubsub_bus import PubSubMessageBus

        suffix = uuid.uuid4().hex[:8]
        bus = _Renamed(
            PubSubMessageBus(
                gcp_emulators["GOOGLE_CLOUD_PROJECT"],
                dead_letter_topic=f"dead-{suffix}",
                min_backoff=0,
                max_attempts=5,
            ),
            suffix,
        )
        yield bus
        bus.close()

    def test_create_subscription_is_idempotent(self, bus) -> None:
        assert bus.create_subscription("s", "t") == "created"
        assert bus.create_subscription("s", "t") == "found"


class _Renamed:
    """Gives each test its own topics and subscriptions on the shared emulator."""

    def __init__(self, bus, suffix: str) -> None:
        self.bus, self.suffix = bus, suffix
        self.max_attempts = bus.max_attempts

    def _n(self, name: str) -> str:
        return f"{name}-{self.suffix}"

    def create_subscription(self, subscription, topic):
        return self.bus.create_subscription(self._n(subscription), self._n(topic))

    def publish(self, topic, data, attributes):
        return self.bus.publish(self._n(topic), data, attributes)

    def pull(self, subscription, max_messages=1, wait=6.0):
        # Pub/Sub redelivers a nacked message after a moment, not at once.
        return self.bus.pull(self._n(subscription), max_messages, wait=wait)

    def redrive(self, *, apply):
        """Dead letters of this test's subscriptions, under their short names."""
        cut = "-" + self.suffix
        return [
            (src.removesuffix(cut), topic.removesuffix(cut), attrs)
            for src, topic, attrs in self.bus.redrive(apply=apply)
        ]

    def ack(self, subscription, message_id):
        return self.bus.ack(self._n(subscription), message_id)

    def nack(self, subscription, message_id, error):
        return self.bus.nack(self._n(subscription), message_id, error)

    def stats(self):
        out = []
        for s in self.bus.stats():
            if s["subscription"].endswith("-" + self.suffix):
                out.append(dict(s, subscription=s["subscription"].removesuffix("-" + self.suffix)))
        return out

    def close(self):
        self.bus.close()


def test_bigquery_adds_a_nullable_column_and_refuses_a_retyped_one(bq, gcs, make_bucket) -> None:
    """On Google Cloud there is no data home: provisioning checks the tables."""
    import dataclasses

    from minimlops.adapters.bigquery_warehouse import BigQueryWarehouse
    from minimlops.domain.project import ColumnSpec
    from minimlops.errors import ProjectMismatchError
    from tests import projects as shapes
    from tests.conftest import key_of, schemas_of

    p = shapes.load("diabetes")
    staging, dataset = make_bucket(_unique("staging").replace("_", "-")), _unique("ds")

    def warehouse(project):
        return BigQueryWarehouse(
            bq,
            dataset,
            schemas_of(project),
            "ingestion_ledger",
            staging=(gcs, staging),
            storage_api=False,
            key=key_of(project),
        )

    warehouse(p).ensure_tables()
    added = dataclasses.replace(p, columns=(*p.columns, ColumnSpec("smoker", "boolean")))
    assert warehouse(added).ensure_table("training_data") == "updated"
    retyped = dataclasses.replace(
        p,
        columns=tuple(
            dataclasses.replace(c, type="integer") if c.name == "s6" else c for c in p.columns
        ),
    )
    with pytest.raises(ProjectMismatchError, match="column 's6' retyped from FLOAT to INTEGER"):
        warehouse(retyped).ensure_table("training_data")
