"""Model quality: boosted trees among the candidates, selection on the
project's primary metric within a budget, class weights for a rare class,
and the evaluation numbers stored with a version. On data of every task."""

from __future__ import annotations

import os

import numpy as np
import pytest

from minimlops import projects
from minimlops.ml import encoding, evaluation, export, metrics, outputs, selection, training
from minimlops.ml.candidates import BOOSTED, Candidate
from minimlops.ml.model import TrainedModel
from minimlops.ml.serving import OnnxModel
from tests import projects as shapes


def _interaction(task: str, n: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows where the target depends on a product of two columns: a linear
    model cannot see it, trees can."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    signal = X[:, 0] * X[:, 1] * 2 + np.sin(X[:, 2] * 2)
    if task == "regression":
        return X, signal * 10 + rng.normal(scale=0.5, size=n)
    if task == "binary":
        return X, (signal + rng.normal(scale=0.3, size=n) > 0).astype(np.int64)
    return X, np.digitize(signal + rng.normal(scale=0.3, size=n), [-1.0, 1.0]).astype(np.int64)


METRIC = {
    "binary": ("log_loss", "min"),
    "multiclass": ("log_loss", "min"),
    "regression": ("rmse", "min"),
}


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_boosted_trees_win_where_the_signal_is_an_interaction(task) -> None:
    X, y = _interaction(task)
    metric, direction = METRIC[task]
    k = 0 if task == "regression" else len(np.unique(y))
    chosen = selection.select(
        X,
        y,
        task=task,
        n_classes=k,
        metric=metric,
        direction=direction,
        folds=3,
        seed=0,
        budget_s=None,  # unset: every candidate that fits in BUDGET_MAX_S
        imbalance_threshold=0.05,
    )
    board = {e["name"]: e for e in chosen.leaderboard}
    assert set(board) >= {name for name, _ in BOOSTED}
    candidates = [e for e in chosen.leaderboard if e["family"] != "ensemble"]
    assert all(e["status"] == "scored" for e in candidates), board  # none skipped
    assert chosen.budget_s == selection.BUDGET_MAX_S and chosen.budget_from.startswith("unset")
    assert 0 < chosen.seconds < selection.BUDGET_MAX_S
    assert chosen.chosen.family == "boosted_trees", board
    linear = next(e for e in chosen.leaderboard if e["family"] == "linear")
    best = board[chosen.chosen.name]
    assert best["cv"][metric] < 0.8 * linear["cv"][metric]  # clearly, not by noise
    # one served: the best single candidate, or an ensemble that beats it
    served = [e for e in chosen.leaderboard if e.get("chosen")]
    assert len(served) == 1
    assert served[0] is best or served[0]["cv"][metric] < best["cv"][metric]
    # the best single candidate is the best scored on the primary metric
    scored = [
        e["cv"][metric]
        for e in chosen.leaderboard
        if e.get("status") == "scored" and e["family"] != "ensemble"
    ]
    assert best["cv"][metric] == min(scored)
    assert 1 <= chosen.rounds < 2000  # early stopping stopped


@pytest.mark.parametrize("name", shapes.NAMES)
def test_selection_uses_the_projects_primary_metric_and_serves_fast(name) -> None:
    """On every shape: the leaderboard ranks on the project's metric, the
    chosen model (whatever family) is served by ONNX within tolerance."""
    project = shapes.load(name)
    rows = shapes.rows(project, 600, seed=3).to_pylist()
    model = training.select_and_fit(
        rows, project, projects.derived_functions(project), folds=3, seed=0
    )
    sel = model.selection
    assert sel.metric == project.primary_metric and sel.direction == project.metric_direction
    sign = 1 if sel.direction == "min" else -1
    scored = [e for e in sel.leaderboard if e.get("status") == "scored"]
    best = min(scored, key=lambda e: sign * e["cv"][sel.metric])
    assert best["name"] == model.algorithm  # an ensemble serves only when it scores best
    assert [e["name"] for e in sel.leaderboard if e.get("chosen")] == [model.algorithm]
    served = OnnxModel(export.to_onnx(model), model.spec, model.algorithm, model.derive)
    assert export.parity(model, served, rows) <= export.TOLERANCE


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_lightgbm_is_served_by_onnx_within_tolerance_on_every_row(task) -> None:
    """The boosted trees through the fast path, forced (whatever selection
    would choose), on rows with missing values and categories."""
    name = {"binary": "churn", "multiclass": "wine", "regression": "diabetes"}[task]
    project = shapes.load(name)
    rows = shapes.rows(project, 800, seed=5).to_pylist()
    from minimlops.ml import features
    from minimlops.ml.candidates import lightgbm

    spec = features.fit_spec(iter(rows), project, {})
    fs = features.FeatureSet(spec, {})
    X, y = fs.matrix(rows), outputs.labels(project, [r[project.target] for r in rows])
    if task != "regression":
        spec["fitted_classes"] = sorted(int(c) for c in set(y))
    est = lightgbm(task, dict(BOOSTED[0][1]), seed=0, n_rows=len(y), n_estimators=150).fit(X, y)
    model = TrainedModel(est, spec, "lightgbm")
    served = OnnxModel(export.to_onnx(model), spec, "lightgbm")
    assert export.parity(model, served, rows) <= export.TOLERANCE
    one = rows[7]
    assert np.allclose(served.output([one]), model.output([one]), atol=export.TOLERANCE, rtol=1e-5)


def test_a_budget_that_runs_out_skips_the_later_candidates_and_says_so() -> None:
    X, y = _interaction("binary", n=800)
    chosen = selection.select(
        X,
        y,
        task="binary",
        n_classes=2,
        metric="log_loss",
        direction="min",
        folds=3,
        seed=0,
        budget_s=1e-9,
        imbalance_threshold=0.05,
    )
    first, *rest = chosen.leaderboard
    assert first["status"] == "scored" and first.get("chosen")
    assert rest and all(
        e["status"].startswith("skipped: ") and "training budget" in e["status"] for e in rest
    )
    assert chosen.budget_s == 1e-9 and chosen.budget_from.startswith("set")


def test_a_rare_class_tries_class_weights_and_records_the_decision() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 5))
    y = ((X[:, 0] + rng.normal(scale=0.5, size=3000)) > 2.0).astype(np.int64)  # ~3 % positive
    chosen = selection.select(
        X,
        y,
        task="binary",
        n_classes=2,
        metric="log_loss",
        direction="min",
        folds=3,
        seed=0,
        budget_s=600,
        imbalance_threshold=0.1,
    )
    w = chosen.class_weight
    assert w["weighted"] and w["minority_share"] < 0.1 and w["threshold"] == 0.1
    names = [e["name"] for e in chosen.leaderboard]
    assert "lightgbm_balanced" in names and "logistic_regression_balanced" in names
    assert w["chosen_weighted"] == chosen.chosen.name.endswith("_balanced")
    common = selection.select(
        X,
        (X[:, 0] > 0).astype(np.int64),
        task="binary",
        n_classes=2,
        metric="log_loss",
        direction="min",
        folds=3,
        seed=0,
        budget_s=600,
        imbalance_threshold=0.1,
    )
    assert not common.class_weight["weighted"]
    assert not any(e["name"].endswith("_balanced") for e in common.leaderboard)


