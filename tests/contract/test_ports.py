"""One contract per port; every implementation (fake, local, later Google Cloud)
runs the same tests."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from minimlops.adapters.duckdb_warehouse import DuckDBWarehouse
from minimlops.adapters.local_fs import LocalObjectStore
from minimlops.adapters.sqlite_bus import SQLiteMessageBus
from minimlops.domain.schema import sample_rank, split_for
from minimlops.errors import ConflictError, QueryError
from minimlops.services.tables import arrow_schema
from tests.conftest import SCHEMAS, TITANIC
from tests.fakes import InMemoryMessageBus, InMemoryObjectStore, InMemoryWarehouse

B = "bucket"


class AbstractObjectStoreTests:
    @pytest.fixture
    def store(self, tmp_path: Path):  # pragma: no cover - overridden
        raise NotImplementedError

    def test_write_read_stat_list(self, store) -> None:
        info = store.write_bytes(B, "a/b.csv", b"hello")
        assert store.read_bytes(B, "a/b.csv") == b"hello"
        assert store.stat(B, "a/b.csv").size == 5
        assert store.stat(B, "a/b.csv").generation == info.generation
        assert store.stat(B, "nope") is None
        store.write_bytes(B, "c.csv", b"x")
        assert [o.name for o in store.list(B)] == ["a/b.csv", "c.csv"]
        assert [o.name for o in store.list(B, "a/")] == ["a/b.csv"]
        with store.open(B, "a/b.csv") as fh:
            assert fh.read() == b"hello"

    def test_generation_changes_on_every_write(self, store) -> None:
        g1 = store.write_bytes(B, "x", b"1").generation
        g2 = store.write_bytes(B, "x", b"2").generation
        assert g1 != g2

    def test_create_only_and_compare_and_swap(self, store) -> None:
        g1 = store.write_bytes(B, "p.json", b"1", if_generation_match="0").generation
        with pytest.raises(ConflictError):
            store.write_bytes(B, "p.json", b"2", if_generation_match="0")
        g2 = store.write_bytes(B, "p.json", b"2", if_generation_match=g1).generation
        with pytest.raises(ConflictError):  # stale generation loses
            store.write_bytes(B, "p.json", b"3", if_generation_match=g1)
        assert store.read_bytes(B, "p.json") == b"2"
        assert store.stat(B, "p.json").generation == g2

    def test_move_and_delete(self, store) -> None:
        store.write_bytes(B, "f.csv", b"data")
        store.move(B, "f.csv", "rejected/f.csv")
        assert store.stat(B, "f.csv") is None
        assert store.read_bytes(B, "rejected/f.csv") == b"data"
        store.delete(B, "rejected/f.csv")
        store.delete(B, "rejected/f.csv")  # already gone: no error
        assert store.list(B) == []

    def test_missing_object_raises_file_not_found(self, store) -> None:
        with pytest.raises(FileNotFoundError):
            store.read_bytes(B, "missing")


class TestInMemoryObjectStore(AbstractObjectStoreTests):
    @pytest.fixture
    def store(self, tmp_path: Path):
        return InMemoryObjectStore()


class TestLocalObjectStore(AbstractObjectStoreTests):
    @pytest.fixture
    def store(self, tmp_path: Path):
        return LocalObjectStore(tmp_path)

    @pytest.mark.parametrize("name", ["../escape", "a/../../b", "/abs", "a//b", "", "a/./b"])
    def test_names_never_leave_the_bucket(self, store, tmp_path: Path, name: str) -> None:
        with pytest.raises(ValueError):
            store.write_bytes(B, name, b"x")
        assert not (tmp_path.parent / "escape").exists()

    def test_unicode_and_spaces_in_names(self, store) -> None:
        store.write_bytes(B, "données d'été/ü ñ.csv", b"ok")
        assert [o.name for o in store.list(B)] == ["données d'été/ü ñ.csv"]

    def test_partial_and_hidden_files_are_not_objects(self, store, tmp_path: Path) -> None:
        bucket = tmp_path / B
        bucket.mkdir(exist_ok=True)
        (bucket / ".file.csv.swp").write_bytes(b"x")
        (bucket / "big.csv.part").write_bytes(b"x")
        assert store.list(B) == []


def test_the_landing_zone_announces_each_object_generation_once(tmp_path: Path) -> None:
    """Whoever announces a generation first (its writer, or the watcher once
    the file has settled), it is announced once; a rewrite is a new one, and a
    file still changing waits for its settling time."""
    from minimlops.adapters.local_watcher import announce, scan_once
    from minimlops.adapters.sqlite_bus import SQLiteMessageBus

    store, bus = LocalObjectStore(tmp_path / "b"), SQLiteMessageBus(tmp_path / "bus.sqlite3")
    bus.create_subscription("s", "t")
    src = tmp_path / "f.csv"
    src.write_bytes(b"a\n1\n")
    written = store.write_file(B, "f.csv", src)
    assert announce(bus, B, "t", written)  # by its writer, with no settling
    assert scan_once(store, bus, B, "t", settle_seconds=0) == 0  # not again by the watcher
    assert not announce(bus, B, "t", written)
    src.write_bytes(b"a\n2\n")
    store.write_file(B, "f.csv", src)  # a new generation of the same name
    (tmp_path / "b" / B / "copied.csv").write_bytes(b"a\n3\n")  # just copied in
    assert scan_once(store, bus, B, "t", settle_seconds=60) == 0  # both still "changing"
    assert scan_once(store, bus, B, "t", settle_seconds=0) == 2
    got = [json.loads(m.data)["name"] for m in bus.pull("s", 10)]
    assert sorted(got) == ["copied.csv", "f.csv", "f.csv"]
    bus.close()


def _ledger_row(**kw):
    row = {
        "ingestion_id": "i1",
        "source_uri": "gs://b/f.csv",
        "generation": "1",
        "content_sha256": "abc",
        "status": "loaded",
        "rows_loaded": 0,
        "rows_rejected": 0,
        "report_uri": None,
        "message": None,
        "ingested_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    row.update(kw)
    return row


def _training_rows(ids, ingestion_id="i1", when=datetime(2026, 1, 1, tzinfo=UTC), age=30.0):
    n = len(ids)
    return pa.table(
        {
            "PassengerId": pa.array(ids, pa.int64()),
            "Survived": pa.array([1] * n, pa.int64()),
            "Pclass": pa.array([1] * n, pa.int64()),
            "Name": ["N"] * n,
            "Sex": ["female"] * n,
            "Age": pa.array([age] * n, pa.float64()),
            "SibSp": pa.array([0] * n, pa.int64()),
            "Parch": pa.array([0] * n, pa.int64()),
            "Ticket": ["T"] * n,
            "Fare": pa.array([10.0] * n),
            "Cabin": [None] * n,
            "Embarked": ["S"] * n,
            "split": ["TRAIN"] * n,
            "ingestion_id": [ingestion_id] * n,
            "source_uri": ["gs://b/f.csv"] * n,
            "ingested_at": pa.array([when] * n, pa.timestamp("us", tz="UTC")),
        }
    )


def _predicted(uuid: str, key: int | None, when: datetime, version: str = "1") -> dict:
    """One logged prediction of a passenger: it says 1 (survived)."""
    return {
        "uuid": uuid,
        "created_at": when,
        "model_version": version,
        "PassengerId": key,
        "Pclass": 1,
        "Sex": "female",
        "Age": 30.0,
        "SibSp": 0,
        "Parch": 0,
        "Fare": 10.0,
        "Embarked": "S",
        "probability": 0.9,
        "prediction": 1,
    }


def _predictions(rows) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=arrow_schema("predictions_data", TITANIC))


class AbstractWarehouseTests:
    @pytest.fixture
    def wh(self, tmp_path: Path):  # pragma: no cover - overridden
        raise NotImplementedError

    def test_load_is_all_or_nothing(self, wh) -> None:
        def failing():
            yield from _training_rows([1, 2]).to_batches()
            raise RuntimeError("disk on fire")

        with pytest.raises(RuntimeError):
            wh.load("training_data", failing(), _ledger_row())
        assert wh.counts()["training_data"] == 0
        assert wh.counts()["ingestion_ledger"] == 0
        n = wh.load("training_data", _training_rows([1, 2, 3]).to_batches(), _ledger_row())
        assert n == 3
        assert wh.counts()["training_data"] == 3
        assert wh.ledger(content_sha256="abc")[0]["rows_loaded"] == 3

    def test_latest_rows_keeps_the_newest_row_per_key(self, wh) -> None:
        wh.load("training_data", _training_rows([1, 2]).to_batches(), _ledger_row())
        later = datetime(2026, 2, 1, tzinfo=UTC)
        wh.load(
            "training_data",
            _training_rows([2], "i2", later, age=50.0).to_batches(),
            _ledger_row(ingestion_id="i2", ingested_at=later, content_sha256="def"),
        )
        rows = wh.latest_rows("training_data").to_pylist()
        assert [(r["PassengerId"], r["Age"]) for r in rows] == [(1, 30.0), (2, 50.0)]

    def test_a_summary_and_a_read_of_that_snapshot(self, wh) -> None:
        """Training counts the newest rows, then reads the rows of exactly
        those ingestions: a file landing in between is not half in."""
        wh.load("training_data", _training_rows([1, 2, 3]).to_batches(), _ledger_row())
        later = datetime(2026, 2, 1, tzinfo=UTC)
        wh.load(
            "training_data",
            _training_rows([2, 4], "i2", later, age=50.0).to_batches(),
            _ledger_row(ingestion_id="i2", ingested_at=later, content_sha256="def"),
        )
        summary = wh.latest_summary("training_data")
        assert summary.splits == {"TRAIN": 4} and summary.ingestion_ids == ("i1", "i2")
        assert summary.rows == 4
        early = wh.latest_rows("training_data", ingestion_ids=["i1"]).to_pylist()
        assert [(r["PassengerId"], r["Age"]) for r in early] == [(1, 30.0), (2, 30.0), (3, 30.0)]
        assert wh.latest_rows("training_data", splits=["TEST"]).num_rows == 0

    def test_a_sample_per_split_is_the_same_on_every_backend(self, wh) -> None:
        ids = list(range(1, 301))
        rows = _training_rows(ids)
        rows = rows.set_column(
            rows.schema.get_field_index("split"), "split", pa.array([split_for(i) for i in ids])
        )
        wh.load("training_data", rows.to_batches(), _ledger_row())
        got = wh.latest_rows("training_data", splits=["TRAIN", "VALIDATION"], per_split=20)
        expected = sorted(
            i
            for split in ("TRAIN", "VALIDATION")
            for i in sorted((i for i in ids if split_for(i) == split), key=sample_rank)[:20]
        )
        assert got.column("PassengerId").to_pylist() == expected
        assert got.num_rows == 40 and wh.latest_summary("training_data").rows == 300
        everything = wh.latest_rows("training_data", per_split=1000)
        assert everything.num_rows == 300

    def test_labelled_predictions_say_which_rows_landed(self, wh) -> None:
        """A labelled prediction whose key is a row of the training table is
        that row (training leaves it out of the gate's rows): ``landed``."""
        wh.load("training_data", _training_rows([7, 9]).to_batches(), _ledger_row())
        base = datetime(2026, 3, 1, tzinfo=UTC)
        preds = [
            {
                "uuid": f"u{i}",
                "created_at": base.replace(minute=i),
                "model_version": "1",
                "PassengerId": pid,
                "Pclass": 1,
                "Sex": "female",
                "SibSp": 0,
                "Parch": 0,
                "probability": 0.9,
                "prediction": 1,
            }
            for i, pid in enumerate([7, 8, None])
        ]
        wh.append(
            "predictions_data",
            pa.Table.from_pylist(preds, schema=arrow_schema("predictions_data", TITANIC)),
        )
        labels = [
            {"uuid": f"u{i}", "PassengerId": None, "Survived": 1, "received_at": base}
            for i in range(3)
        ]
        wh.append(
            "feedback", pa.Table.from_pylist(labels, schema=arrow_schema("feedback", TITANIC))
        )
        got = wh.labelled_predictions("predictions_data", "feedback", landed_in="training_data")
        assert [(r["uuid"], r["landed"]) for r in got.to_pylist()] == [
            ("u0", True),
            ("u1", False),
            ("u2", False),
        ]
        plain = wh.labelled_predictions("predictions_data", "feedback")
        assert "landed" not in plain.column_names and plain.num_rows == 3

    def test_labelled_predictions_and_their_accuracy(self, wh) -> None:
        base = datetime(2026, 3, 1, tzinfo=UTC)
        wh.append(
            "predictions_data",
            _predictions(
                _predicted(f"u{i}", None, base.replace(minute=i), "12"[i > 2]) for i in range(5)
            ),
        )
        wh.append(
            "feedback",
            pa.Table.from_pylist(
                [
                    {
                        "uuid": f"u{i}",
                        "PassengerId": None,
                        "Survived": i % 2,
                        "received_at": base.replace(minute=10),
                    }
                    for i in range(5)
                ],
                schema=arrow_schema("feedback", TITANIC),
            ),
        )
        every = wh.labelled_predictions("predictions_data", "feedback")
        assert every.column("uuid").to_pylist() == ["u0", "u1", "u2", "u3", "u4"]
        newest = wh.labelled_predictions("predictions_data", "feedback", limit=2)
        assert [(r["uuid"], r["label"]) for r in newest.to_pylist()] == [("u3", 1), ("u4", 0)]
        # Counted by the warehouse: every prediction says 1; u1 and u3 were right.
        rows = wh.labelled_accuracy("predictions_data", "feedback")
        assert [{k: r[k] for k in ("model_version", "labelled", "correct")} for r in rows] == [
            {"model_version": "1", "labelled": 3, "correct": 1},
            {"model_version": "2", "labelled": 2, "correct": 1},
        ]
        # Each label came 10 - i minutes after its prediction: v1's delays 480, 540,
        # 600 s, v2's 360, 420 s. Percentiles: interpolated (DuckDB), or the
        # approximate ones BigQuery's APPROX_QUANTILES gives (values seen, near them).
        v1, v2 = rows
        assert v1["delay_p50_s"] == 540 and 540 <= v1["delay_p90_s"] <= 600
        assert 360 <= v2["delay_p50_s"] <= 420 and 360 <= v2["delay_p90_s"] <= 420
        assert v2["delay_p50_s"] <= v2["delay_p90_s"]
        start = int(base.timestamp())
        assert wh.labelled_accuracy("predictions_data", "feedback", bucket_seconds=120) == [
            {"model_version": "1", "at": start, "labelled": 2, "correct": 1},
            {"model_version": "1", "at": start + 120, "labelled": 1, "correct": 0},
            {"model_version": "2", "at": start + 120, "labelled": 1, "correct": 1},
            {"model_version": "2", "at": start + 240, "labelled": 1, "correct": 0},
        ]

    def test_live_figures_leave_out_predictions_made_after_their_row_landed(self, wh) -> None:
        """A prediction asked after its row landed may be answered from what the
        model learnt: no live figure counts it, and it is counted apart."""
        at = lambda h, m=0: datetime(2026, 3, 1, h, m, tzinfo=UTC)  # noqa: E731
        asked = [  # (uuid, key, when): every prediction says 1
            ("before-1", 1, at(10)),  # before key 1 landed (11:00): counts
            ("before-2", 2, at(10)),  # likewise; its label is 0
            ("again-1", 1, at(12)),  # key 1 again, after it landed
            ("old-4", 4, at(9)),  # key 4 had landed at 8:00 already
            ("free-3", 3, at(12)),  # key 3 never landed; labelled by uuid
            ("nokey", None, at(12)),  # no key at all; labelled by uuid
            ("as-2-landed", 2, at(11)),  # the very moment key 2 landed: after
            ("v2-again-1", 1, at(12), "2"),  # version 2's only labelled one: after
            # no key of their own; their labels by uuid carry one (a generated key)
            ("fed-5", None, at(10)),  # key 5 lands at 11:00: counts
            ("fed-4", None, at(12)),  # key 4 had landed at 8:00: after
        ]
        wh.append("predictions_data", _predictions(_predicted(*a) for a in asked))
        wh.append("training_data", _training_rows([4], "i0", when=at(8)))
        landed = _training_rows([1, 2, 4, 5], "i1", when=at(11))
        landed = landed.set_column(1, "Survived", pa.array([1, 0, 1, 1], pa.int64()))
        wh.append("training_data", landed)
        labels = [  # the file's labels (by key), then two by uuid
            {"uuid": None, "PassengerId": k, "Survived": y, "received_at": at(11, 1)}
            for k, y in [(1, 1), (2, 0), (4, 1)]
        ] + [
            {"uuid": u, "PassengerId": k, "Survived": 1, "received_at": at(13)}
            for u, k in (("free-3", None), ("nokey", None), ("fed-5", 5), ("fed-4", 4))
        ]
        wh.append(
            "feedback", pa.Table.from_pylist(labels, schema=arrow_schema("feedback", TITANIC))
        )

        row, v2 = wh.labelled_accuracy("predictions_data", "feedback", landed_in="training_data")
        assert (row["labelled"], row["correct"], row["predicted_after_landing"]) == (5, 4, 4)
        # the delays of the five counted: 61, 61, 60, 60 and 180 minutes
        assert 3600 <= row["delay_p50_s"] <= 3660 and row["delay_p90_s"] <= 3 * 3600
        landed_flags = wh.labelled_predictions(
            "predictions_data", "feedback", landed_in="training_data"
        ).to_pylist()
        assert {r["uuid"]: r["PassengerId"] for r in landed_flags}["fed-5"] == 5
        assert {r["uuid"] for r in landed_flags if r["landed"]} == {
            "before-1",
            "before-2",
            "again-1",
            "old-4",
            "as-2-landed",
            "v2-again-1",
            "fed-5",
            "fed-4",
        }
        # a version whose every labelled prediction came after: listed, nothing counted
        assert (v2["model_version"], v2["labelled"], v2["correct"]) == ("2", 0, 0)
        assert v2["predicted_after_landing"] == 1 and v2["delay_p50_s"] is None
        buckets = wh.labelled_accuracy(
            "predictions_data", "feedback", bucket_seconds=3600, landed_in="training_data"
        )
        start = int(at(10).timestamp())
        assert [(r["at"] - start, r["labelled"], r["correct"]) for r in buckets] == [
            (0, 3, 2),
            (7200, 2, 2),
        ]
        # the estimate's newest predictions say which were made after their row landed
        recent = wh.recent_predictions("predictions_data", 10, landed_in="training_data")
        assert sorted(
            u
            for u, x in zip(*recent.select(["uuid", "learnt"]).to_pydict().values(), strict=True)
            if x
        ) == [
            "again-1",
            "as-2-landed",
            "old-4",
            "v2-again-1",
        ]
        assert recent.num_rows == 10 and recent.schema.field("created_at").type.tz is not None
        assert "learnt" not in wh.recent_predictions("predictions_data", 10).column_names
        # what feedback reads to give a prediction its generated key
        (found,) = wh.predictions_of("predictions_data", ["fed-5", "unknown"]).to_pylist()
        assert (found["uuid"], found["PassengerId"], found["Sex"]) == ("fed-5", None, "female")
        # asked without the training table, every labelled prediction counts
        every = wh.labelled_accuracy("predictions_data", "feedback")
        assert [(r["labelled"], r["correct"], r["predicted_after_landing"]) for r in every] == [
            (9, 7, 0),
            (1, 1, 0),
        ]

    def test_the_same_content_loads_once_even_when_two_loads_race(self, wh) -> None:
        wh.load("training_data", _training_rows([1, 2]).to_batches(), _ledger_row())
        with pytest.raises(ConflictError):
            wh.load(
                "training_data",
                _training_rows([1, 2]).to_batches(),
                _ledger_row(ingestion_id="i2", source_uri="gs://b/copy.csv"),
            )
        assert wh.counts()["training_data"] == 2 and len(wh.ledger()) == 1

    def test_ledger_lookup_by_uri_and_hash(self, wh) -> None:
        wh.append(
            "ingestion_ledger",
            pa.Table.from_pylist(
                [
                    _ledger_row(),
                    _ledger_row(ingestion_id="i2", source_uri="gs://b/g.csv", content_sha256="def"),
                ],
                schema=arrow_schema("ingestion_ledger"),
            ),
        )
        assert [r["ingestion_id"] for r in wh.ledger(source_uri="gs://b/g.csv")] == ["i2"]
        assert [r["ingestion_id"] for r in wh.ledger(content_sha256="abc")] == ["i1"]
        assert len(wh.ledger()) == 2


class AbstractProjectWarehouseTests:
    """What every warehouse does with any project's key, target and task."""

    @pytest.fixture
    def make_wh(self, tmp_path: Path):  # pragma: no cover - overridden
        raise NotImplementedError

    def test_string_keys_are_sampled_the_same_on_every_backend(self, make_wh) -> None:
        from tests import projects as shapes

        p = shapes.load("wine")
        wh = make_wh(p)
        rows = shapes.rows(p, 300, seed=5)
        rows = _as_loaded(rows, p, "gs://b/w.csv")
        wh.load("training_data", rows.to_batches(), _ledger_row())
        got = wh.latest_rows("training_data", splits=["TRAIN", "VALIDATION"], per_split=15)
        keys = rows.column("sample_id").to_pylist()
        expected = sorted(
            k
            for split in ("TRAIN", "VALIDATION")
            for k in sorted(
                (k for k in keys if split_for(k) == split), key=lambda k: (sample_rank(k), k)
            )[:15]
        )
        assert got.column("sample_id").to_pylist() == expected
        summary = wh.latest_summary("training_data")
        assert summary.rows == 300 and summary.splits["TRAIN"] == sum(
            split_for(k) == "TRAIN" for k in keys
        )

    def test_regression_errors_are_counted_by_the_warehouse(self, make_wh) -> None:
        from tests import projects as shapes

        p = shapes.load("diabetes")
        wh = make_wh(p)
        base = datetime(2026, 3, 1, tzinfo=UTC)
        inputs = {k: v for k, v in shapes.rows(p, 1).to_pylist()[0].items() if k != p.target}
        preds = [
            {
                **inputs,
                "patient_id": None,
                "uuid": f"u{i}",
                "created_at": base,
                "model_version": "1",
                "prediction": 100.0 + i,
            }
            for i in range(4)
        ]
        wh.append(
            "predictions_data",
            pa.Table.from_pylist(preds, schema=arrow_schema("predictions_data", p)),
        )
        labels = [
            {"uuid": f"u{i}", "patient_id": None, "progression": 100.0 - i, "received_at": base}
            for i in range(4)
        ]  # errors 0, 2, 4, 6
        wh.append("feedback", pa.Table.from_pylist(labels, schema=arrow_schema("feedback", p)))
        (row,) = wh.labelled_accuracy("predictions_data", "feedback")
        assert row["labelled"] == 4 and row["abs_error"] == pytest.approx(12.0)
        assert row["squared_error"] == pytest.approx(0 + 4 + 16 + 36)
        # u0 and u1 were asked about rows that had landed: only u2 and u3's errors count
        landed = _as_loaded(shapes.rows(p, 2, seed=4), p, "gs://b/d.csv")
        wh.append("training_data", landed)
        keys = landed.column("patient_id").to_pylist()
        wh.append(
            "predictions_data",
            pa.Table.from_pylist(
                [{**r, "uuid": f"k{i}", "patient_id": keys[i]} for i, r in enumerate(preds[:2])],
                schema=arrow_schema("predictions_data", p),
            ),
        )
        wh.append(
            "feedback",
            pa.Table.from_pylist(
                [{**labels[i], "uuid": f"k{i}"} for i in range(2)],
                schema=arrow_schema("feedback", p),
            ),
        )
        (row,) = wh.labelled_accuracy("predictions_data", "feedback", landed_in="training_data")
        assert (row["labelled"], row["predicted_after_landing"]) == (4, 2)
        assert row["abs_error"] == pytest.approx(12.0)
        assert row["squared_error"] == pytest.approx(0 + 4 + 16 + 36)

    @pytest.mark.parametrize(
        "declared",
        [
            {},
            {"fractions": [0.5, 0.25, 0.25]},
            {"strategy": "time", "column": "ordered_on"},
            {"strategy": "time", "column": "ordered_on", "fractions": [0.6, 0.2, 0.2]},
            {"strategy": "time", "column": "ordered_on", "validation_from": "2025-09-01"},
            {
                "strategy": "time",
                "column": "ordered_on",
                "validation_from": "2025-07-01",
                "test_from": "2025-10-15",
            },
            {"strategy": "time", "column": "paid_at"},
            {"strategy": "group", "column": "customer"},
            {"strategy": "group", "column": "store", "fractions": [0.6, 0.3, 0.1]},
            {"strategy": "column", "column": "flag"},
        ],
        ids=lambda d: "-".join(str(v) for v in d.values()) or "default",
    )
    def test_every_split_strategy_gives_the_same_rows_on_every_backend(
        self, make_wh, declared
    ) -> None:
        """The warehouse splits the newest row of each key as Split.of_row
        does in Python: counts, filters and the per-split sample alike."""
        from minimlops.domain import splits as sp
        from minimlops.domain.project import parse

        p = parse(
            {
                "name": "orders",
                "key": "order_id",
                "target": "amount",
                "task": "regression",
                "columns": [
                    {"name": "order_id", "type": "string", "required": True},
                    {"name": "customer", "type": "string"},
                    {"name": "store", "type": "integer"},
                    {"name": "ordered_on", "type": "date"},
                    {"name": "paid_at", "type": "timestamp"},
                    {"name": "flag", "type": "string", "allowed": ["TRAIN", "VALIDATION", "TEST"]},
                    {"name": "amount", "type": "float", "required": True},
                ],
                "split": {"strategy": "random", **declared},
            }
        )
        wh = make_wh(p)
        day = date(2025, 1, 1)
        rows = [
            {
                "order_id": f"o{i}",
                "customer": None if i % 17 == 0 else f"c{(i * 7) % 41}",
                "store": None if i % 23 == 0 else i % 9,
                "ordered_on": None if i % 19 == 0 else day + timedelta(days=(i * 13) % 360),
                "paid_at": None
                if i % 29 == 0
                else datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=i * 977),
                "flag": None if i % 5 == 0 else ("TRAIN", "VALIDATION", "TEST")[i % 3],
                "amount": float(i),
            }
            for i in range(300)
        ]
        table = _as_loaded(pa.Table.from_pylist(rows, schema=_data_schema(p)), p, "gs://b/o.csv")
        wh.load("training_data", table.to_batches(), _ledger_row())
        column_type = p.column(p.split.column).type if p.split.column else None
        split = sp.resolve(
            p.split,
            column_type,
            lambda c, m: wh.time_cutoffs("training_data", c, m, ingestion_ids=["i1"]),
        )
        stored = {r["order_id"]: r for r in table.to_pylist()}
        if p.split.strategy == "time" and not p.split.validation_from:  # SQL = Python's rule
            c = p.split.column
            counts = Counter(r[c] for r in stored.values() if r[c] is not None)
            assert split.cutoffs == sp.cutoffs_from_counts(
                sorted(counts.items()), sp.marks(p.split.fractions)
            )
        expected = {k: split.of_row(r, "order_id") for k, r in stored.items()}
        got = wh.latest_rows("training_data", split=split).to_pylist()
        assert {r["order_id"]: r["split"] for r in got} == expected
        summary = wh.latest_summary("training_data", split)
        assert summary.splits == {
            s: sum(v == s for v in expected.values()) for s in set(expected.values())
        }
        assert min(summary.splits.get(s, 0) for s in ("TRAIN", "VALIDATION")) > 0
        sample = wh.latest_rows(
            "training_data", splits=["VALIDATION", "TEST"], per_split=10, split=split
        )
        want = sorted(
            k
            for s in ("VALIDATION", "TEST")
            for k in sorted(
                (k for k, v in expected.items() if v == s), key=lambda k: (sample_rank(k), k)
            )[:10]
        )
        assert sample.column("order_id").to_pylist() == want
        if p.split.strategy == "time":  # TRAIN is older than VALIDATION, which is older than TEST
            c = p.split.column
            when = {
                s: [stored[k][c] for k, v in expected.items() if v == s and stored[k][c]]
                for s in ("TRAIN", "VALIDATION", "TEST")
            }
            assert max(when["TRAIN"]) < min(when["VALIDATION"])
            if when["TEST"]:
                assert max(when["VALIDATION"]) < min(when["TEST"])
        if p.split.strategy == "group":  # a group is on one side only
            c = p.split.column
            sides = {}
            for k, v in expected.items():
                if stored[k][c] is not None:
                    sides.setdefault(stored[k][c], set()).add(v)
            assert all(len(v) == 1 for v in sides.values()) and len(sides) > 3


