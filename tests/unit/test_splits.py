"""Splits a project declares, through ingestion and training: what a version
trains on, what it is measured on, and what it records; features that change
between versions; leakage warnings."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io

import numpy as np
import pyarrow as pa
import pytest

from minimlops.domain.events import RetrainRequested
from minimlops.domain.project import parse
from minimlops.ml import leakage
from minimlops.services import admin, messagebus
from minimlops.services.deps import Deps
from minimlops.services.train import project_split, registry_of
from tests.conftest import TEST_BUDGET_S, fake_deps_for
from tests.unit.test_ingest import land


def orders_project(split: dict | None = None, features: list[str] | None = None):
    """Orders of repeat customers over two years: the amount follows a trend in
    time and each customer's own level."""
    data = {
        "name": "orders",
        "key": "order_id",
        "target": "amount",
        "task": "regression",
        "columns": [
            {"name": "order_id", "type": "string", "required": True},
            {"name": "customer_id", "type": "string"},
            {"name": "order_date", "type": "date"},
            {"name": "items", "type": "integer"},
            {"name": "promo", "type": "float"},
            {"name": "flag", "type": "string", "allowed": ["TRAIN", "VALIDATION", "TEST"]},
            {"name": "amount", "type": "float", "required": True},
        ],
    }
    if split is not None:
        data["split"] = split
    if features is not None:
        data["features"] = features
    return parse(data)


def orders_csv(n: int = 900, seed: int = 3) -> bytes:
    rng = np.random.default_rng(seed)
    level = rng.normal(0, 3, 60)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["order_id", "customer_id", "order_date", "items", "promo", "flag", "amount"])
    start = dt.date(2024, 1, 1)
    for i in range(n):
        c = int(rng.integers(0, 60))
        day = start + dt.timedelta(days=int(i * 730 / n))
        items = int(rng.integers(1, 6))
        promo = float(rng.uniform(0, 1))
        amount = 10 + 2 * items + 4 * promo + level[c] + 0.01 * (day - start).days
        w.writerow(
            [
                f"o{i:05d}",
                f"c{c:03d}",
                day.isoformat() if i % 50 else "",  # a few rows without a date
                items,
                round(promo, 4),
                ("TRAIN", "TRAIN", "TRAIN", "VALIDATION", "TEST")[i % 5] if i % 7 else "",
                round(amount + float(rng.normal(0, 0.5)), 3),
            ]
        )
    return out.getvalue().encode()


def _land_and_train(deps: Deps) -> None:
    (done,) = land(deps, "orders.csv", orders_csv())
    messagebus.handle(done, deps)


def _train(project, **knobs) -> tuple[Deps, dict]:
    deps = fake_deps_for(project, cv_folds=3, **knobs)
    _land_and_train(deps)
    registry = registry_of(deps)
    (meta,) = [registry.metadata(v["version"]) for v in registry.versions()]
    return deps, meta


def test_a_time_split_trains_on_the_past_and_measures_on_later_rows() -> None:
    project = orders_project({"strategy": "time", "column": "order_date"})
    deps, meta = _train(project)
    split = meta["training"]["split"]
    assert split["strategy"] == "time" and split["column"] == "order_date"
    # TRAIN ends before VALIDATION begins, which ends before TEST begins
    assert split["train"]["to"] < split["validation_from"] <= split["validation"]["from"]
    assert split["validation"]["to"] < split["test_from"]
    # rows without a date are in TRAIN, said
    assert split["train"]["without_time"] > 0 and split["validation"]["without_time"] == 0
    rows = meta["training"]
    assert rows["test_rows"] > 0 and rows["validation_rows"] > 0
    assert abs(rows["train_rows"] / rows["rows"] - 0.70) < 0.05
    # cross-validation inside TRAIN goes forward in time too
    assert meta["selection"]["folds_by"] == "time"
    # the budget it had, and where it came from (the tests set one)
    assert meta["selection"]["budget_s"] == TEST_BUDGET_S
    assert meta["selection"]["budget_from"] == "set"
    # `models show` says each split's dates, as the evaluation page does
    import io

    from rich.console import Console

    from minimlops.entrypoints.cli.report import print_version

    out = io.StringIO()
    print_version(
        Console(file=out, width=120, color_system=None),
        admin.model_view(registry_of(deps), meta["version"]),
    )
    for name in ("train", "validation", "test"):
        assert f"{name.upper()}: {split[name]['from']} to {split[name]['to']}" in out.getvalue()