def test_binary_evaluation_numbers_are_bounded_and_consistent() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    p = np.clip(y * 0.6 + rng.normal(0.2, 0.2, 5000), 0, 1)
    r = evaluation.evaluate("binary", y, p, ("No", "Yes"), seed=0)
    roc = r["roc"]["points"]
    assert len(roc) <= evaluation.CURVE_POINTS and roc[0] == [0.0, 0.0] and roc[-1] == [1.0, 1.0]
    assert all(a[0] <= b[0] for a, b in zip(roc, roc[1:], strict=False))
    assert len(r["precision_recall"]["points"]) <= evaluation.CURVE_POINTS
    assert sum(b["rows"] for b in r["reliability"]) == 5000
    matrix = r["confusion"]["matrix"]
    assert sum(map(sum, matrix)) == 5000 and r["confusion"]["labels"] == ["No", "Yes"]
    assert matrix[1][1] == int(np.sum((y == 1) & (p >= 0.5)))
    low, high = r["intervals"]["accuracy"]
    assert low <= metrics.metrics("binary", y, p)["accuracy"] <= high and high - low < 0.05


def test_multiclass_and_regression_evaluation_numbers() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 900)
    proba = np.full((900, 3), 0.1)
    proba[np.arange(900), y] = 0.8
    proba[:100] = [0.8, 0.1, 0.1]  # some wrong answers
    r = evaluation.evaluate("multiclass", y, proba, ("a", "b", "c"), seed=0)
    assert sum(map(sum, r["confusion"]["matrix"])) == 900
    recall = {c["class"]: c["recall"] for c in r["per_class"]}
    assert recall["a"] == 1.0 and recall["b"] < 1.0
    value = rng.normal(size=3000) * 10
    truth = value + rng.normal(scale=2.0, size=3000)
    g = evaluation.evaluate("regression", truth, value, None, seed=0)
    assert len(g["scatter"]["points"]) == evaluation.SCATTER_POINTS and g["scatter"]["rows"] == 3000
    assert (
        sum(g["errors"]["counts"]) == 3000
        and len(g["errors"]["edges"]) == evaluation.HISTOGRAM_BINS + 1
    )
    low, high = g["intervals"]["rmse"]
    assert low < 2.0 < high


def test_permutation_importance_ranks_the_column_the_model_uses_first() -> None:
    rows = [{"signal": float(i % 10), "noise": float((i * 7919) % 13)} for i in range(500)]
    y = np.array([r["signal"] for r in rows])

    def output(batch):
        return np.array([r["signal"] for r in batch], dtype=float)

    def score(out):
        return float(np.sqrt(np.mean((out - y) ** 2)))

    found = evaluation.permutation_importance(output, rows, ["noise", "signal"], score, "min", 0)
    assert [e["column"] for e in found] == ["signal", "noise"]
    assert found[0]["importance"] > 1.0 and found[1]["importance"] == 0.0


def _many_values_project():  # type: ignore[no-untyped-def]
    return projects.from_dict(
        {
            "name": "zips",
            "key": "id",
            "target": "bought",
            "task": "binary",
            "positive_class": 1,
            "columns": [
                {"name": "id", "type": "integer", "required": True, "min": 0, "max": 1_000_000},
                {"name": "bought", "type": "integer", "required": True, "allowed": [0, 1]},
                {"name": "zip", "type": "integer", "required": False, "kind": "categorical"},
                {"name": "x", "type": "float", "required": True},
            ],
        }
    )


