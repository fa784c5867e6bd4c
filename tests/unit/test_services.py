"""Training, the gate, serving and the prediction log, on fakes of the ports."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from minimlops.domain.events import ModelPromoted, RetrainRequested
from minimlops.domain.schema import split_for
from minimlops.errors import ConflictError, NoChampionError
from minimlops.generate import passengers
from minimlops.services import admin, messagebus
from minimlops.services.deps import Deps
from minimlops.services.predict import PredictionLog, Predictor
from minimlops.services.train import registry_of
from tests.unit.test_ingest import LAND, land


def _csv(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pacsv.write_csv(table, out)
    return out.getvalue()


def _ingest_and_train(deps: Deps, name: str, table: pa.Table) -> list:
    (done,) = land(deps, name, _csv(table))
    return messagebus.handle(done, deps)


def _noise_challenger(deps: Deps) -> list:
    """Version 1 on 800 passengers, then the same TRAIN rows with shuffled labels:
    the challenger learns noise; VALIDATION rows (the yardstick) stay true."""
    _ingest_and_train(deps, "a.csv", passengers(800, seed=1))
    table = passengers(800, seed=1)
    train_ids = pa.array([split_for(i) == "TRAIN" for i in table.column("PassengerId").to_pylist()])
    shuffled = table.filter(train_ids)
    labels = np.random.default_rng(0).permutation(shuffled.column("Survived").to_numpy())
    return _ingest_and_train(
        deps, "noise.csv", shuffled.set_column(1, "Survived", pa.array(labels))
    )


def test_the_training_job_named_for_the_training_process_exists_and_pickles() -> None:
    """The server sends the job by name (it never imports it): a renamed module
    or function would otherwise fail only in the training process."""
    import inspect
    import pickle

    from minimlops.ml import job
    from minimlops.services.train import FIT_AND_SCORE

    assert pickle.loads(pickle.dumps(FIT_AND_SCORE)) == FIT_AND_SCORE
    named = getattr(__import__(FIT_AND_SCORE.module, fromlist=["_"]), FIT_AND_SCORE.name)
    assert named is job.fit_and_score and "refit" in inspect.signature(named).parameters


def test_first_model_becomes_champion_with_its_metadata(fake_deps: Deps) -> None:
    (promoted,) = _ingest_and_train(fake_deps, "a.csv", passengers(600, seed=1))
    assert isinstance(promoted, ModelPromoted) and promoted.version == "1"
    meta = registry_of(fake_deps).metadata("1")
    assert meta["decision"]["promote"] and meta["training"]["rows"] == 600
    assert (
        meta["metrics"]["validation"]["accuracy"] > meta["baseline"]["gender_only_accuracy"] - 0.05
    )
    assert len(meta["sha256"]) == 64 and meta["libraries"]["scikit-learn"]
    assert fake_deps.bus.published[-1][0] == "model_promoted"


def test_training_reads_a_bounded_sample_and_says_so(fake_deps: Deps) -> None:
    """Past MINIMLOPS_TRAINING_MAX_ROWS rows a split is read as a sample: the
    version records how many rows there were and how many it was fitted on,
    and drift is measured against exactly the rows it was fitted on."""
    from minimlops.services import monitor

    deps = Deps(**{**fake_deps.__dict__, "training_max_rows": 150})
    (promoted,) = _ingest_and_train(deps, "a.csv", passengers(2000, seed=1))
    meta = registry_of(deps).metadata(promoted.version)
    training = meta["training"]
    assert training["rows"] == 2000 and training["train_rows"] > 1300
    # refitted on the two samples it read: 150 TRAIN and 150 VALIDATION rows
    assert training["fit_rows"] == 300 and training["max_rows_per_split"] == 150
    assert training["fitted_on"] == ["TRAIN", "VALIDATION"] and training["measured_rows"] == 150
    assert meta["metrics"]["evaluation_rows"]["validation"] == 150 < training["validation_rows"]
    assert meta["metrics"]["validation"]["rows"] == 150
    predictor = Predictor(registry_of(deps), deps.now, deps.project)
    predictor.refresh()
    deps.warehouse.append(
        "predictions_data",
        pa.Table.from_pylist(predictor.predict(passengers(50, seed=9).to_pylist())),
    )
    drift = monitor.drift(deps, registry_of(deps), monitor.MonitorConfig(drift_min_rows=10))
    assert drift["reference_rows"] == 300


def test_the_same_ingestion_event_twice_trains_once(fake_deps: Deps) -> None:
    (done,) = land(fake_deps, "a.csv", _csv(passengers(400, seed=1)))
    messagebus.handle(done, fake_deps)
    assert messagebus.handle(done, fake_deps) == []
    assert [m["version"] for m in registry_of(fake_deps).versions()] == ["1"]


def test_a_worse_challenger_is_kept_out_and_the_decision_recorded(fake_deps: Deps) -> None:
    assert _noise_challenger(fake_deps) == []
    registry = registry_of(fake_deps)
    meta = registry.metadata("2")
    decision = meta["decision"]
    assert not decision["promote"] and decision["challenger"] < decision["champion"]
    assert "worse" in decision["reason"] or "calibration broken" in decision["reason"]
    assert decision["paired"]["champion_only_right"] > decision["paired"]["challenger_only_right"]
    assert meta["champion_compared"]["version"] == "1"
    assert registry.champion()[0]["version"] == "1"


def test_promote_and_rollback(fake_deps: Deps) -> None:
    _ingest_and_train(fake_deps, "a.csv", passengers(500, seed=1))
    messagebus.handle(RetrainRequested(reason="test"), fake_deps)
    registry = registry_of(fake_deps)
    # whatever the gate decided (its candidates depend on the time budget), 2 serves, then 1
    admin.promote(fake_deps, registry, "2", "by hand")
    admin.promote(fake_deps, registry, "1", "by hand")
    assert registry.champion()[0]["version"] == "1"
    pointer = admin.rollback(fake_deps, registry)
    assert pointer["version"] == "2" and pointer["previous"] == "1"
    versions = admin.list_models(registry)["versions"]
    assert [v["champion"] for v in versions] == [False, True]


def test_rollback_without_history_is_a_clear_error(fake_deps: Deps) -> None:
    with pytest.raises(ConflictError, match="no previous champion"):
        admin.rollback(fake_deps, registry_of(fake_deps))


def test_predictor_serves_the_champion_and_refuses_a_tampered_one(fake_deps: Deps) -> None:
    registry = registry_of(fake_deps)
    predictor = Predictor(registry, fake_deps.now, fake_deps.project)
    with pytest.raises(NoChampionError):
        predictor.predict([{}])
    _ingest_and_train(fake_deps, "a.csv", passengers(500, seed=1))
    # nothing loaded yet: a request looks at the pointer itself (no 503 until the next poll)
    later = Predictor(registry, fake_deps.now, fake_deps.project)
    assert (
        later.predict([{"Pclass": 1, "Sex": "male", "SibSp": 0, "Parch": 0}])[0]["model_version"]
        == "1"
    )
    assert predictor.refresh() and predictor.version == "1"
    (row,) = predictor.predict(
        [
            {
                "Pclass": 1,
                "Sex": "female",
                "Age": 30.0,
                "SibSp": 0,
                "Parch": 0,
                "Fare": 80.0,
                "Embarked": "C",
            }
        ]
    )
    assert row["model_version"] == "1" and 0.5 < row["probability"] <= 1 and row["prediction"] == 1
    messagebus.handle(RetrainRequested(reason="again"), fake_deps)
    name = "models/titanic/2/model.onnx"  # the artifact that serves
    blob = fake_deps.store.read_bytes("my-model-storage", name)
    fake_deps.store.write_bytes("my-model-storage", name, blob[:-10])  # tampered
    admin.promote(fake_deps, registry, "2", "test")
    assert not predictor.refresh()
    assert predictor.version == "1" and "refused" in predictor.error


def test_prediction_log_commits_groups_and_fails_loudly(fake_deps: Deps) -> None:
    wh = fake_deps.warehouse
    log = PredictionLog(
        lambda rows: wh.append("predictions_data", pa.Table.from_pylist(rows)), flush_ms=5
    )
    row = {
        "uuid": "u",
        "created_at": fake_deps.now(),
        "model_version": "1",
        "Pclass": 3,
        "Sex": "male",
        "SibSp": 0,
        "Parch": 0,
        "probability": 0.1,
        "prediction": 0,
    }

    async def scenario() -> None:
        task = asyncio.create_task(log.run())
        await asyncio.sleep(0)
        await asyncio.gather(*(log.log([{**row, "uuid": str(i)}]) for i in range(50)))
        assert len(wh.tables["predictions_data"]) == 50
        assert log.batches < 50  # grouped
        wh.fail_next_append = OSError("No space left on device")
        with pytest.raises(OSError, match="No space"):
            await log.log([{**row, "uuid": "lost"}])
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert "lost" not in {r["uuid"] for r in wh.tables["predictions_data"]}


def test_a_handler_error_propagates_so_the_message_is_redelivered(fake_deps: Deps) -> None:
    class Broken(type(fake_deps.warehouse)):  # type: ignore[misc]
        def latest_summary(self, table: str) -> Any:
            raise OSError("warehouse unreachable")

    deps = Deps(**{**fake_deps.__dict__, "warehouse": Broken(fake_deps.warehouse.schemas)})
    with pytest.raises(OSError):
        messagebus.handle(RetrainRequested(reason="x"), deps)


def test_status_reports_tables_champion_and_queues(fake_deps: Deps) -> None:
    _ingest_and_train(fake_deps, "a.csv", passengers(300, seed=2))
    s = admin.status(fake_deps, registry_of(fake_deps), "1")
    assert s["tables"]["training_data"] == 300 and s["champion"]["version"] == "1"
    assert s["last_ingestion"]["source_uri"] == f"gs://{LAND}/a.csv"


def test_the_served_form_gives_the_trained_models_probabilities(fake_deps: Deps) -> None:
    _ingest_and_train(fake_deps, "a.csv", passengers(1200, seed=5))
    registry = registry_of(fake_deps)
    meta = registry.metadata("1")
    assert meta["serving"]["runtime"] == "onnxruntime"
    assert meta["serving"]["max_abs_diff"] <= 1e-5 and meta["serving"]["checked_rows"] > 100
    served, trained = registry.load_serving("1"), registry.load("1")
    rows = passengers(3000, seed=99).to_pylist()  # rows neither model has seen
    diff = np.abs(served.predict_proba(rows) - trained.predict_proba(rows)).max()
    assert diff <= 1e-5


def test_uuid4_strings_are_valid_distinct_version_4_uuids() -> None:
    import uuid

    from minimlops.services.predict import uuid4_strings

    ids = uuid4_strings(2000) + [uuid4_strings(1)[0] for _ in range(100)]
    assert len(set(ids)) == 2100
    for s in ids:
        u = uuid.UUID(s)
        assert u.version == 4 and u.variant == uuid.RFC_4122 and str(u) == s
    assert {s[19] for s in ids} == set("89ab")  # the variant keeps its two random bits


def test_pooled_uuids_are_never_handed_out_twice_across_threads_or_a_fork() -> None:
    """A few ids come from a pool: four threads taking them at once, and a
    forked child (which inherits the pool's memory), never get the same one."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from minimlops.services.predict import uuid4_strings

    with ThreadPoolExecutor(4) as pool:
        parts = list(
            pool.map(lambda _: [i for _ in range(500) for i in uuid4_strings(3)], range(4))
        )
    ids = [i for part in parts for i in part]
    assert len(set(ids)) == len(ids) == 6000
    uuid4_strings(1)  # the pool holds ids now
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its first ids, to the parent
        os.write(write, "\n".join(uuid4_strings(1) + uuid4_strings(5)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as fh:
        childs = fh.read().split("\n")
    mine = uuid4_strings(6)
    assert len(childs) == 6 and not set(childs) & set(mine)


def test_explanation_attributions_point_the_right_way_and_add_up(fake_deps: Deps) -> None:
    from minimlops.services.explain import Explainer

    _ingest_and_train(fake_deps, "a.csv", passengers(1200, seed=6))
    registry = registry_of(fake_deps)
    model = registry.load_serving("1")
    woman = {
        "Pclass": 1,
        "Sex": "female",
        "Age": 30.0,
        "SibSp": 0,
        "Parch": 0,
        "Fare": 80.0,
        "Embarked": "C",
        "Name": None,
        "Cabin": None,
    }
    (result,) = Explainer(registry.load, fake_deps.project).explain("1", model, [woman])
    found = {a["input"]: a["attribution"] for a in result["attributions"]}
    assert found["Sex"] > 0 and found["Pclass"] > 0  # both raise her chances
    assert result["probability"] == pytest.approx(model.predict_proba([woman])[0])
    assert result["output_space"] == "log-odds"
    assert result["base_value"] + sum(found.values()) == pytest.approx(
        result["raw_output"], abs=1e-6
    )
    assert len(found) == 10  # the request's fields the model reads


def test_shadow_scoring_logs_the_challenger_without_changing_the_answer(fake_deps: Deps) -> None:
    assert _noise_challenger(fake_deps) == []  # version 2 is kept out, so it is shadowed
    registry = registry_of(fake_deps)
    plain, shadowed = (
        Predictor(registry, fake_deps.now, fake_deps.project),
        Predictor(registry, fake_deps.now, fake_deps.project, shadow=True),
    )
    for p in (plain, shadowed):
        p.refresh()
        p.refresh_shadow()
    person = {
        "Pclass": 2,
        "Sex": "male",
        "Age": 40.0,
        "SibSp": 0,
        "Parch": 0,
        "Fare": 13.0,
        "Embarked": "S",
    }
    (a,), (b,) = plain.predict([person]), shadowed.predict([person])
    assert a["model_version"] == b["model_version"] == "1" and a["probability"] == b["probability"]
    assert b["shadow_model_version"] == "2" and 0 <= b["shadow_probability"] <= 1
    assert "shadow_model_version" not in a


def test_schedule_and_person_triggers_are_recorded_with_their_reason(fake_deps: Deps) -> None:
    from datetime import timedelta

    from minimlops.services import monitor

    _ingest_and_train(fake_deps, "a.csv", passengers(400, seed=2))
    registry = registry_of(fake_deps)
    cfg = monitor.MonitorConfig(retrain_every=3600)
    fresh = monitor.check(fake_deps, registry, cfg)
    assert fresh.events == []  # the model is fresh
    assert "schedule: a model was trained in the last 3600 s" in fresh.quiet
    later = Deps(**{**fake_deps.__dict__, "now": lambda: fake_deps.now() + timedelta(hours=2)})
    (event,) = monitor.check(later, registry, cfg).events
    assert event.reason.startswith("schedule")
    admin.request_training(fake_deps, "a person wants one")
    kinds = [(t["kind"], t["reason"]) for t in monitor.triggers(fake_deps)]
    assert ("person", "requested by a person: a person wants one") in kinds
    assert any(k == "schedule" for k, _ in kinds) and any(k == "new_data" for k, _ in kinds)


def test_a_decision_against_a_champion_replaced_during_training_does_not_stand(
    fake_deps: Deps,
) -> None:
    """Two trainings at once, both starting with no champion: the one finishing
    second must not replace the first one's promotion on a stale comparison."""
    import dataclasses

    from minimlops.services.deps import run_here

    def racing(fn, *args, **kwargs):  # another delivery trains and promotes meanwhile
        messagebus.handle(RetrainRequested(reason="the other delivery"), fake_deps)
        return run_here(fn, *args, **kwargs)

    (done,) = land(fake_deps, "a.csv", _csv(passengers(500, seed=1)))
    slow = dataclasses.replace(fake_deps, compute=racing)
    assert messagebus.handle(done, slow) == []  # not promoted
    registry = registry_of(fake_deps)
    assert registry.champion()[0]["version"] == "1"
    late = registry.metadata("2")
    assert late["decision"]["promote"] and late["champion_compared"]["version"] is None


def test_the_registry_reads_each_versions_metadata_once_until_it_changes() -> None:
    """The dashboard polls /status, /models and /events; on Cloud Storage each
    metadata read is a request, so unchanged versions are not read again."""
    import json

    from minimlops.services.registry import ModelRegistry
    from tests.fakes import InMemoryObjectStore

    class CountingStore(InMemoryObjectStore):
        reads = 0

        def read_bytes(self, bucket: str, name: str) -> bytes:
            CountingStore.reads += 1
            return super().read_bytes(bucket, name)

    store = CountingStore()
    registry = ModelRegistry(store, "models-bucket", "titanic")
    for v in ("1", "2"):
        store.write_bytes(
            "models-bucket",
            f"models/titanic/{v}/metadata.json",
            json.dumps({"version": v, "algorithm": "a"}).encode(),
        )
    assert [m["version"] for m in registry.versions()] == ["1", "2"] and store.reads == 2
    registry.versions()
    assert store.reads == 2, "unchanged versions are not read again"
    store.write_bytes(
        "models-bucket",
        "models/titanic/2/metadata.json",
        json.dumps({"version": "2", "algorithm": "b"}).encode(),
    )
    assert registry.versions()[1]["algorithm"] == "b" and store.reads == 3


def test_drift_reads_the_training_rows_once_per_champion(fake_deps: Deps) -> None:
    """The dashboard asks for drift every 30 s: the champion's TRAIN rows are
    scanned once, and again only when another version becomes champion."""
    from minimlops.services import monitor

    scans = []
    warehouse = fake_deps.warehouse
    latest = warehouse.latest_rows
    warehouse.latest_rows = lambda table, **kw: scans.append(table) or latest(table, **kw)  # type: ignore[method-assign]
    _ingest_and_train(fake_deps, "a.csv", passengers(600, seed=1))
    registry, cfg = registry_of(fake_deps), monitor.MonitorConfig(drift_min_rows=10)
    predictor = Predictor(registry, fake_deps.now, fake_deps.project)
    predictor.refresh()
    warehouse.append(
        "predictions_data",
        pa.Table.from_pylist(predictor.predict(passengers(50, seed=9).to_pylist())),
    )
    scans.clear()
    first = monitor.drift(fake_deps, registry, cfg)
    again = monitor.drift(fake_deps, registry, cfg)
    assert first == again and first["reference_rows"] > 0 and len(scans) == 1
    _ingest_and_train(fake_deps, "b.csv", passengers(900, seed=2))  # more data, a new champion?
    champion = registry.champion()[0]["version"]
    scans.clear()
    third = monitor.drift(fake_deps, registry, cfg)
    assert third["champion"] == champion
    assert len(scans) == (1 if champion != "1" else 0)


def test_a_drop_retrains_when_the_version_of_these_rows_was_kept_out(fake_deps: Deps) -> None:
    """The rows have a version, but not the champion (the gate kept it out):
    labels since then may change the verdict, so a drop asks for a training;
    only a champion trained on the rows as they are is not trained again."""
    from minimlops.services import monitor

    assert _noise_challenger(fake_deps) == []  # version 2 learned the current rows, kept out
    registry = registry_of(fake_deps)
    predictor = Predictor(registry, fake_deps.now, fake_deps.project)
    predictor.refresh()
    logged = predictor.predict(passengers(60, seed=9, start_id=100_001).to_pylist())
    fake_deps.warehouse.append("predictions_data", pa.Table.from_pylist(logged))
    admin.feedback(fake_deps, [(r["uuid"], 1 - r["prediction"]) for r in logged])  # all wrong
    cfg = monitor.MonitorConfig(drift_min_rows=10_000, min_labels=30)
    checked = monitor.check(fake_deps, registry, cfg)
    (event,) = checked.events
    assert event.reason.startswith("live accuracy 0.000") and checked.not_retrained == []