def _as_loaded(table: pa.Table, p, uri: str) -> pa.Table:
    """A project's rows with the columns ingestion adds (split by key, one ingestion)."""
    from minimlops.services.validate import add_split

    n = table.num_rows
    return (
        table.append_column("split", add_split(table, p))
        .append_column("ingestion_id", pa.array(["i1"] * n))
        .append_column("source_uri", pa.array([uri] * n))
        .append_column(
            "ingested_at",
            pa.array([datetime(2026, 1, 1, tzinfo=UTC)] * n, pa.timestamp("us", tz="UTC")),
        )
    )


def _data_schema(p):
    schema = arrow_schema("training_data", p)
    return pa.schema([f for f in schema if f.name in p.column_names])


def _project_schemas(p):
    from tests.conftest import key_of, schemas_of

    return schemas_of(p), key_of(p)


class TestInMemoryWarehouse(AbstractWarehouseTests, AbstractProjectWarehouseTests):
    @pytest.fixture
    def wh(self, tmp_path: Path):
        return InMemoryWarehouse(SCHEMAS)

    @pytest.fixture
    def make_wh(self, tmp_path: Path):
        def make(p):
            schemas, key = _project_schemas(p)
            return InMemoryWarehouse(schemas, key=key)

        return make


class TestDuckDBWarehouse(AbstractWarehouseTests, AbstractProjectWarehouseTests):
    @pytest.fixture
    def wh(self, tmp_path: Path):
        wh = DuckDBWarehouse(tmp_path / "w.duckdb", SCHEMAS, "ingestion_ledger")
        wh.ensure_tables()
        yield wh
        wh.close()

    @pytest.fixture
    def make_wh(self, tmp_path: Path):
        opened = []

        def make(p):
            schemas, key = _project_schemas(p)
            wh = DuckDBWarehouse(
                tmp_path / f"{p.name}.duckdb", schemas, "ingestion_ledger", key=key
            )
            wh.ensure_tables()
            opened.append(wh)
            return wh

        yield make
        for wh in opened:
            wh.close()

    def test_required_columns_are_enforced(self, wh) -> None:
        bad = _training_rows([1]).set_column(0, "PassengerId", pa.array([None], pa.int64()))
        with pytest.raises(Exception, match="NOT NULL"):
            wh.load("training_data", bad.to_batches(), _ledger_row())
        assert wh.counts()["training_data"] == 0

    @pytest.mark.parametrize(
        "sql",
        [
            "DELETE FROM training_data",
            "DROP TABLE training_data",
            "INSERT INTO feedback VALUES (NULL, 1, 1, now())",
            "SELECT 1; DROP TABLE feedback",
            "COPY training_data TO '/tmp/x.csv'",
            "ATTACH '/tmp/other.db'",
        ],
    )
    def test_query_refuses_anything_but_reading(self, wh, sql: str) -> None:
        with pytest.raises(QueryError):
            wh.query(sql)
        assert wh.counts()["training_data"] == 0

    def test_query_cannot_read_files(self, wh) -> None:
        with pytest.raises(QueryError, match="disabled"):
            wh.query("SELECT * FROM read_csv('/etc/passwd')")

    def test_query_reads(self, wh) -> None:
        wh.load("training_data", _training_rows([1, 2]).to_batches(), _ledger_row())
        t = wh.query("SELECT count(*) AS n FROM training_data WHERE Age > $a", {"a": 1})
        assert t.to_pylist() == [{"n": 2}]

    def test_loads_and_whole_table_reads_run_on_two_threads_and_leave_one(self, wh) -> None:
        def threads() -> int:
            # The setting is the database's; read it on a connection of its own
            # (the loading thread's cursor is busy with the INSERT).
            return int(wh._con.cursor().execute("SELECT current_setting('threads')").fetchone()[0])

        seen = []

        def batches(fail: bool):
            for batch in _training_rows([1, 2, 3]).to_batches(max_chunksize=1):
                seen.append(threads())
                yield batch
            if fail:
                raise RuntimeError("disk on fire")

        assert threads() == 1
        with pytest.raises(RuntimeError):
            wh.load("training_data", batches(True), _ledger_row())
        assert threads() == 1
        wh.load("training_data", batches(False), _ledger_row())
        assert threads() == 1
        # the first batch of each load is read before its INSERT starts
        assert seen == [1, 2, 2, 1, 2, 2]
        assert wh.counts()["training_data"] == 3
        assert wh.query("SELECT current_setting('threads') AS t").to_pylist() == [{"t": 2}]
        assert threads() == 1

    def test_committed_rows_survive_reopen(self, tmp_path: Path) -> None:
        path = tmp_path / "d.duckdb"
        wh = DuckDBWarehouse(path, SCHEMAS, "ingestion_ledger")
        wh.ensure_tables()
        wh.load("training_data", _training_rows([1]).to_batches(), _ledger_row())
        wh.close()
        again = DuckDBWarehouse(path, SCHEMAS, "ingestion_ledger")
        assert again.counts()["training_data"] == 1
        again.close()