def test_a_category_of_many_values_gets_its_train_frequency_not_a_column_per_value() -> None:
    """A 1,000-value category: no one-hot slots, its TRAIN frequency (and its
    target encoding: the next test);
    a value only VALIDATION has counts 0 (no leakage); the spec survives JSON
    (the serving spec is stored as JSON) and one row equals the batch."""
    import json

    from minimlops.ml import features

    project = _many_values_project()
    rng = np.random.default_rng(0)
    zips = rng.zipf(1.2, 4000) % 1000
    train = [
        {"id": i, "bought": int(z % 3 == 0), "zip": int(z), "x": float(i % 7)}
        for i, z in enumerate(zips)
    ]
    train[5]["zip"] = None
    spec = features.fit_spec(iter(train), project, {})
    fs = features.FeatureSet(spec, {})
    # no one-hot slots: its frequency, its target encoding, and x
    assert fs.names == ("zip_frequency", "zip_target", "x")
    at = fs.names.index("zip_frequency")
    counts = {z: int(np.sum(zips == z)) for z in set(zips.tolist())}
    X = fs.matrix(train)
    for i in (0, 1, 2, 100, 3999):
        assert X[i, at] == pytest.approx(counts[int(zips[i])] / 4000)  # of all TRAIN rows
    assert X[5, at] == 0.0
    validation_only = max(counts) + 1000  # a value TRAIN never had
    valid = [
        {"id": 9000, "zip": validation_only, "x": 1.0},
        {"id": 9001, "zip": int(zips[0]), "x": 2.0},
    ]
    assert fs.matrix(valid)[0, at] == 0.0 and fs.vector(valid[0])[at] == 0.0
    # nothing of VALIDATION is learned: fitting on TRAIN again gives the same spec
    assert features.fit_spec(iter(train), project, {}) == spec
    served = features.FeatureSet(json.loads(json.dumps(spec)), {})
    for i, row in enumerate(train[:200]):
        assert served.vector(row) == list(X[i])  # one row (JSON-read spec) = the batch
    for row in valid:
        assert served.vector(row) == list(fs.matrix([row])[0])


def _zips_of(task: str, classes=None):  # type: ignore[no-untyped-def]
    target = {"name": "outcome", "type": "integer", "required": True}
    extra: dict = {"positive_class": 1} if task == "binary" else {}
    if task != "regression":
        target["allowed"] = classes or [0, 1]
    return projects.from_dict(
        {
            "name": "zips",
            "key": "id",
            "target": "outcome",
            "task": task,
            **extra,
            "columns": [
                {"name": "id", "type": "integer", "required": True, "min": 0, "max": 10**9},
                target,
                {"name": "zip", "type": "integer", "required": False, "kind": "categorical"},
                {"name": "x", "type": "float", "required": True},
            ],
        }
    )


def test_a_category_of_many_values_is_target_encoded_out_of_fold() -> None:
    """A 1,000-value category whose value decides the label (noisily): served,
    a value's encoding is its TRAIN rows' smoothed share of positives (an
    unseen value: the overall share); in the training matrix each row's
    encoding comes from the other folds, so a value TRAIN has once gets the
    overall share there, never its own label. One row, many rows and the
    linear shortcut agree on the JSON-read spec."""
    import json

    from minimlops.ml import features

    project = _zips_of("binary")
    rng = np.random.default_rng(0)
    zips = rng.zipf(1.2, 4000) % 1000
    flip = rng.random(4000) < 0.1
    rows = [
        {"id": i, "outcome": int((z % 3 == 0) != f), "zip": int(z), "x": float(i % 7)}
        for i, (z, f) in enumerate(zip(zips, flip, strict=True))
    ]
    rows[5]["zip"] = None
    y = np.array([r["outcome"] for r in rows])
    spec = features.fit_spec(iter(rows), project, {})
    X, _, _, _ = training._matrix(spec, {}, project, lambda: iter([rows]), [len(rows)], 5, 0)
    assert features.target_encoded(spec) == ["zip"]
    served = features.FeatureSet(json.loads(json.dumps(spec)), {})
    at = served.names.index("zip_target")
    counts = {z: int(np.sum(zips == z)) for z in set(zips.tolist())}
    common = sorted(counts, key=lambda z: -counts[z])[:6]
    for z in common:  # hundreds of rows each: the encoding is their share
        share = float(np.mean(y[zips == z]))
        assert served.vector({"id": 0, "zip": z, "x": 0.0})[at] == pytest.approx(share, abs=0.02)
    prior = float(np.mean(y))
    assert served.vector({"id": 0, "zip": 123456, "x": 0.0})[at] == pytest.approx(prior)
    once = [i for i, z in enumerate(zips) if counts[int(z)] == 1 and i != 5]
    assert len(once) > 20
    for i in once:  # out of fold: the overall share of the rows its fold was fitted on
        assert abs(X[i, at] - prior) < 0.05 and abs(X[i, at] - y[i]) > 0.25
    # elsewhere, in and out of fold agree for values with many rows
    many = np.isin(zips, common)
    assert np.max(np.abs(X[many, at] - served.matrix(rows)[many, at])) < 0.06
    checks = [*rows[:200], {"id": 9, "zip": None, "x": 1.0}, {"id": 9, "zip": 123456, "x": 1.0}]
    weights = np.random.default_rng(1).normal(size=served.width)
    score = served.linear(weights.tolist(), 0.5)
    M = served.matrix(checks)
    for i, row in enumerate(checks):
        assert served.vector(row) == list(M[i])
        assert score(row) == pytest.approx(0.5 + float(M[i] @ weights))