def test_declared_cut_off_dates_are_kept() -> None:
    project = orders_project(
        {
            "strategy": "time",
            "column": "order_date",
            "validation_from": "2025-06-01",
            "test_from": "2025-10-01",
        }
    )
    _, meta = _train(project)
    split = meta["training"]["split"]
    assert (split["validation_from"], split["test_from"]) == ("2025-06-01", "2025-10-01")
    assert split["validation"]["from"] >= "2025-06-01" and split["validation"]["to"] < "2025-10-01"


def test_a_group_split_keeps_each_customer_on_one_side() -> None:
    project = orders_project({"strategy": "group", "column": "customer_id"})
    deps, meta = _train(project)
    split = meta["training"]["split"]
    assert split["strategy"] == "group" and meta["selection"]["folds_by"] == "group"
    table = deps.warehouse.latest_rows("training_data", split=project_split(deps, "training_data"))
    sides: dict[str, set[str]] = {}
    for r in table.to_pylist():
        sides.setdefault(r["customer_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in sides.values())
    assert split["train"]["groups"] + split["validation"]["groups"] <= 60
    # the group is not a feature: a model cannot use an id it never saw
    assert "customer_id" not in project.features


def test_a_column_split_takes_each_rows_label() -> None:
    project = orders_project({"strategy": "column", "column": "flag"})
    _, meta = _train(project)
    rows = meta["training"]
    # 900 rows: labelled ones as labelled; the unlabelled seventh by the key's hash
    labelled = [
        ("TRAIN", "TRAIN", "TRAIN", "VALIDATION", "TEST")[i % 5] for i in range(900) if i % 7
    ]
    assert rows["validation_rows"] >= labelled.count("VALIDATION")
    assert rows["test_rows"] >= labelled.count("TEST")
    assert rows["train_rows"] >= labelled.count("TRAIN")
    assert "flag" not in orders_project({"strategy": "column", "column": "flag"}).features


def test_a_random_split_with_a_date_and_a_repeating_customer_warns_naming_them() -> None:
    _, meta = _train(orders_project(features=["customer_id", "order_date", "items", "promo"]))
    said = {(w["kind"], w["column"]) for w in meta["warnings"]}
    assert ("overlap", "customer_id") in said
    assert ("overlap", "order_date") in said


def test_a_challenger_with_new_features_is_judged_on_the_same_rows_and_promoted() -> None:
    weak = orders_project(features=["promo"])
    deps = fake_deps_for(weak, cv_folds=3)
    _land_and_train(deps)
    registry = registry_of(deps)
    first = registry.champion()[0]["version"]
    # importance is measured for the columns the model reads, not every input
    importance = registry.evaluation(first)["importance"]["columns"]
    assert [e["column"] for e in importance] == ["promo"]
    richer = dataclasses.replace(deps, project=orders_project(features=["promo", "items"]))
    # restarting `up` after editing the features asks for a version for them
    reason = admin.retrain_if_project_changed(richer, registry)
    assert reason and "features added: ['items']" in reason
    from minimlops.services import monitor

    assert ("project", reason) in [(t["kind"], t["reason"]) for t in monitor.triggers(richer)]
    messagebus.handle(RetrainRequested(reason=reason), richer)  # as the training worker does
    champion = registry.champion()[0]["version"]
    assert champion != first, registry.metadata(registry.versions()[-1]["version"])["decision"]
    meta = registry.metadata(champion)
    assert meta["project"]["features"] == ["promo", "items"]
    assert meta["champion_compared"]["version"] == first
    # the champion served a refit on TRAIN and VALIDATION; the gate scored its
    # TRAIN-only fit, which never saw the VALIDATION rows both were judged on
    old = registry.metadata(first)
    assert old["training"]["fitted_on"] == ["TRAIN", "VALIDATION"]
    assert registry.measured(first)[1] == old["measured"]["sha256"] != old["sha256"]
    # the next start has nothing to ask for
    assert admin.retrain_if_project_changed(richer, registry) is None


def test_encoders_learn_from_train_rows_only() -> None:
    """A category only VALIDATION has is unseen to the model: nothing of
    VALIDATION reaches the features' statistics."""
    from minimlops.ml.job import fit_and_score

    project = orders_project(features=["customer_id", "items"])
    rows = [
        {"order_id": f"o{i}", "customer_id": f"c{i % 5}", "items": i % 4, "amount": float(i % 4)}
        for i in range(200)
    ]
    valid = [
        {"order_id": f"v{i}", "customer_id": "only-in-validation", "items": 1, "amount": 1.0}
        for i in range(40)
    ]
    columns = list(project.column_names)
    schema = pa.schema(
        [
            (c, pa.string() if c in ("order_id", "customer_id", "flag") else pa.float64())
            for c in columns
        ]
    )

    def table(rs: list[dict]) -> pa.Table:
        return pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rs], schema=schema)

    from minimlops.ml import artifacts

    def categories(spec: dict) -> list:
        return next(
            c.get("categories") or [] for c in spec["columns"] if c["name"] == "customer_id"
        )

    # the fit whose figures the version reports never saw VALIDATION's values
    result = fit_and_score(
        table(rows), table(valid), table([])[:0], project, folds=3, seed=0, budget_s=5
    )
    measured = artifacts.from_bytes(
        result["measured_artifact"], artifacts.sha256(result["measured_artifact"]), {}
    )
    assert categories(measured.spec) == [f"c{i}" for i in range(5)]
    assert result["validation"]["rows"] == 40
    # the served refit learns from VALIDATION too, and says so
    assert "only-in-validation" in categories(result["serving"]["spec"])
    assert result["fitted_on"] == {"splits": ["TRAIN", "VALIDATION"], "rows": 240}
    alone = fit_and_score(
        table(rows), table(valid), table([])[:0], project, folds=3, seed=0, budget_s=5, refit=False
    )
    assert categories(alone["serving"]["spec"]) == [f"c{i}" for i in range(5)]
    assert alone["measured_artifact"] is None and alone["fitted_on"]["rows"] == 200