class AbstractMessageBusTests:
    @pytest.fixture
    def bus(self, tmp_path: Path):  # pragma: no cover - overridden
        raise NotImplementedError

    def test_fan_out_pull_ack(self, bus) -> None:
        bus.create_subscription("s1", "t")
        bus.create_subscription("s2", "t")
        bus.publish("t", b"hello", {"type": "X"})
        bus.publish("other", b"nobody listens", {})
        (m1,) = bus.pull("s1", 10)
        (m2,) = bus.pull("s2", 10)
        assert m1.data == m2.data == b"hello" and m1.attributes == {"type": "X"}
        assert m1.attempt == 1
        assert bus.pull("s1", 10) == []  # leased: not delivered twice at once
        bus.ack("s1", m1.id)
        assert bus.pull("s1", 10) == []

    def test_nack_redelivers_then_dead_letters(self, bus) -> None:
        bus.create_subscription("s", "t")
        bus.publish("t", b"poison", {})
        attempts = []
        for _ in range(10):
            msgs = bus.pull("s", 1)
            if not msgs:
                break
            attempts.append(msgs[0].attempt)
            bus.nack("s", msgs[0].id, "boom")
        assert attempts == list(range(1, bus.max_attempts + 1))
        stats = {s["subscription"]: s for s in bus.stats()}
        assert stats["s"]["pending"] in (0, None)
        if stats["s"]["dead_lettered"] is None:  # Pub/Sub: counting would pull them (a GET
            # must not); `minimlops gcp dead-letters` lists them, and --redrive sends them back
            held = bus.redrive(apply=False)
            assert [(src, topic) for src, topic, _ in held] == [("s", "t")]
            assert [(src, topic) for src, topic, _ in bus.redrive(apply=True)] == [("s", "t")]
            again = bus.pull("s", 1, wait=5.0)
            assert [m.data for m in again] == [b"poison"] and again[0].attempt == 1
            bus.ack("s", again[0].id)
            assert bus.redrive(apply=False) == []
        else:
            assert stats["s"]["dead_lettered"] == 1