def test_labels_of_pure_noise_look_like_noise_through_a_target_encoding() -> None:
    """An id-like column (a value per row) and labels that are coin flips:
    encoded in fold, each row's encoding would be its own label and every
    candidate would look nearly perfect; out of fold, selection's best
    cross-validated log loss is no better than knowing nothing."""
    project = _zips_of("binary")
    rng = np.random.default_rng(3)
    rows = [
        {"id": i, "outcome": int(rng.random() < 0.5), "zip": i * 7, "x": float(rng.normal())}
        for i in range(1500)
    ]
    model = training.select_and_fit(rows, project, {}, ensembles=False, budget_s=20)
    assert model.selection is not None
    p = np.mean([r["outcome"] for r in rows])
    knowing_nothing = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    best = min(
        e["cv"]["log_loss"] for e in model.selection.leaderboard if e.get("status") == "scored"
    )
    assert best > knowing_nothing - 0.01


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_a_target_encoding_per_task(task: str) -> None:
    """Multiclass: one encoding a class (``zip_target=<class>``), summing to 1;
    regression: the values' smoothed mean."""
    from minimlops.ml import features

    classes = [0, 1, 2] if task == "multiclass" else None
    project = _zips_of(task, classes)
    rng = np.random.default_rng(5)
    zips = rng.zipf(1.2, 3000) % 500
    rows = [
        {
            "id": i,
            "outcome": int(z % 3) if task == "multiclass" else float(z % 10),
            "zip": int(z),
            "x": 0.0,
        }
        for i, z in enumerate(zips)
    ]
    spec = features.fit_spec(iter(rows), project, {})
    training._matrix(spec, {}, project, lambda: iter([rows]), [len(rows)], 5, 0)
    fs = features.FeatureSet(spec, {})
    names = [n for n in fs.names if n.startswith("zip_target")]
    commonest = int(np.bincount(zips).argmax())
    got = [fs.vector({"id": 0, "zip": commonest, "x": 0.0})[fs.names.index(n)] for n in names]
    if task == "multiclass":
        assert names == ["zip_target=0", "zip_target=1", "zip_target=2"]
        assert sum(got) == pytest.approx(1.0) and got[commonest % 3] > 0.95
    else:
        assert names == ["zip_target"] and got[0] == pytest.approx(commonest % 10, abs=0.1)


def test_a_multiclass_target_encoding_with_classes_missing_from_train_or_a_fold() -> None:
    """Three classes declared: TRAIN with only two of them, then a class of a
    single row (so some fold's rows lack it): each class's share, 0 for a
    class the rows never had, and no error."""
    from minimlops.ml import features

    project = _zips_of("multiclass", [0, 1, 2])
    rng = np.random.default_rng(8)
    zips = rng.zipf(1.2, 1500) % 400
    two = [{"id": i, "outcome": int(z % 2), "zip": int(z), "x": 0.0} for i, z in enumerate(zips)]
    one = [*two[:-1], {**two[-1], "outcome": 2}]
    for rows in (two, one):
        spec = features.fit_spec(iter(rows), project, {})
        X, _, _, _ = training._matrix(
            spec, {}, project, lambda r=rows: iter([r]), [len(rows)], 5, 0
        )
        fs = features.FeatureSet(spec, {})
        slots = [fs.names.index(f"zip_target={c}") for c in (0, 1, 2)]
        np.testing.assert_allclose(X[:, slots].sum(axis=1), 1.0)
        commonest = int(np.bincount(zips).argmax())
        got = np.array(fs.vector({"id": 0, "zip": commonest, "x": 0.0}))[slots]
        assert got.sum() == pytest.approx(1.0) and got[commonest % 2] > 0.9
        if rows is two:
            assert np.all(X[:, slots[2]] == 0.0) and got[2] == 0.0


def test_a_target_encoding_keeps_the_commonest_values_and_a_refit_keeps_the_layout() -> None:
    """Past ``encoding.KEPT`` values, the rarer ones share one encoding, which
    an unseen value gets too; a refit on rows with few values still encodes
    the column as selection's spec did."""
    from minimlops.ml import features

    project = _zips_of("binary")
    rng = np.random.default_rng(4)
    n = 3 * encoding.KEPT
    rows = [
        {"id": i, "outcome": int(rng.random() < 0.3), "zip": int(z), "x": 0.0}
        for i, z in enumerate(rng.integers(0, 2 * encoding.KEPT, n))
    ]
    spec = features.fit_spec(iter(rows), project, {})
    training._matrix(spec, {}, project, lambda: iter([rows]), [n], 3, 0)
    te = next(c for c in spec["columns"] if c["name"] == "zip")["target_encoding"]
    assert len(te["values"]) == encoding.KEPT
    fs = features.FeatureSet(spec, {})
    unseen = fs.vector({"id": 0, "zip": -5, "x": 0.0})[fs.names.index("zip_target")]
    assert unseen == te["rest"][0] and 0.2 < unseen < 0.4
    few = [{**r, "zip": r["zip"] % 10} for r in rows[:500]]
    assert features.fit_spec(iter(few), project, {})["columns"][0].get("one_hot", True)
    again = features.fit_spec(iter(few), project, {}, like=spec)
    assert features.feature_names(again) == features.feature_names(spec)