@pytest.mark.parametrize("shape", ["titanic", "wine", "diabetes", "churn"])
def test_no_leakage_warning_on_ordinary_tables(shape: str) -> None:
    from minimlops.domain.schema import split_for
    from tests import projects as shapes

    p = shapes.load(shape)
    t = shapes.rows(p, 3000, seed=1)
    where = np.array([split_for(k) for k in t.column(p.key).to_pylist()])
    assert (
        leakage.check(
            p, t.filter(pa.array(where == "TRAIN")), t.filter(pa.array(where == "VALIDATION"))
        )
        == []
    )


def test_a_column_written_after_the_outcome_and_an_id_are_named() -> None:
    p = parse(
        {
            "name": "churn-leak",
            "key": "id",
            "target": "churned",
            "task": "binary",
            "positive_class": True,
            "columns": [
                {"name": "id", "type": "integer", "required": True, "min": 0, "max": 100000},
                {"name": "email", "type": "string"},
                {"name": "refund_issued", "type": "boolean"},
                {"name": "days_to_cancel", "type": "float"},
                {"name": "tenure", "type": "float"},
                {"name": "churned", "type": "boolean", "required": True},
            ],
        }
    )
    rng = np.random.default_rng(0)
    n = 1000
    y = rng.random(n) < 0.3
    t = pa.table(
        {
            "id": np.arange(n),
            "email": [f"user{i}@example.com" for i in range(n)],
            "refund_issued": y.tolist(),
            "days_to_cancel": np.where(y, rng.uniform(0, 30, n), rng.uniform(100, 400, n)),
            "tenure": rng.uniform(0, 60, n),
            "churned": y.tolist(),
        }
    )
    said = {(w["kind"], w["column"]) for w in leakage.check(p, t, t.slice(0, 0))}
    assert said == {("id", "email"), ("proxy", "refund_issued"), ("proxy", "days_to_cancel")}


def test_a_challenger_without_a_derived_feature_the_champion_needs_is_judged_alone(
    tmp_path,
) -> None:
    """Removing a derived feature from the project: the champion cannot be
    scored (its code is gone), so the challenger is judged on its own, and
    the decision says why, instead of training failing on every file."""
    (tmp_path / "features.py").write_text(
        "def busy(row):\n    return None if row['items'] is None else row['items'] > 3\n"
    )

    def project(derived: bool):
        data = orders_project(features=["promo", "items"]).to_dict()
        data["features"] = ["promo", "items", *(["busy"] if derived else [])]
        if derived:
            data["derived"] = [{"name": "busy", "type": "boolean", "inputs": ["items"]}]
            data["derived_module"] = "features.py"
        return parse(data, str(tmp_path))

    with_it = project(True)
    deps = fake_deps_for(with_it, cv_folds=3)
    _land_and_train(deps)
    registry = registry_of(deps)
    from minimlops import projects

    without = project(False)
    later = dataclasses.replace(deps, project=without, derive=projects.derived_functions(without))
    registry = registry_of(later)
    messagebus.handle(RetrainRequested(reason="features changed"), later)
    newest = registry.metadata(registry.versions()[-1]["version"])
    assert "no longer declares" in newest["champion_compared"]["not_compared"]
    assert newest["decision"]["promote"], newest["decision"]
    assert "not compared" in newest["decision"]["reason"]


