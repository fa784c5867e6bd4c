"""Attributions add up: base value plus attributions is the model's raw
output (log-odds, class score, value), for every candidate family, every
task and an ensemble; and features add up to the input columns."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from minimlops import projects
from minimlops.ml import attributions, features, outputs
from minimlops.ml.candidates import candidates, lightgbm
from minimlops.ml.ensemble import Ensemble
from minimlops.ml.model import TrainedModel
from tests.projects import rows as rows_of

TASKS = ("titanic", "wine", "diabetes")  # binary, multiclass, regression


class Fitted:
    """A project's generated rows, their features, and one model per family."""

    def __init__(self, name: str) -> None:
        self.project = p = projects.load(name)
        self.derive = projects.derived_functions(p)
        self.rows = rows_of(p, 500, seed=3).to_pylist()
        self.spec = features.fit_spec(self.rows, p, self.derive)
        self.X = features.FeatureSet(self.spec, self.derive).matrix(self.rows)
        self.y = outputs.labels(p, [r[p.target] for r in self.rows])
        if p.task != "regression":
            self.spec["fitted_classes"] = [int(c) for c in np.unique(self.y)]
        self.estimators: dict[str, Any] = {}
        weights = [None, "balanced"] if p.task == "binary" else [None]
        for cw in weights:
            suffix = "_balanced" if cw else ""
            for c in candidates(p.task, seed=0, n_rows=len(self.y), class_weight=cw):
                if (
                    c.name in ("ridge_regression", "logistic_regression", "random_forest")
                    or c.name == "random_forest_deep"
                    and cw is None
                ):
                    est = c.make()
                elif c.name == "lightgbm_small":
                    est = lightgbm(
                        p.task,
                        c.params,
                        seed=0,
                        n_rows=len(self.y),
                        n_estimators=60,
                        class_weight=cw,
                    )
                else:
                    continue
                self.estimators[c.name + suffix] = est.fit(self.X, self.y)

    def model(self, estimator: Any) -> TrainedModel:
        return TrainedModel(estimator, self.spec, "x", derive=self.derive)


@functools.cache
def fitted_for(name: str) -> Fitted:
    return Fitted(name)


@pytest.fixture(scope="module", params=TASKS)
def fitted(request: pytest.FixtureRequest) -> Fitted:
    return fitted_for(request.param)