def test_in_time_order_a_target_encoding_reads_only_older_rows() -> None:
    """With a time split, a row's own encoding is fitted on the rows before
    its block (a value whose label grows with time reads lower than its own
    block's); the oldest block, with nothing before it, gets the labels' mean."""
    from minimlops.ml import features

    project = _zips_of("regression")
    rows = [{"id": i, "outcome": float(i), "zip": i % 60, "x": 0.0} for i in range(600)]
    spec = features.fit_spec(iter(rows), project, {})
    y = np.arange(600, dtype=float)
    folds = selection.draw_folds("regression", y, 5, 0, order=y)
    values = {"zip": [r["zip"] for r in rows]}
    own = encoding.fit_target_encodings(spec, values, y, folds)["zip"][:, 0]
    scored = np.concatenate([s for _, s in folds])
    for fit_rows, score_rows in folds:  # between the older rows' labels, under its own
        assert np.all(own[score_rows] < y[score_rows].min())
        assert np.all(own[score_rows] >= y[fit_rows].min())
    oldest = np.setdiff1d(np.arange(600), scored)
    assert len(oldest) and np.all(own[oldest] == pytest.approx(y.mean()))


def test_a_calibration_is_kept_only_when_it_lowers_validation_log_loss() -> None:
    """Balanced class weights make a rare class's probabilities too high:
    Platt scaling on the out-of-fold outputs brings them back and is kept;
    a well-calibrated logistic regression gets none. A kept calibration is
    in the spec, and the ONNX form applies it equally (one row and many)."""
    from minimlops.ml import calibration
    from minimlops.ml.candidates import candidates

    rng = np.random.default_rng(4)
    X = rng.normal(size=(6000, 4))
    y = ((X[:, 0] + rng.normal(scale=0.8, size=6000)) > 2.2).astype(np.int64)  # ~4 %
    weighted = next(
        c for c in candidates("binary", 0, 6000, class_weight="balanced") if c.family == "linear"
    )
    train, valid = slice(0, 4000), slice(4000, None)
    est = weighted.make().fit(X[train], y[train])
    from sklearn.model_selection import cross_val_predict

    oof = cross_val_predict(weighted.make(), X[train], y[train], cv=3, method="predict_proba")[:, 1]
    out = est.predict_proba(X[valid])[:, 1]
    kept = calibration.decide("binary", oof, y[train], y[valid], out)
    assert kept["kept"] and kept["params"]["method"] == "platt"
    assert (
        kept["validation_log_loss_after"] < kept["validation_log_loss_before"] - calibration.MARGIN
    )
    plain = next(c for c in candidates("binary", 0, 6000) if c.family == "linear")
    oof = cross_val_predict(plain.make(), X[train], y[train], cv=3, method="predict_proba")[:, 1]
    out = plain.make().fit(X[train], y[train]).predict_proba(X[valid])[:, 1]
    assert not calibration.decide("binary", oof, y[train], y[valid], out)["kept"]
    # through the pipeline: a calibration in the spec is applied by both forms
    project = shapes.load("churn")
    rows = shapes.rows(project, 700, seed=9).to_pylist()
    model = training.select_and_fit(rows, project, {}, folds=3, seed=0, budget_s=1e-9)
    model.spec["calibration"] = {"method": "platt", "a": 0.7, "b": -0.3}
    served = OnnxModel(export.to_onnx(model), model.spec, model.algorithm)
    assert export.parity(model, served, rows) <= export.TOLERANCE
    assert np.allclose(served.output(rows[:1]), model.output(rows[:1]), atol=export.TOLERANCE)
    one_by_one = [served.values([r])[0] for r in rows[:100]]  # Platt in plain Python
    by_numpy = np.concatenate([served.output([r]) for r in rows[:100]])
    assert np.allclose(one_by_one, by_numpy, rtol=1e-12, atol=1e-15)
    raw = dict(model.spec)
    raw.pop("calibration")
    assert not np.allclose(TrainedModel(model.estimator, raw, "x").output(rows), model.output(rows))


def test_platt_scaling_of_one_value_is_numpys_at_the_extremes() -> None:
    """One row's calibration (plain Python) gives what a batch's (numpy) does,
    where the log-odds are clipped and where exp would overflow a float."""

    for a, b in [(0.7, -0.3), (60.0, 0.0), (-60.0, 5.0), (1.0, 800.0)]:
        calibration = {"method": "platt", "a": a, "b": b}
        ps = [0.0, 1e-13, 0.2, 0.5, 0.999, 1.0]
        with np.errstate(over="ignore"):
            batch = outputs.calibrate(calibration, np.array(ps)).tolist()
        assert [outputs.platt_one(calibration, p) for p in ps] == pytest.approx(
            batch, rel=1e-12, abs=1e-300
        )