class LeaseReleaseTests:
    """Embedded buses: a restart gives back the leases of the process that died."""

    def test_unacked_messages_are_delivered_again_after_restart(self, bus) -> None:
        bus.create_subscription("s", "t")
        bus.publish("t", b"m", {})
        (m,) = bus.pull("s", 1)
        assert bus.release_leases() == 1  # what a restart does
        (again,) = bus.pull("s", 1)
        assert again.id == m.id and again.attempt == 2


class TestInMemoryMessageBus(AbstractMessageBusTests, LeaseReleaseTests):
    @pytest.fixture
    def bus(self, tmp_path: Path):
        return InMemoryMessageBus(max_attempts=3)


class TestSQLiteMessageBus(AbstractMessageBusTests, LeaseReleaseTests):
    @pytest.fixture
    def bus(self, tmp_path: Path):
        bus = SQLiteMessageBus(tmp_path / "bus.sqlite3", max_attempts=3, backoff_base=0.0)
        yield bus
        bus.close()

    def test_messages_survive_reopen(self, tmp_path: Path) -> None:
        path = tmp_path / "b.sqlite3"
        bus = SQLiteMessageBus(path)
        bus.create_subscription("s", "t")
        bus.publish("t", b"durable", {"k": "v"})
        bus.close()
        again = SQLiteMessageBus(path)
        (m,) = again.pull("s", 1)
        assert m.data == b"durable" and m.attributes == {"k": "v"}
        again.close()

    def test_publish_once_publishes_a_key_once(self, bus) -> None:
        bus.create_subscription("s", "t")
        assert bus.publish_once("k", "t", b"1", {})
        assert bus.publish_once("k", "t", b"1", {}) is None
        assert len(bus.pull("s", 10)) == 1

    def test_backoff_delays_redelivery(self, tmp_path: Path) -> None:
        bus = SQLiteMessageBus(tmp_path / "c.sqlite3", backoff_base=30)
        bus.create_subscription("s", "t")
        bus.publish("t", b"m", {})
        (m,) = bus.pull("s", 1)
        bus.nack("s", m.id, "transient")
        assert bus.pull("s", 1) == []
        bus.close()