def _link(task: str, raw: np.ndarray) -> np.ndarray:
    if task == "regression":
        return raw[:, 0]
    if task == "binary":
        return 1.0 / (1.0 + np.exp(-raw[:, 0]))
    e = np.exp(raw - raw.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _own(task: str, est: Any, X: np.ndarray) -> np.ndarray:
    """The estimator's own output, before calibration."""
    if task == "regression":
        return np.asarray(est.predict(X), dtype=np.float64)
    p = np.asarray(est.predict_proba(X), dtype=np.float64)
    return p[:, 1] if task == "binary" else p


def test_attributions_add_up_to_the_raw_output_of_every_family(fitted: Fitted) -> None:
    task = fitted.project.task
    assert {"logistic_regression", "ridge_regression"} & set(fitted.estimators)
    for name, est in fitted.estimators.items():
        found = attributions.Attributor(fitted.model(est)).explain(fitted.rows[:150])
        X = fitted.X[:150]
        raw = attributions.raw_output(est, X, task)
        assert found.space == attributions.SPACES[task]
        # local accuracy, at both levels: features and input columns
        np.testing.assert_allclose(found.base + found.by_feature.sum(axis=2), raw, atol=1e-6)
        np.testing.assert_allclose(found.base + found.by_input.sum(axis=2), raw, atol=1e-6)
        np.testing.assert_allclose(found.raw, raw, atol=1e-6, err_msg=name)
        # and the raw output is the model's: its link gives the model's output
        # (a forest's probability of exactly 0 or 1 is floored, as the ensemble does)
        expected = _own(task, est, X)
        exact = (expected > 1e-9) & (expected < 1 - 1e-9) if task != "regression" else ...
        np.testing.assert_allclose(
            _link(task, raw)[exact], expected[exact], atol=1e-9, rtol=1e-9, err_msg=name
        )
        assert np.ptp(found.base, axis=0).max() < 1e-9  # one base value for every row


def test_the_linear_models_attributions_are_coef_times_the_standardised_value() -> None:
    f = fitted_for("diabetes")
    est = f.estimators["ridge_regression"]
    scaler, ridge = est[0], est[-1]
    found = attributions.Attributor(f.model(est)).explain(f.rows[:5])
    want = ridge.coef_ * (f.X[:5] - scaler.mean_) / scaler.scale_
    slots = np.concatenate([found.by_feature], axis=2)[:, 0, :]
    groups = attributions.groups(f.spec)
    np.testing.assert_allclose(slots, [[w[a:b].sum() for _, _, a, b in groups] for w in want])
    # the base is the model at the training mean
    assert found.base[0, 0] == pytest.approx(float(est.predict(scaler.mean_[None, :])[0]))


def test_an_ensembles_attributions_add_up_and_follow_its_members(fitted: Fitted) -> None:
    """Regression: the weighted sum of the members' (the ensemble averages
    values). Classifiers: the members' in probability space, weighted as the
    ensemble averages probabilities, rescaled to the ensemble's log-odds
    (class scores): they add up exactly, and a one-member ensemble's are
    its member's (multiclass: a forest's, whose class scores are
    log-probabilities too)."""
    task = fitted.project.task
    names = [n for n in fitted.estimators if not n.endswith("_balanced")][:4]
    members = [fitted.estimators[n] for n in names]
    weights = [0.4, 0.3, 0.2, 0.1][: len(members)]
    ensemble = Ensemble(members, weights, names, task)
    rows, X = fitted.rows[:50], fitted.X[:50]
    found = attributions.Attributor(fitted.model(ensemble)).explain(rows)
    parts = [attributions.Attributor(fitted.model(m)).explain(rows) for m in members]
    raw = attributions.raw_output(ensemble, X, task)
    np.testing.assert_allclose(found.raw, raw, atol=1e-6)
    np.testing.assert_allclose(found.base + found.by_feature.sum(axis=2), raw, atol=1e-6)
    np.testing.assert_allclose(found.base + found.by_input.sum(axis=2), raw, atol=1e-6)
    np.testing.assert_allclose(_link(task, raw), _own(task, ensemble, X), atol=1e-9)
    if task == "regression":
        weighted = sum(w * p.by_input for w, p in zip(weights, parts, strict=True))
        np.testing.assert_allclose(found.by_input, weighted, atol=1e-9)
        assert found.method.startswith("weighted sum of its members'")
    else:
        assert found.method.startswith("its members' in probability space")
        # said once, of the ensemble (a forest member's name had said it again)
        assert found.method.count("rescaled") == 1, found.method
    for name, member, part in zip(names, members, parts, strict=True):
        if task == "multiclass" and not name.startswith("random_forest"):
            continue  # its class scores are logits; the ensemble's, log-probabilities
        alone = Ensemble([member], [1.0], ["one"], task)
        same = attributions.Attributor(fitted.model(alone)).explain(rows)
        # a forest's probability of exactly 0 or 1 has no log-odds: both are
        # floored (attributions.FLOOR), and the two paths round ~34 log-odds apart
        exact = np.ones(len(rows), dtype=bool)
        if task != "regression":
            p = np.asarray(member.predict_proba(X))
            exact = ((p > 0) & (p < 1)).all(axis=1)
        assert exact.sum() >= 0.8 * len(rows)
        np.testing.assert_allclose(same.by_feature[exact], part.by_feature[exact], atol=1e-6)


def test_features_sum_back_to_the_input_columns_a_person_typed() -> None:
    f = fitted_for("titanic")
    est = f.estimators["logistic_regression"]
    found = attributions.Attributor(f.model(est)).explain(f.rows[:20])
    # features: one-hot slots add up to one feature; derived ones name their inputs
    assert "Sex" in found.features and "Sex=male" not in found.features
    inputs = dict(zip(found.features, found.feature_inputs, strict=True))
    assert inputs["title"] == ("Name", "Sex", "Age") and inputs["Sex"] == ("Sex",)
    assert set(found.inputs) >= {"Pclass", "Sex", "Age", "SibSp", "Parch", "Fare", "Name"}
    # a derived feature of several inputs gives each an equal share
    at = {c: i for i, c in enumerate(found.inputs)}
    by = {c: i for i, c in enumerate(found.features)}
    reading_sibsp = [g for g, ins in inputs.items() if "SibSp" in ins]
    share = sum(found.by_feature[:, :, by[g]] / len(inputs[g]) for g in reading_sibsp)
    np.testing.assert_allclose(found.by_input[:, :, at["SibSp"]], share, atol=1e-12)
    np.testing.assert_allclose(found.by_input.sum(axis=2), found.by_feature.sum(axis=2), atol=1e-9)


def test_multiclass_attributions_are_per_class_and_the_shown_one_is_the_predicted_class() -> None:
    f = fitted_for("wine")
    est = f.estimators["lightgbm_small"]
    found = attributions.Attributor(f.model(est)).explain(f.rows[:30])
    assert found.raw.shape == (30, len(f.spec["fitted_classes"]))
    assert found.classes == list(f.spec["fitted_classes"])
    np.testing.assert_array_equal(found.shown(), np.argmax(est.predict_proba(f.X[:30]), axis=1))
    table = attributions.mean_abs(found)
    assert [e["mean_abs"] for e in table] == sorted((e["mean_abs"] for e in table), reverse=True)
    assert {e["column"] for e in table} == set(found.inputs)


def test_a_multiclass_ensembles_attributions_are_bounded_by_its_members() -> None:
    """A class's probability moves with every class's score. Its members'
    class-score attributions go through the softmax, whose Jacobian has no
    entry above 1/4: no input can move a class's probability by more than a
    quarter of its class-score attributions' absolute sum (weighted over the
    members). A secant per class (its own score's change) broke this where
    that change was ~0: attributions in the thousands, on this data."""
    f = fitted_for("wine")
    names = ["logistic_regression", "lightgbm_small"]
    members, weights = [f.estimators[n] for n in names], [0.6, 0.4]
    ensemble = Ensemble(members, weights, names, "multiclass")
    found = attributions.Attributor(f.model(ensemble)).explain(f.rows)
    parts = [attributions.Attributor(f.model(m)).explain(f.rows) for m in members]
    # each class's probability-space attributions: the log link's secant undone
    p, pb = np.exp(found.raw), np.exp(found.base)
    moved = np.abs(p - pb) > 1e-6
    secant = (found.raw - found.base)[moved] / (p - pb)[moved]
    in_probability = found.by_input[moved] / secant[:, None]
    bound = sum(
        w * np.abs(part.by_input).sum(axis=1) for w, part in zip(weights, parts, strict=True)
    )
    bound = np.broadcast_to(bound[:, None, :] / 4, found.by_input.shape)[moved]
    assert moved.sum() > 0.9 * moved.size
    assert (np.abs(in_probability) <= bound + 1e-9).all(), np.abs(in_probability / bound).max()
    np.testing.assert_allclose(
        found.raw, attributions.raw_output(ensemble, f.X, "multiclass"), atol=1e-6
    )


def test_a_dates_parts_add_up_to_the_date_and_are_said_as_such() -> None:
    """A date column becomes six features (its year, month, ..., days since
    1970): the explanation gives the date one attribution, their sum, named
    in a few words (the six names filled a line on the prediction page)."""
    import io

    import pyarrow.csv as pacsv

    from minimlops.services.explain import answers
    from tests.unit.test_splits import orders_csv, orders_project

    p = orders_project()
    derive = projects.derived_functions(p)
    rows = pacsv.read_csv(io.BytesIO(orders_csv())).to_pylist()
    spec = features.fit_spec(rows, p, derive)
    X = features.FeatureSet(spec, derive).matrix(rows)
    y = outputs.labels(p, [r[p.target] for r in rows])
    (ridge,) = (c for c in candidates("regression", 0, len(y)) if c.name == "ridge_regression")
    est = ridge.make().fit(X, y)
    found = attributions.Attributor(TrainedModel(est, spec, "x", derive=derive)).explain(rows[:5])
    parts = [i for i, ins in enumerate(found.feature_inputs) if ins == ("order_date",)]
    assert len(parts) == 6, found.features
    date = found.inputs.index("order_date")
    np.testing.assert_allclose(found.by_input[:, 0, date], found.by_feature[:, 0, parts].sum(-1))
    (answer, *_) = answers(found, est.predict(X[:5]), rows[:5], p)
    labels = {a["input"]: a["label"] for a in answer["attributions"]}
    assert labels["order_date"] == "order_date (via its date parts)", labels
    assert labels["items"] == "items"