def test_multiclass_temperature_scaling_fits_an_overconfident_model() -> None:
    from minimlops.ml import calibration

    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 3000)
    logits = rng.normal(size=(3000, 3))
    logits[np.arange(3000), y] += 1.0
    honest = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    sharp = np.exp(3 * logits) / np.exp(3 * logits).sum(axis=1, keepdims=True)  # overconfident
    found = calibration.decide("multiclass", sharp[:2000], y[:2000], y[2000:], sharp[2000:])
    assert found["kept"] and 2.0 < found["params"]["t"] < 4.0
    assert not calibration.decide("multiclass", honest[:2000], y[:2000], y[2000:], honest[2000:])[
        "kept"
    ]


def test_a_calibration_never_sharpens_an_underconfident_model() -> None:
    """Out-of-fold outputs three times too cautious (a regularised model on
    rows it separates well): no temperature below 1 and no Platt slope above
    1 is fitted, so nothing is kept, however much VALIDATION would like it.
    A cautious binary model whose base rate is off keeps the shift alone."""
    from minimlops.ml import calibration

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 3000)
    logits = rng.normal(size=(3000, 3))
    logits[np.arange(3000), y] += 4.0
    timid = np.exp(logits / 3) / np.exp(logits / 3).sum(axis=1, keepdims=True)
    found = calibration.decide("multiclass", timid[:2000], y[:2000], y[2000:], timid[2000:])
    assert found["params"]["t"] == 1.0 and not found["kept"]  # at the bound: no softening

    yb = rng.integers(0, 2, 3000)
    z = rng.normal(size=3000) + np.where(yb == 1, 2.0, -2.0)
    cautious = 1 / (1 + np.exp(-z / 3))
    found = calibration.decide("binary", cautious[:2000], yb[:2000], yb[2000:], cautious[2000:])
    assert found["params"]["a"] == 1.0 and not found["kept"]
    # the same cautious scores, with a base rate far from theirs: the shift is kept
    rare = (rng.random(3000) < np.where(yb == 1, 0.3, 0.01)).astype(np.int64)
    found = calibration.decide("binary", cautious[:2000], rare[:2000], rare[2000:], cautious[2000:])
    assert found["kept"] and found["params"]["a"] == 1.0 and found["params"]["b"] < -1.0
    assert found["reason"].startswith("platt (a shift alone) lowers VALIDATION log loss")
    # scores that rank the rows backwards: never inverted by the calibration (the
    # served model is the one evaluated); at most shifted
    backwards = 1 - cautious
    found = calibration.decide("binary", backwards[:2000], yb[:2000], yb[2000:], backwards[2000:])
    assert found["params"]["a"] == 1.0, found
    # the shift alone is the intercept of the best fit at slope 1: on scores that say
    # nothing (all 0.5), the log-odds of the base rate
    base = rare[:2000].mean()
    shift = calibration._shift(np.zeros(2000), rare[:2000])
    assert shift == pytest.approx(np.log(base / (1 - base)), abs=1e-4)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_the_quick_metrics_equal_scikit_learns(task) -> None:
    """The bootstrap and permutation importance use numpy metrics: they must
    give the numbers the version reports (``metrics.metrics``)."""
    rng = np.random.default_rng(3)
    if task == "regression":
        y = rng.normal(size=500) * 5
        out = y + rng.normal(size=500)
    elif task == "binary":
        y = rng.integers(0, 2, 500)
        out = np.clip(0.3 * y + rng.random(500) * 0.7, 0.001, 0.999)
    else:
        y = rng.integers(0, 3, 500)
        out = rng.dirichlet(np.ones(3), 500)
        out[np.arange(500), y] += 0.5
        out /= out.sum(axis=1, keepdims=True)
    quick = evaluation.quick_metrics(task, y, out, 3)
    full = metrics.metrics(task, y, out, 3)
    assert set(quick) <= set(full) and len(quick) >= 3
    for name, value in quick.items():
        assert value == pytest.approx(full[name], rel=1e-9, abs=1e-12), name