def test_after_a_change_of_split_the_old_champion_is_not_judged_on_rows_it_saw() -> None:
    deps, _ = _train(orders_project({"strategy": "time", "column": "order_date"}))
    grouped = dataclasses.replace(
        deps, project=orders_project({"strategy": "group", "column": "customer_id"})
    )
    registry = registry_of(grouped)
    messagebus.handle(RetrainRequested(reason="split changed"), grouped)
    newest = registry.metadata(registry.versions()[-1]["version"])
    assert "the split changed since version 1" in newest["champion_compared"]["not_compared"]
    assert newest["champion_compared"]["evaluation"] is None
    assert newest["decision"]["promote"] and "not compared" in newest["decision"]["reason"]


def test_when_older_rows_land_the_champion_is_not_judged_on_rows_it_learned_from() -> None:
    """A time split by fractions: a backfill of older rows moves VALIDATION's
    start earlier, onto rows the champion trained on; it is not compared."""
    project = orders_project({"strategy": "time", "column": "order_date"})
    deps = fake_deps_for(project, cv_folds=3)
    header, *lines = orders_csv().decode().splitlines()
    newer, older = lines[450:], lines[:450]
    for name, part in (("newer.csv", newer), ("older.csv", older)):
        (done,) = land(deps, name, "\n".join([header, *part, ""]).encode())
        messagebus.handle(done, deps)
    registry = registry_of(deps)
    first, second = (registry.metadata(v["version"]) for v in registry.versions())
    assert (
        second["training"]["split"]["validation_from"]
        < first["training"]["split"]["validation_from"]
    )
    assert "its fit learned from rows in between" in second["champion_compared"]["not_compared"]


def _csv_rows(lines: list[str], header: str) -> list[dict]:
    """Rows of the orders file as typed request rows (what the model reads)."""
    out = []
    for r in csv.DictReader([header, *lines]):
        out.append(
            {
                "order_id": r["order_id"],
                "customer_id": r["customer_id"] or None,
                "order_date": dt.date.fromisoformat(r["order_date"]) if r["order_date"] else None,
                "items": int(r["items"]),
                "promo": float(r["promo"]),
                "flag": r["flag"] or None,
                "amount": float(r["amount"]),
            }
        )
    return out


def _rmse(model, rows: list[dict]) -> float:
    got = np.asarray(model.output([{k: v for k, v in r.items() if k != "amount"} for r in rows]))
    return float(np.sqrt(np.mean((got.ravel() - np.array([r["amount"] for r in rows])) ** 2)))


def test_by_time_the_gate_scores_the_champion_as_it_serves() -> None:
    """Newer rows land: every row of the new VALIDATION is after what the
    champion's served fit (TRAIN and VALIDATION) learned from, so that fit is
    what the challenger must beat, not its older TRAIN-only fit, which never
    served and, on trending data, looks worse than what serves."""
    project = orders_project({"strategy": "time", "column": "order_date"})
    deps = fake_deps_for(project, cv_folds=3)
    header, *lines = orders_csv().decode().splitlines()
    for name, part in (("older.csv", lines[:600]), ("newer.csv", lines[600:])):
        (done,) = land(deps, name, "\n".join([header, *part, ""]).encode())
        messagebus.handle(done, deps)
    registry = registry_of(deps)
    first, second = (registry.metadata(v["version"]) for v in registry.versions())
    assert first["training"]["fitted_on"] == ["TRAIN", "VALIDATION"]
    assert first["training"]["split"]["test_from"] <= second["training"]["split"]["validation_from"]
    compared = second["champion_compared"]
    assert compared["fit"] == "served" and "not_compared" not in compared
    lo, hi = (second["training"]["split"][k] for k in ("validation_from", "test_from"))
    valid = [
        r
        for r in _csv_rows(lines, header)
        if r["order_date"] and lo <= r["order_date"].isoformat() < hi
    ]
    assert compared["evaluation"]["rows"] == len(valid)
    served = registry.load(first["version"])
    assert compared["evaluation"]["rmse"] == pytest.approx(_rmse(served, valid), rel=1e-6)


