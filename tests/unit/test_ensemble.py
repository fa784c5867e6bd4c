"""Ensembles: greedy selection over out-of-fold outputs, served through one
ONNX graph, stored without code of ours, chosen only when cross-fitting says so."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from minimlops import projects
from minimlops.domain.project import parse
from minimlops.ml import artifacts, ensemble, export, features
from minimlops.ml.candidates import candidates
from minimlops.ml.model import TrainedModel
from minimlops.ml.outputs import labels
from minimlops.ml.serving import OnnxModel
from tests import projects as shapes


def _members(p, rows):
    """A linear model, boosted trees and a forest fitted on the rows."""
    derive = projects.derived_functions(p)
    spec = features.fit_spec(iter(rows), p, derive)
    fs = features.FeatureSet(spec, derive)
    X, y = fs.matrix(rows), labels(p, [r[p.target] for r in rows])
    if p.task != "regression":
        spec["fitted_classes"] = [int(c) for c in np.unique(y)]
    pool = {c.name: c for c in candidates(p.task, 0, len(rows))}
    fitted = [
        pool[next(n for n in pool if pool[n].family == "linear")].make().fit(X, y),
        pool["lightgbm_small"].make().set_params(n_estimators=40).fit(X, y),
        pool["random_forest"].make().set_params(n_estimators=30).fit(X, y),
    ]
    return fitted, spec, derive


def _ensemble_of(p, rows):  # type: ignore[no-untyped-def]
    """An ensemble of the three members weighted 0.5 / 0.3 / 0.2, and its ONNX form."""
    members, spec, derive = _members(p, rows)
    model = TrainedModel(
        ensemble.Ensemble(members, [0.5, 0.3, 0.2], ["linear", "boosted", "forest"], p.task),
        spec,
        "ensemble",
        derive=derive,
    )
    return model, OnnxModel(export.to_onnx(model), model.spec, model.algorithm, derive)


@pytest.mark.parametrize("shape", shapes.NAMES)
def test_an_ensemble_is_served_through_one_onnx_graph_and_predicts_as_itself(shape) -> None:
    p = shapes.load(shape)
    rows = shapes.rows(p, 500, seed=2).to_pylist()
    model, served = _ensemble_of(p, rows[:400])
    held_out = rows[400:]
    assert export.parity(model, served, held_out) <= export.TOLERANCE
    # one row (the bound fast path) as a batch
    one = served.values(held_out[:1])[0]
    assert np.allclose(one, model.values(held_out[:1])[0], atol=1e-5, rtol=1e-5)
    # stored as its members: no class of ours is trusted on load
    blob = artifacts.to_bytes(model)
    back = artifacts.from_bytes(blob, artifacts.sha256(blob), model.derive)
    assert isinstance(back.estimator, ensemble.Ensemble)
    assert back.estimator.weights == [0.5, 0.3, 0.2]
    assert np.array_equal(back.output(held_out), model.output(held_out))


def test_members_combine_as_a_weighted_mean() -> None:
    p1, p2 = np.array([0.9, 0.2]), np.array([0.6, 0.05])
    assert np.allclose(ensemble.blend("binary", [p1, p2], [0.75, 0.25]), [0.825, 0.1625])
    three = ensemble.blend(
        "multiclass", [np.array([[0.7, 0.2, 0.1]]), np.array([[0.2, 0.2, 0.6]])], [0.5, 0.5]
    )
    assert three.sum() == pytest.approx(1.0) and np.argmax(three) == 0


def test_greedy_selection_blends_two_independent_views_and_not_a_useless_one() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(size=2000)
    y = truth + rng.normal(0, 0.1, 2000)
    a = truth + rng.normal(0, 1.0, 2000)  # two models with independent errors
    b = truth + rng.normal(0, 1.0, 2000)
    junk = 3 + rng.normal(size=2000)  # one that knows nothing
    choice = ensemble.choose("regression", "rmse", "min", y, [a, junk, b], 0, seed=0)
    assert choice is not None
    weight = dict(zip(choice.members, choice.weights, strict=True))
    assert weight[0] >= 0.35 and weight[2] >= 0.35 and weight.get(1, 0.0) <= 0.1
    assert sum(choice.weights) == pytest.approx(1.0)
    # averaging halves the error variance: the cross-fitted figure shows it
    assert choice.cross_fitted < 0.8 * choice.best_single
    # one model far better than the others: the ensemble is no better out of fold
    good = truth + rng.normal(0, 0.05, 2000)
    only = ensemble.choose("regression", "rmse", "min", y, [a, good, junk], 0, seed=0)
    assert only is not None and only.weights[only.members.index(1)] >= 0.8
    assert ensemble.choose("regression", "rmse", "min", y, [a], 0, seed=0) is None


def test_a_member_that_barely_moves_the_figure_is_not_served(monkeypatch) -> None:
    """Each member costs a served row its trees: one whose loss moves the
    blend's figure by at most ``MARGIN`` goes; the ones that matter stay."""
    rng = np.random.default_rng(2)
    truth = rng.normal(size=2000)
    y = truth + rng.normal(0, 0.1, 2000)
    e1, e2, e3 = rng.normal(size=(3, 2000))
    a = truth + e1
    near_a = truth + 1.1 * (0.9 * e1 + np.sqrt(1 - 0.9**2) * e2)  # mostly a's errors again
    c = truth + 1.2 * e3  # an independent view

    def figure(members: list[int], weights: list[float]) -> float:
        outs = [a, near_a, c]
        return ensemble.score(
            "regression",
            "rmse",
            y,
            ensemble.blend("regression", [outs[i] for i in members], weights),
            0,
        )

    with monkeypatch.context() as m:
        m.setattr(ensemble, "MEMBER_MARGIN", 0.0)  # every member that helps at all
        every, every_w = ensemble.greedy("regression", "rmse", "min", y, [a, near_a, c], 0)
    kept, kept_w = ensemble.greedy("regression", "rmse", "min", y, [a, near_a, c], 0)
    assert every == [0, 1, 2] and every_w[1] <= 0.08  # picked once or twice in 25 rounds
    assert kept == [0, 2] and sum(kept_w) == pytest.approx(1.0)
    assert figure(kept, kept_w) <= figure(every, every_w) * (1 + ensemble.MEMBER_MARGIN)
    # what selection serves: the two views that matter, cross-fitted the same way
    choice = ensemble.choose("regression", "rmse", "min", y, [a, near_a, c], 0, seed=0)
    assert choice is not None and choice.members == [0, 2]
    assert choice.cross_fitted < choice.best_single


