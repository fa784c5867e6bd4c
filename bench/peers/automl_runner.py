"""One AutoML peer of ``minimlops bench --quality``, run with the Python of its
own venv (.bench-automl/, from bench/peers/requirements-automl.lock): it never
imports minimlops, and minimlops never imports it.

    automl_runner.py METHOD DIR

DIR holds what the bench wrote: ``spec.json`` (task, class count, the
project's primary metric, the time budget in seconds, the seed),
``train.parquet`` (the feature columns and ``__target__``: a class index, or
the value) and ``test.parquet`` (the feature columns). METHOD is
``autogluon`` (``TabularPredictor(...).fit(train, time_limit=budget)``, its
default preset) or ``flaml`` (``AutoML().fit(X, y, time_budget=budget)``).
Both are told the task and the project's primary metric, as minimlops is.

Writes ``METHOD.out.parquet`` (``p0`` .. ``p{k-1}``: every class's probability,
by class index; or ``value``) and ``METHOD.json`` (the seconds ``fit`` took,
the version, what it chose).
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

TARGET = "__target__"
# the project's metric names -> AutoGluon's, FLAML's
AUTOGLUON_METRIC = {
    "log_loss": "log_loss",
    "accuracy": "accuracy",
    "roc_auc": "roc_auc",
    "f1": "f1",
    "brier": "log_loss",  # AutoGluon has no Brier score; the closest proper score
    "macro_f1": "f1_macro",
    "rmse": "root_mean_squared_error",
    "mae": "mean_absolute_error",
    "r2": "r2",
}
FLAML_METRIC = {
    "log_loss": "log_loss",
    "accuracy": "accuracy",
    "roc_auc": "roc_auc",
    "f1": "f1",
    "brier": "log_loss",
    "macro_f1": "macro_f1",
    "rmse": "rmse",
    "mae": "mae",
    "r2": "r2",
}


def autogluon(spec: dict[str, Any], train: Any, test: Any, work: Path) -> tuple[Any, dict]:
    import autogluon.tabular as ag
    from autogluon.tabular import TabularPredictor

    task, k = spec["task"], spec["n_classes"]
    predictor = TabularPredictor(
        label=TARGET,
        problem_type=task,  # AutoGluon's names: binary, multiclass, regression
        eval_metric=AUTOGLUON_METRIC[spec["metric"]],
        path=str(work / "autogluon-models"),
        verbosity=0,
    )
    started = time.perf_counter()
    predictor.fit(train, time_limit=spec["budget_s"])  # the default preset
    seconds = time.perf_counter() - started
    if task == "regression":
        out = {"value": predictor.predict(test).to_numpy(dtype="float64")}
    else:
        proba = predictor.predict_proba(test, as_multiclass=True)
        out = _by_class(proba.columns, proba.to_numpy(dtype="float64"), k)
    board = predictor.leaderboard(silent=True)
    info = {
        "seconds": seconds,
        "version": ag.__version__,
        "chosen": predictor.model_best,
        "models": int(len(board)),
    }
    return out, info


def flaml(spec: dict[str, Any], train: Any, test: Any, work: Path) -> tuple[Any, dict]:
    import flaml as fl
    from flaml import AutoML

    task = spec["task"]
    X, y = train.drop(columns=[TARGET]), train[TARGET].to_numpy()
    automl = AutoML()
    started = time.perf_counter()
    automl.fit(
        X_train=X,
        y_train=y,
        task="regression" if task == "regression" else "classification",
        metric=FLAML_METRIC[spec["metric"]],
        time_budget=spec["budget_s"],
        seed=spec["seed"],
        verbose=0,
        log_file_name=str(work / "flaml.log"),
    )
    seconds = time.perf_counter() - started
    if task == "regression":
        out = {"value": automl.predict(test).astype("float64")}
    else:
        out = _by_class(automl.classes_, automl.predict_proba(test), spec["n_classes"])
    info = {"seconds": seconds, "version": fl.__version__, "chosen": automl.best_estimator}
    return out, info


def _by_class(classes: Any, proba: Any, k: int) -> dict[str, Any]:
    """Columns by class index; a class absent from the training rows gets 0."""
    import numpy as np

    full = np.zeros((proba.shape[0], k))
    full[:, np.asarray(list(classes), dtype=np.int64)] = proba
    return {f"p{i}": full[:, i] for i in range(k)}


METHODS = {"autogluon": autogluon, "flaml": flaml}


def main(argv: list[str]) -> int:
    import pandas as pd

    method, work = argv[1], Path(argv[2])
    spec = json.loads((work / "spec.json").read_text())
    train = pd.read_parquet(work / "train.parquet")
    test = pd.read_parquet(work / "test.parquet")
    if spec["task"] != "regression":
        train[TARGET] = train[TARGET].astype("int64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out, info = METHODS[method](spec, train, test, work)
    pd.DataFrame(out).to_parquet(work / f"{method}.out.parquet")
    (work / f"{method}.json").write_text(json.dumps(info, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