def test_when_older_rows_land_the_champion_is_compared_on_the_rows_after_its_fit() -> None:
    """A backfill moves VALIDATION's start onto rows the champion learned from:
    the two are compared on the VALIDATION rows dated after them, said in the
    decision, not on every row and not skipped."""
    project = orders_project({"strategy": "time", "column": "order_date"})
    deps = fake_deps_for(project, cv_folds=3)
    header, *lines = orders_csv().decode().splitlines()
    for name, part in (("newer.csv", lines[300:]), ("older.csv", lines[:300])):
        (done,) = land(deps, name, "\n".join([header, *part, ""]).encode())
        messagebus.handle(done, deps)
    registry = registry_of(deps)
    first, second = (registry.metadata(v["version"]) for v in registry.versions())
    since = first["training"]["split"]["validation_from"]
    lo, hi = (second["training"]["split"][k] for k in ("validation_from", "test_from"))
    assert lo < since < hi
    after = [
        r
        for r in _csv_rows(lines, header)
        if r["order_date"] and since <= r["order_date"].isoformat() < hi
    ]
    assert len(after) >= 20
    compared = second["champion_compared"]
    assert compared["fit"] == "measured" and "not_compared" not in compared
    assert compared["evaluation"]["rows"] == compared["challenger"]["rows"] == len(after)
    assert (
        f"compared on the {len(after)} evaluation rows dated from {since} on"
        in (second["decision"]["reason"])
    )
    measured = registry.load(first["version"]) if not first.get("measured") else None
    if measured is None:  # the TRAIN-only fit the gate scored
        from minimlops.ml import artifacts

        blob, digest = registry.measured(first["version"])
        measured = artifacts.from_bytes(blob, digest)
    assert compared["evaluation"]["rmse"] == pytest.approx(_rmse(measured, after), rel=1e-6)


def test_by_time_labelled_predictions_dated_before_validation_are_not_evaluation_rows(
    caplog,
) -> None:
    """A labelled prediction of a row dated in TRAIN's window may be a row the
    challenger learned from: the figures leave it out. One whose row landed is
    that row (learned from, scored as VALIDATION, or held back as TEST): left
    out too, whatever its date; only labels of rows that never landed count."""
    from minimlops.services.predict import Predictor
    from minimlops.services.tables import arrow_schema

    project = orders_project({"strategy": "time", "column": "order_date"})
    deps, first = _train(project)
    header, *lines = orders_csv().decode().splitlines()
    rows = [r for r in _csv_rows(lines, header) if r["order_date"]]
    # TRAIN's dates and the newest (TEST's), under keys that never landed; and
    # 20 of the newest as they landed (their own keys)
    unseen = [{**r, "order_id": f"x{r['order_id']}"} for r in rows[:30] + rows[-40:]]
    sent = unseen + rows[-20:]
    predictor = Predictor(registry_of(deps), deps.now, project)
    predictor.refresh()
    logged = predictor.predict([{k: v for k, v in r.items() if k != "amount"} for r in sent])
    deps.warehouse.append(
        deps.names.predictions_table,
        pa.Table.from_pylist(logged, schema=arrow_schema("predictions_data", project)),
    )
    admin.feedback(deps, [(p["uuid"], r["amount"]) for p, r in zip(logged, sent, strict=True)])
    with caplog.at_level("INFO", logger="minimlops"):
        messagebus.handle(RetrainRequested(reason="labels came"), deps)
    registry = registry_of(deps)
    second = registry.metadata(registry.versions()[-1]["version"])
    assert second["metrics"]["evaluation_rows"]["feedback"] == 40
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "20 of 90 labelled predictions are left out: their rows landed" in said
    assert "30 of 70 labelled predictions are left out: dated before VALIDATION's start" in said


def test_a_versions_test_figure_is_the_served_model_on_the_rows_after_validation() -> None:
    """By time, TEST is the newest rows: the model that serves (refitted on
    TRAIN and VALIDATION) never learned from them; its figure there is what it
    does on the rows that come after."""
    project = orders_project({"strategy": "time", "column": "order_date"})
    deps, meta = _train(project)
    header, *lines = orders_csv().decode().splitlines()
    since = meta["training"]["split"]["test_from"]
    after = [
        r
        for r in _csv_rows(lines, header)
        if r["order_date"] and r["order_date"].isoformat() >= since
    ]
    test = meta["metrics"]["test"]
    assert test["rows"] == meta["training"]["test_rows"] == len(after)
    served = registry_of(deps).load(meta["version"])
    assert test["rmse"] == pytest.approx(_rmse(served, after), rel=1e-6)
    listed = admin.list_models(registry_of(deps))["versions"][0]
    assert listed["test"] == test  # what the pages and `models show` read