def test_an_ensemble_of_one_member_is_said_on_the_leaderboard_not_served() -> None:
    """A linear rule that the linear model gets right: greedy selection keeps
    it alone, and the leaderboard's ensemble row says so (no figures of its own)."""
    from minimlops.ml import selection

    rng = np.random.default_rng(4)
    X = rng.normal(size=(600, 5))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + rng.normal(0, 0.05, 600)
    sel = selection.select(
        X,
        y,
        task="regression",
        n_classes=0,
        metric="rmse",
        direction="min",
        folds=3,
        seed=0,
        budget_s=None,
        imbalance_threshold=0.05,
    )
    assert not sel.ensemble and sel.chosen.family == "linear"
    row = sel.leaderboard[-1]
    assert row["name"] == "ensemble" and row["status"].startswith("not formed")
    assert sel.chosen.name in row["status"] and "cv" not in row and not row.get("chosen")


def _interaction(n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A linear effect in six columns plus a step in two: the linear model
    and the trees each see half of it."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8))
    z = 0.8 * X[:, :6].sum(axis=1) + 2.0 * (X[:, 6] > 0.5) * (X[:, 7] > 0)
    return X, z + rng.normal(0, 1.0, n)


def test_a_version_serves_an_ensemble_when_cross_fitting_says_it_is_better() -> None:
    """Recorded with its members and weights, on the leaderboard with its
    cross-fitted figures, refitted on TRAIN and VALIDATION, served by ONNX."""
    from minimlops.ml.job import fit_and_score

    names = [f"x{i}" for i in range(8)]
    p = parse(
        {
            "name": "blend",
            "key": "id",
            "target": "y",
            "task": "regression",
            "columns": [
                {"name": "id", "type": "string", "required": True},
                *({"name": n, "type": "float"} for n in names),
                {"name": "y", "type": "float", "required": True},
            ],
        }
    )
    X, y = _interaction(1800)
    table = pa.table(
        {"id": [f"r{i}" for i in range(len(y))], **dict(zip(names, X.T, strict=True)), "y": y}
    )
    train, valid = table.slice(0, 1500), table.slice(1500)
    result = fit_and_score(train, valid, valid.slice(0, 0), p, folds=5, seed=0, budget_s=60)
    assert result["algorithm"] == "ensemble"
    board = result["selection"]["leaderboard"]
    entry = board[-1]
    assert entry["name"] == "ensemble" and entry["chosen"] and entry["cross_fitted"]
    singles = [e["cv"]["rmse"] for e in board[:-1] if e.get("status") == "scored"]
    assert entry["cv"]["rmse"] < min(singles)
    assert not any(e.get("chosen") for e in board[:-1])
    members = result["selection"]["ensemble"]
    assert len(members) >= 2 and sum(m["weight"] for m in members) == pytest.approx(1.0, abs=1e-3)
    assert result["serving"]["runtime"] == "onnxruntime"
    assert result["fitted_on"]["rows"] == 1800
    served = artifacts.from_bytes(result["artifact"], artifacts.sha256(result["artifact"]), {})
    assert isinstance(served.estimator, ensemble.Ensemble)
    assert served.estimator.names == [m["name"] for m in members]


@pytest.mark.parametrize("shape", shapes.NAMES)
def test_a_large_batch_run_in_two_halves_answers_as_small_batches_do(shape, monkeypatch) -> None:
    """From SPLIT_FROM rows a batch is run in two halves side by side (two
    cores): every row gets the output it gets in a small batch, in order
    (within float32 rounding: a linear member's matrix product rounds by the
    batch's size), and the model's own within tolerance; batches from two
    threads at once too."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from minimlops.ml import serving

    helper = ThreadPoolExecutor(1)  # on any machine, one core too
    submitted: list[int] = []
    submit = helper.submit

    def counted(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        submitted.append(1)
        return submit(fn, *args, **kwargs)

    monkeypatch.setattr(helper, "submit", counted)
    monkeypatch.setattr(serving, "_helpers", [helper])

    p = shapes.load(shape)
    rows = shapes.rows(p, 400 + serving.SPLIT_FROM + 45, seed=4).to_pylist()
    model, served = _ensemble_of(p, rows[:400])
    batch = rows[400:]  # an odd count: halves of unequal length
    assert len(batch) >= serving.SPLIT_FROM and len(batch) % 2 == 1
    whole = served.output(batch)
    small = np.concatenate([served.output(batch[i : i + 100]) for i in range(0, len(batch), 100)])
    assert submitted == [1]  # the large batch, not the small ones
    assert whole.shape == small.shape
    assert np.allclose(whole, small, rtol=1e-6, atol=1e-7)
    assert np.allclose(whole, model.output(batch), atol=export.TOLERANCE, rtol=1e-5)
    # batches from two threads at once share the helper: each gets its own rows
    other = list(reversed(batch))
    answers: dict[str, np.ndarray] = {}
    threads = [
        threading.Thread(target=lambda k=k, b=b: answers.__setitem__(k, served.output(b)))
        for k, b in (("batch", batch), ("reversed", other))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert np.allclose(answers["batch"], whole, rtol=1e-6, atol=1e-7)
    assert np.allclose(answers["reversed"], whole[::-1], rtol=1e-6, atol=1e-7)
    helper.shutdown()