def test_the_bootstraps_roc_auc_is_scikit_learns_on_every_draw() -> None:
    """The intervals' AUC comes from one sort and a count per row for each
    draw: on every draw (with ties in the scores) it is scikit-learn's AUC of
    the rows drawn."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 400)
    p = np.round(np.clip(0.3 * y + rng.random(400) * 0.7, 0, 1), 2)  # many ties
    auc = evaluation._auc_of_draws(y, p)
    for _ in range(20):
        at = rng.integers(0, 400, 400)
        assert auc(at) == pytest.approx(roc_auc_score(y[at], p[at]), rel=1e-12)


def _knobs(task: str, n_classes: int, **changed: object) -> dict[str, object]:
    """``select``'s settings: the task's metric, 5 folds, the budget unset."""
    metric, direction = METRIC[task]
    return {
        "task": task,
        "n_classes": n_classes,
        "metric": metric,
        "direction": direction,
        "folds": 5,
        "seed": 0,
        "budget_s": None,
        "imbalance_threshold": 0.05,
        **changed,
    }


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_forests_are_scored_out_of_bag_at_random_folds_and_cross_validated_in_time(task) -> None:
    """At random folds, a forest's figures are out-of-bag (one fit, not one per
    fold): still from trees that never saw the row, so on labels that are pure
    noise they are no better than chance, where the forest's fit on its own
    rows is near perfect. In time order, a bootstrap would mix the windows:
    the forests are cross-validated like every other candidate."""
    rng = np.random.default_rng(4)
    n = 600
    X = rng.normal(size=(n, 5))
    y = (
        rng.normal(size=n) * 10
        if task == "regression"
        else rng.integers(0, 2 if task == "binary" else 3, size=n)
    )
    metric = METRIC[task][0]
    k = 0 if task == "regression" else len(np.unique(y))
    common = _knobs(task, k, ensembles=False)
    chosen = selection.select(X, y, **common)
    forests = [e for e in chosen.leaderboard if e["family"] == "random_forest"]
    assert len(forests) == 2 and all(e["estimate"] == "out-of-bag" for e in forests)
    others = [e for e in chosen.leaderboard if e["family"] != "random_forest"]
    assert others and not any("estimate" in e for e in others)
    know_nothing = metrics.baseline(task, y, y, k)[metric]
    for e in forests:
        # no better than knowing nothing, give or take noise: honest, not in-sample
        assert e["cv"][metric] > 0.95 * know_nothing, (e, know_nothing)
        fitted = next(c for c in selection.candidates(task, 0, n) if c.name == e["name"])
        est = fitted.make().fit(X, y)
        own = selection.output_of(task, est, X, k)
        assert metrics.metrics(task, y, own, k)[metric] < 0.8 * know_nothing  # it memorises
    in_time = selection.select(X, y, order=np.arange(n, dtype=np.float64), **common)
    assert not any("estimate" in e for e in in_time.leaderboard)
    assert {e["name"] for e in in_time.leaderboard if e["family"] == "random_forest"} == {
        e["name"] for e in forests
    }


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_folds_fitted_two_at_a_time_score_as_one_at_a_time(task, monkeypatch) -> None:
    """On a small table with a second core, the boosted candidates' folds fit
    side by side: every candidate's figures and round count are the same as
    when the folds fit one after the other."""
    X, y = _interaction(task, n=500, seed=2)
    k = 0 if task == "regression" else len(np.unique(y))
    common = _knobs(task, k)
    if len(os.sched_getaffinity(0)) > 1:  # the boosted candidates on a small table
        assert all(
            selection._side_by_side(c, len(y)) == c.early_stopping
            for c in selection.candidates(task, 0, len(y))
        )
    # forced either way, whatever the machine's cores
    monkeypatch.setattr(selection, "_side_by_side", lambda cand, n_rows: cand.early_stopping)
    together = selection.select(X, y, **common)
    monkeypatch.setattr(selection, "_side_by_side", lambda cand, n_rows: False)
    alone = selection.select(X, y, **common)
    strip = [{k_: v for k_, v in e.items() if k_ != "seconds"} for e in together.leaderboard]
    assert strip == [{k_: v for k_, v in e.items() if k_ != "seconds"} for e in alone.leaderboard]
    assert together.chosen.name == alone.chosen.name and together.rounds == alone.rounds
    assert np.array_equal(together.oof, alone.oof)


def _by_hand(est, X: np.ndarray, n: int, task: str, n_classes: int) -> np.ndarray:
    """A fitted forest's out-of-bag outputs computed tree by tree: each row
    the mean of the trees whose bootstrap did not draw it."""
    total = np.zeros((n, 1 if task == "regression" else n_classes))
    seen = np.zeros(n)
    for tree, drawn in zip(est.estimators_, est.estimators_samples_, strict=True):
        left = np.setdiff1d(np.arange(n), drawn)
        Z = X[left].astype(np.float32)
        if task == "regression":
            total[left, 0] += tree.predict(Z)
        else:
            total[np.ix_(left, est.classes_.astype(int))] += tree.predict_proba(Z)
        seen[left] += 1
    out = total / seen[:, None]
    return out[:, 0] if task == "regression" else out[:, 1] if task == "binary" else out


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_out_of_bag_outputs_are_each_rows_mean_over_the_trees_that_did_not_draw_it(task) -> None:
    """Against the trees themselves, with the project's class columns: a
    class the rows lack (multiclass: 3 classes, none of class 1) keeps its
    column, at 0."""
    rng = np.random.default_rng(6)
    n = 300
    X = rng.normal(size=(n, 4))
    if task == "regression":
        y, k = X[:, 0] * 3 + rng.normal(size=n), 0
    elif task == "binary":
        y, k = (X[:, 0] + rng.normal(size=n) > 0).astype(np.int64), 2
    else:
        y, k = np.where(X[:, 0] + rng.normal(size=n) > 0, 2, 0).astype(np.int64), 3
    for cand in (c for c in selection.candidates(task, 0, n) if c.family == "random_forest"):
        got = selection._out_of_bag(cand, task, X, y, k, seed=5)
        assert got is not None
        est = cand.make().set_params(**cand.cv_params, random_state=5).fit(X, y)
        assert np.allclose(got, _by_hand(est, X, n, task, k), atol=1e-9)
        if task == "multiclass":
            assert got.shape == (n, 3) and np.all(got[:, 1] == 0)
            assert np.allclose(got.sum(axis=1), 1.0)


def test_forests_too_small_for_out_of_bag_and_grouped_folds_are_cross_validated(
    monkeypatch,
) -> None:
    """A forest whose trees leave some row drawn by every one of them (here
    a single tree) has no out-of-bag output for that row: its folds are used.
    Grouped folds: a bootstrap would mix the groups the folds keep apart."""
    X, y = _interaction("binary", n=400, seed=3)
    one_tree = [
        Candidate(c.name, c.family, c.params, c.make, cv_params={"n_estimators": 1})
        for c in selection.candidates("binary", 0, 400)
        if c.family == "random_forest"
    ]
    assert selection._out_of_bag(one_tree[0], "binary", X, y, 2, seed=0) is None
    monkeypatch.setattr(selection, "candidates", lambda *a, **k: one_tree)
    common = _knobs("binary", 2, folds=3, ensembles=False)
    alone = selection.select(X, y, **common)
    assert [e["status"] for e in alone.leaderboard] == ["scored", "scored"]
    assert not any("estimate" in e for e in alone.leaderboard)
    monkeypatch.undo()
    grouped = selection.select(X, y, groups=np.arange(400) % 40, **common)
    forests = [e for e in grouped.leaderboard if e["family"] == "random_forest"]
    assert len(forests) == 2 and not any("estimate" in e for e in forests)


@pytest.mark.parametrize(
    ("task", "metric", "sign", "repeats"),
    [
        ("binary", "log_loss", 1.0, 1),
        ("multiclass", "log_loss", 1.0, 3),
        ("regression", "rmse", 1.0, 1),
        ("regression", "r2", -1.0, 1),  # higher is better
    ],
)
def test_a_linear_model_within_one_standard_error_of_the_best_is_chosen(
    task: str, metric: str, sign: float, repeats: int
) -> None:
    """The one-standard-error rule: the best by cross-validation beats the
    linear model by less than the noise of the rows (its loss a row lower on
    average, by less than one paired standard error): the linear model is
    chosen, and the pass-over recorded; ahead by many standard errors, the
    best stays; a best that is linear, or trees within the noise, are left."""
    from minimlops.ml.candidates import candidates

    rng = np.random.default_rng(0)
    n, k = 400, 3
    pool = candidates(task, 0, n)[:3]  # the linear model, then two boosted trees
    if task == "regression":
        y = rng.normal(size=n)
        noise = rng.normal(size=n)
        linear = y + noise

        def scaled(s: np.ndarray) -> np.ndarray:  # each row's squared error times s
            return y + noise * np.sqrt(s)

    else:
        classes = 2 if task == "binary" else k
        y = rng.integers(0, classes, n)
        z = rng.normal(size=(n, classes)) + 1.5 * np.eye(classes)[y]
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        linear = p[:, 1] if task == "binary" else p

        def scaled(s: np.ndarray) -> np.ndarray:  # each row's log loss times s
            at = np.arange(n)
            true = p[at, y] ** s
            out = p * ((1 - true) / (1 - p[at, y]))[:, None]
            out[at, y] = true
            return out[:, 1] if task == "binary" else out

    # a hair better on average (rows of like loss in pairs, one's loss times
    # 0.8, the other's 1.18), the rows disagreeing; and far better
    base = selection._row_losses(task, metric, y, linear, 1, 0.5)
    assert base is not None
    factor = np.empty(n)
    factor[np.argsort(base)] = np.tile([0.8, 1.18], n // 2)
    hair = scaled(factor)
    far = scaled(np.full(n, 0.3))
    losses = {
        name: selection._row_losses(task, metric, y, out, 1, 0.5)
        for name, out in (("linear", linear), ("hair", hair), ("far", far))
    }
    gap = losses["linear"] - losses["hair"]
    assert 0 < gap.mean() < gap.std(ddof=1) / np.sqrt(n)  # the premise: within the noise
    gap = losses["linear"] - losses["far"]
    assert gap.mean() > 5 * gap.std(ddof=1) / np.sqrt(n)

    def repeated(out: np.ndarray) -> np.ndarray:  # each repetition's outputs, one after another
        return np.concatenate([out] * repeats)

    top = (0.0, 2)
    for third, kept in ((hair, 0), (far, 2)):
        outputs = {pool[0].name: repeated(linear), pool[2].name: repeated(third)}
        best, said = selection._simplest_within_one_se(
            top, pool, outputs, task, metric, y, repeats, 0.5, sign
        )
        assert best[1] == kept, (task, kept, said)
        if kept == 0:
            assert said["name"] == pool[2].name and 0 < said["gap"] <= said["se"], said
            figure = metrics.metrics(task, np.tile(y, repeats), repeated(linear), k)[metric]
            assert best[0] == pytest.approx(sign * figure)  # ranked as select() ranks
        else:
            assert said == {} and best == top
    # only a linear model is preferred: trees within the noise are not "simpler"
    outputs = {pool[1].name: linear, pool[2].name: hair}
    assert selection._simplest_within_one_se(top, pool, outputs, task, metric, y, 1, 0.5, sign) == (
        top,
        {},
    )
    # and a linear best stays itself
    assert selection._simplest_within_one_se(
        (0.0, 0), pool, {pool[0].name: linear}, task, metric, y, 1, 0.5, sign
    ) == ((0.0, 0), {})
    if task != "regression":  # accuracy's 0 or 1 a row: too coarse for the rule
        outputs = {pool[0].name: linear, pool[2].name: hair}
        assert selection._simplest_within_one_se(
            top, pool, outputs, task, "accuracy", y, 1, 0.5, -1.0
        ) == (top, {})