def test_a_column_made_optional_in_the_project_is_relaxed_in_place(tmp_path: Path) -> None:
    """A project may make a required column optional (compatible in place):
    the tables follow, so a prediction without it is stored, not retried
    forever against a NOT NULL constraint."""
    from minimlops.domain.project import parse
    from tests.conftest import key_of, schemas_of

    def project(required: bool):
        return parse(
            {
                "name": "relax",
                "key": "id",
                "target": "y",
                "task": "regression",
                "columns": [
                    {"name": "id", "type": "integer", "required": True, "min": 0, "max": 99},
                    {"name": "note", "type": "string", "required": required},
                    {"name": "y", "type": "float", "required": True},
                ],
            }
        )

    path = tmp_path / "w.duckdb"
    before = project(True)
    wh = DuckDBWarehouse(path, schemas_of(before), "ingestion_ledger", key=key_of(before))
    wh.ensure_tables()
    wh.close()
    after = project(False)
    wh = DuckDBWarehouse(path, schemas_of(after), "ingestion_ledger", key=key_of(after))
    wh.ensure_tables()
    row = {
        "uuid": "u1",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "model_version": "1",
        "id": 1,
        "note": None,
        "prediction": 1.0,
        "shadow_model_version": None,
        "shadow_prediction": None,
    }
    wh.append(
        "predictions_data",
        pa.Table.from_pylist([row], schema=arrow_schema("predictions_data", after)),
    )
    assert wh.counts()["predictions_data"] == 1
    wh.close()
