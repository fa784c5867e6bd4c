"""``bench --quality``'s AutoML peers (AutoGluon, FLAML): run by their own
venv's Python through a runner script, the rows passed as files, scored as the
defaults are; a missing venv or a failing peer is reported, never dropped.
A fake runner stands in for the real one (which needs .bench-automl/)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from minimlops import projects
from minimlops_bench import quality

FAKE_RUNNER = """
import json, sys
from pathlib import Path
import pandas as pd

method, work = sys.argv[1], Path(sys.argv[2])
spec = json.loads((work / "spec.json").read_text())
train = pd.read_parquet(work / "train.parquet")
test = pd.read_parquet(work / "test.parquet")
y = train.pop("__target__")
assert list(train.columns) == list(test.columns), "the same columns"
if method == "flaml" and spec.get("fail_flaml"):
    raise SystemExit("FLAML broke: no estimator fitted")
if spec["task"] == "regression":
    out = {"value": [float(y.mean())] * len(test)}
else:
    share = y.value_counts(normalize=True)
    out = {f"p{i}": [float(share.get(i, 0.0))] * len(test) for i in range(spec["n_classes"])}
pd.DataFrame(out).to_parquet(work / f"{method}.out.parquet")
chosen = f"{method}|{spec['metric']}|{spec['budget_s']:g}|{len(train)}"
(work / f"{method}.json").write_text(
    json.dumps({"seconds": 0.25, "version": "9.9", "chosen": chosen})
)
"""


@pytest.fixture
def fake(tmp_path: Path) -> quality.AutoML:
    runner = tmp_path / "fake_runner.py"
    runner.write_text(FAKE_RUNNER)
    return quality.AutoML(Path(sys.executable), runner=runner)


def _fit_on(ds: quality.DataSet):
    parts = quality._splits(ds)
    labelled = pa.concat_tables([parts["TRAIN"], parts["VALIDATION"]])
    X, cats = quality._frame(ds.project, labelled)
    X_test, _ = quality._frame(ds.project, parts["TEST"], cats)
    return (X, quality._labels(ds.project, labelled)), X_test, parts["TEST"]


def test_each_peer_gets_the_defaults_rows_the_budget_and_the_primary_metric(
    fake: quality.AutoML,
) -> None:
    ds = quality.wide_mixed(600)
    (X, y), X_test, _ = _fit_on(ds)
    ran, errors = quality.automl_peers(fake, ds.project, (X, y), X_test, 7.0)
    assert errors == []
    assert [r["peer"] for r, _ in ran] == ["AutoGluon", "FLAML"]
    for row, out in ran:
        assert row["kind"] == "automl" and not row["ours"]
        assert row["seconds"] == 0.25 and row["version"] == "9.9"  # the fit call's, not imports'
        assert row["process_seconds"] >= 0
        # told the task's primary metric and minimlops' budget; fitted on every labelled row
        assert row["chosen"].split("|")[1:] == ["log_loss", "7", str(len(X))]
        assert out.shape == (len(X_test),)  # binary: the positive class's probability
        assert np.allclose(out, y.mean())


def test_multiclass_and_regression_outputs_have_the_tasks_shape(fake: quality.AutoML) -> None:
    wine = projects.load("wine")  # only the project: the fake needs no real rows
    k = len(wine.classes or ())
    import pandas as pd

    X = pd.DataFrame({"a": np.arange(30, dtype=float)})
    y = np.arange(30) % k
    ran, _ = quality.automl_peers(fake, wine, (X, y), X.iloc[:5], 3.0)
    assert ran[0][1].shape == (5, k) and np.allclose(ran[0][1].sum(axis=1), 1)
    diabetes = projects.load("diabetes")
    ran, _ = quality.automl_peers(fake, diabetes, (X, np.arange(30.0)), X.iloc[:4], 3.0)
    assert ran[0][1].shape == (4,) and np.allclose(ran[0][1], 14.5)


def test_a_failing_peer_is_reported_with_its_error(
    fake: quality.AutoML, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = quality.imbalanced(600)
    (X, y), X_test, _ = _fit_on(ds)
    real = quality.json.dumps
    monkeypatch.setattr(
        quality.json, "dumps", lambda o, **kw: real({**o, "fail_flaml": True}, **kw)
    )
    ran, errors = quality.automl_peers(fake, ds.project, (X, y), X_test, 5.0)
    assert [r["peer"] for r, _ in ran] == ["AutoGluon"]
    assert errors == [{"method": "FLAML", "error": "exit 1: FLAML broke: no estimator fitted"}]


def test_a_missing_venv_is_a_reason_not_silence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .bench-automl/ here
    found = quality.find_automl(env={})
    assert found.python is None
    assert "BENCH_AUTOML_PYTHON" in (found.reason or "")
    assert "make bench-automl" in (found.reason or "")
    found = quality.find_automl(env={"BENCH_AUTOML_PYTHON": str(tmp_path / "nope/bin/python")})
    assert found.python is None and "nope/bin/python not found" in (found.reason or "")
    assert quality.find_automl(Path(sys.executable)).python == Path(sys.executable).absolute()


def _rows(task_metric: dict[str, float]) -> list[dict]:
    return [
        {"method": f"m{i}", "kind": kind, "ours": kind == "minimlops", "seconds": 1.0, "test": t}
        for i, (kind, t) in enumerate(task_metric.items())
    ]


def test_the_goal_is_judged_against_the_best_default_and_each_automl_peer_apart(
    fake: quality.AutoML,
) -> None:
    from minimlops.ml.metrics import metrics

    ds = quality.imbalanced(600)
    project = ds.project
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.3).astype(np.int64)
    truth = np.clip(0.3 + 0.4 * (y - 0.3), 0.01, 0.99)  # informative
    outs = [truth, np.full(400, 0.3), np.clip(truth + 0.1, 0, 1), truth * 0.98]
    kinds = ["minimlops", "default", "default", "automl"]
    rows = [
        {
            "method": f"{kind} {i}",
            "peer": "AutoGluon" if kind == "automl" else None,
            "kind": kind,
            "ours": kind == "minimlops",
            "seconds": float(i),
            "test": metrics("binary", y, o, 2),
        }
        for i, (kind, o) in enumerate(zip(kinds, outs, strict=True))
    ]
    found = quality.compare(project, y, rows, outs)
    # the goal's reference is a plain default, even when AutoML does better
    assert found["best_peer"] in ("default 1", "default 2")
    assert found["goal_met"] is True
    [versus] = found["automl"]
    assert versus["peer"] == "AutoGluon"
    gap = rows[0]["test"]["log_loss"] - rows[3]["test"]["log_loss"]
    assert versus["gap"] == pytest.approx(gap)
    assert versus["gap_95"][0] <= gap <= versus["gap_95"][1]
    assert versus["goal_met"] is (gap <= 0.005)

    report = {
        "machine": "test",
        "automl": {"python": "/x/python", "reason": None, "budget_s": 30.0, "versions": {}},
        "data_sets": [
            {
                "data_set": "imbalanced",
                "note": "n",
                "task": "binary",
                "metric": "log_loss",
                "direction": "min",
                "rows": {"TRAIN": 1, "VALIDATION": 1, "TEST": 1},
                **found,
                "automl_errors": [{"method": "FLAML", "error": "exit 1: broke"}],
            }
        ],
    }
    text = quality.markdown(report)
    assert "| automl 3 |" in text  # a row beside the defaults, with its fit seconds
    assert "minimlops vs AutoGluon:" in text
    assert "**FLAML failed**: exit 1: broke." in text
    assert "Against AutoGluon (30 s, minimlops' training budget)" in text
    # a run without a set budget: the peers got the time our selection took, per data set
    report["automl"]["budget_s"] = None
    report["data_sets"][0].update(budget_s=31.0, selection={"seconds": 30.4})
    text = quality.markdown(report)
    assert "Against AutoGluon (the time minimlops' selection took on the data set" in text
    assert "minimlops' selection took 30 s; the AutoML peers got 31 s." in text
    assert "failed on imbalanced" in text  # FLAML's line

    report["automl"] = {"python": None, "reason": "no AutoML venv: x", "budget_s": 30.0}
    for d in report["data_sets"]:
        d["automl"], d["automl_errors"] = [], []
    text = quality.markdown(report)
    assert "**AutoGluon and FLAML were not run**: no AutoML venv: x" in text


@pytest.mark.parametrize(
    ("budget", "took", "expected"),
    [
        (60.0, 12.3, 60.0),  # a set budget: the peers get it as it is
        (None, 12.3, quality.PEER_MIN_S),  # unset, a quick selection: at least the floor
        (None, 47.2, 48.0),  # unset: the time our selection took, in whole seconds
    ],
)
def test_the_automl_peers_get_the_same_time_as_our_selection(
    budget: float | None, took: float, expected: float
) -> None:
    assert quality.peer_budget(budget, took) == expected
