"""``minimlops bench --quality``: minimlops' model selection against the
defaults a careful user would try, on the same rows, in one run.

For every example project and two generated data sets (a wide one of mixed
types with high-cardinality categories and interactions; an imbalanced
binary one), the rows are split by the key hash as the pipeline splits them.
minimlops trains as ``train_model`` does (selection on TRAIN, the gate's
numbers on VALIDATION; the served model is then refitted on TRAIN and
VALIDATION); the peers fit on the same rows the served model learned from:

- LightGBM with its defaults, string columns as pandas categories (its own
  categorical handling);
- scikit-learn's HistGradientBoosting with its defaults, categories
  ordinal-encoded and declared categorical;
- a logistic (ridge, for regression) regression on one-hot categories and
  standardized, median-imputed numbers;
- AutoGluon (``TabularPredictor(...).fit(train, time_limit=B)``, its default
  preset) and FLAML (``AutoML().fit(X, y, time_budget=B)``), B being
  minimlops' training budget when one is set, else the time minimlops'
  selection took on the data set (at least 30 s), told the task
  and the primary metric. They run from their own venv (.bench-automl/, from
  bench/peers/requirements-automl.lock) through bench/peers/automl_runner.py,
  the rows passed as parquet files; without that venv the report says they
  were not run, and the rest runs.

Everything is scored once on the TEST split, which minimlops never uses for
selection or gating. The ratio is to the best plain default on the project's
primary metric (> 1 is worse for a loss); the issue's goal is judged against
it and, separately, against each AutoML peer, with paired bootstrap
intervals.

A second section asks what a split promises when rows are not exchangeable,
on two more generated data sets: daily sales with a level per week that no
column records (``demand_over_time``, a ``[split]`` by time on a date column)
and visits of patients with a frailty per patient (``patient_visits``, by
group). The honest split's TEST (the newest rows, the patients never seen) is
set aside; the rest is split by each strategy (``random`` and ``time``, or
``random`` and ``group``), minimlops trains as the pipeline does with the
project's split set to that strategy, and its figure on VALIDATION is put
next to the one on the held-out rows.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from minimlops import example_data, projects
from minimlops.domain.project import Project
from minimlops.domain.schema import split_for
from minimlops.domain.splits import SplitSpec

GOAL = {
    "log_loss": ("abs", 0.005),
    "rmse": ("rel", 0.01),
}  # the issue's: how far above the best peer
SHOWN = {
    "binary": ("log_loss", "accuracy", "roc_auc", "f1", "brier"),
    "multiclass": ("log_loss", "accuracy", "macro_f1"),
    "regression": ("rmse", "mae", "r2"),
}


@dataclass
class DataSet:
    name: str
    project: Project
    table: pa.Table
    note: str


# --- the generated data sets --------------------------------------------------


def _generated_project(
    name: str, columns: list[dict[str, Any]], target: dict[str, Any], description: str
) -> Project:
    return projects.from_dict(
        {
            "name": name,
            "description": description,
            "key": "row_id",
            "target": target["name"],
            "task": "binary",
            "positive_class": "yes",
            "primary_metric": "log_loss",
            "columns": [
                {
                    "name": "row_id",
                    "type": "integer",
                    "required": True,
                    "min": 0,
                    "max": 10_000_000,
                },
                target,
                *columns,
            ],
        }
    )


def wide_mixed(n: int, seed: int = 7) -> DataSet:
    """30 columns: numbers (skewed, some missing), small and large categories
    (a 'state' of 50 values, a 'zip3' of 600), booleans, counts; the target
    depends on interactions, thresholds and category effects, plus noise."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {"row_id": np.arange(1, n + 1)}
    declared: list[dict[str, Any]] = []
    score = np.zeros(n)
    for i in range(10):
        x = rng.lognormal(0, 0.8, n) if i % 2 else rng.normal(0, 1, n)
        if i < 4:
            x = np.where(rng.random(n) < 0.15, np.nan, x)
        cols[f"num_{i}"] = x
        declared.append({"name": f"num_{i}", "type": "float", "required": i >= 4})
    z = np.nan_to_num(cols["num_0"])
    score += 1.2 * z * np.nan_to_num(cols["num_1"] - 1) + 0.8 * (cols["num_4"] > 0.5)
    score += 0.6 * np.sin(3 * cols["num_6"]) + 0.3 * np.log1p(cols["num_7"])
    for i, k in enumerate((3, 5, 8, 12)):
        pick = rng.integers(0, k, n)
        cols[f"cat_{i}"] = np.array([f"c{i}_{v}" for v in pick], dtype=object)
        score += np.random.default_rng(100 + i).normal(0, 0.5, k)[pick]
        declared.append(
            {
                "name": f"cat_{i}",
                "type": "string",
                "required": True,
                "allowed": [f"c{i}_{v}" for v in range(k)],
            }
        )
    state = rng.integers(0, 50, n)
    cols["state"] = np.array([f"S{v:02d}" for v in state], dtype=object)
    score += np.random.default_rng(200).normal(0, 0.6, 50)[state]
    zip3 = rng.zipf(1.3, n) % 600
    cols["zip3"] = np.array([f"Z{v:03d}" for v in zip3], dtype=object)
    score += np.random.default_rng(201).normal(0, 0.4, 600)[zip3]
    declared += [
        {"name": "state", "type": "string", "required": True, "kind": "categorical"},
        {"name": "zip3", "type": "string", "required": True, "kind": "categorical"},
    ]
    for i in range(6):
        b = rng.random(n) < 0.3 + 0.05 * i
        cols[f"flag_{i}"] = b
        score += (0.5 if i < 2 else 0.0) * b * (np.nan_to_num(cols["num_0"]) > 0)
        declared.append({"name": f"flag_{i}", "type": "boolean", "required": True})
    for i in range(6):
        c = rng.poisson(2 + i, n)
        cols[f"count_{i}"] = c
        score += (0.15 * (c > 4 + i)) if i < 3 else 0.0
        declared.append({"name": f"count_{i}", "type": "integer", "required": True, "min": 0})
    score = (score - score.mean()) / score.std()
    y = rng.random(n) < 1 / (1 + np.exp(-2.5 * score))
    cols["outcome"] = np.where(y, "yes", "no").astype(object)
    target = {"name": "outcome", "type": "string", "required": True, "allowed": ["no", "yes"]}
    project = _generated_project(
        "wide_mixed",
        declared,
        target,
        "generated: 30 mixed columns, interactions, large categories",
    )
    return DataSet(
        "wide_mixed",
        project,
        _table(project, cols),
        f"generated, {n:,} rows, 30 columns (2 of 50 and 600 categories), "
        f"{np.mean(y):.0%} positive",
    )


def imbalanced(n: int, seed: int = 11) -> DataSet:
    """15 numbers and 3 categories; about 3 % positive, through a nonlinear rule."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {"row_id": np.arange(1, n + 1)}
    declared: list[dict[str, Any]] = []
    for i in range(15):
        cols[f"x{i}"] = rng.normal(0, 1, n)
        declared.append({"name": f"x{i}", "type": "float", "required": True})
    score = cols["x0"] * cols["x1"] + np.abs(cols["x2"]) + 0.5 * cols["x3"] ** 2 - 0.5 * cols["x4"]
    for i, k in enumerate((4, 6, 10)):
        pick = rng.integers(0, k, n)
        cols[f"group_{i}"] = np.array([f"g{i}_{v}" for v in pick], dtype=object)
        score += np.random.default_rng(300 + i).normal(0, 0.7, k)[pick]
        declared.append(
            {
                "name": f"group_{i}",
                "type": "string",
                "required": True,
                "allowed": [f"g{i}_{v}" for v in range(k)],
            }
        )
    threshold = np.quantile(score, 0.97)
    y = (score + rng.normal(0, 0.4, n)) > threshold
    cols["rare"] = np.where(y, "yes", "no").astype(object)
    target = {"name": "rare", "type": "string", "required": True, "allowed": ["no", "yes"]}
    project = _generated_project(
        "imbalanced", declared, target, "generated: a rare positive class through a nonlinear rule"
    )
    return DataSet(
        "imbalanced",
        project,
        _table(project, cols),
        f"generated, {n:,} rows, {np.mean(y):.1%} positive",
    )


def _table(project: Project, cols: dict[str, Any]) -> pa.Table:
    out = {}
    for c in project.columns:
        v = cols[c.name]
        if c.type == "float":
            out[c.name] = pa.array(v, pa.float64(), from_pandas=True)  # NaN -> null
        else:
            out[c.name] = pa.array(v.tolist() if isinstance(v, np.ndarray) else v)
    return pa.table(out)


def data_sets(example: Path | None, cache: Path, smoke: bool) -> list[DataSet]:
    from minimlops.generate import rows_for

    found = []
    for name in projects.EXAMPLES:
        project = projects.load(name)
        extras = dict(project.extras)
        if extras.get("data") == "titanic":
            if example is None:
                continue
            import pyarrow.csv as pacsv

            found.append(DataSet(name, project, pacsv.read_csv(example), "the exercise's file"))
        elif isinstance(extras.get("generate"), int):
            n = 2000 if smoke else 20_000
            found.append(
                DataSet(
                    name,
                    project,
                    rows_for(project, n, seed=1),
                    f"generated (a hidden linear rule), {n:,} rows",
                )
            )
        else:
            import pyarrow.csv as pacsv

            path = example_data.for_project(extras, cache, local=None, url="")
            if path is not None:
                found.append(DataSet(name, project, pacsv.read_csv(path), "scikit-learn's copy"))
    found.append(wide_mixed(3000 if smoke else 20_000))
    found.append(imbalanced(4000 if smoke else 30_000))
    return found


# --- the methods ----------------------------------------------------------------


def _splits(ds: DataSet) -> dict[str, pa.Table]:
    keys = ds.table.column(ds.project.key).to_pylist()
    where = np.array([split_for(k) for k in keys])
    return {s: ds.table.filter(pa.array(where == s)) for s in ("TRAIN", "VALIDATION", "TEST")}


def _frame(project: Project, table: pa.Table, categories: dict[str, Any] | None = None) -> Any:
    """The raw feature columns as pandas: numbers as floats (NaN missing),
    text as categories fixed to TRAIN's (an unseen value becomes missing)."""
    import pandas as pd

    raw = [c for c in project.features if c in project.column_names]
    df = table.select(raw).to_pandas()
    categories = {} if categories is None else categories
    for c in raw:
        if project.column(c).type == "string":
            if c not in categories:
                categories[c] = sorted(df[c].dropna().unique().tolist())
            df[c] = pd.Categorical(df[c], categories=categories[c])
        else:
            df[c] = df[c].astype("float64")
    return df, categories


def _labels(project: Project, table: pa.Table) -> np.ndarray:
    from minimlops.ml.outputs import labels

    return labels(project, table.column(project.target).to_pylist())


def peer_methods(project: Project) -> dict[str, Callable[[Any, np.ndarray], Any]]:
    """name -> fit(X, y) returning an estimator with predict/predict_proba."""
    import lightgbm as lgb
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    regression = project.task == "regression"

    def lightgbm(X: Any, y: np.ndarray) -> Any:
        cls = lgb.LGBMRegressor if regression else lgb.LGBMClassifier
        return cls(verbose=-1).fit(X, y)

    def hist_gb(X: Any, y: np.ndarray) -> Any:
        cls = HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
        cats = list(X.select_dtypes("category").columns)
        prep = ColumnTransformer(
            [
                (
                    "cat",
                    OrdinalEncoder(
                        handle_unknown="use_encoded_value",
                        unknown_value=np.nan,
                        encoded_missing_value=np.nan,
                        max_categories=254,
                    ),
                    cats,
                ),
            ],
            remainder="passthrough",
            verbose_feature_names_out=False,
        )
        prep.set_output(transform="pandas")  # names kept: the categories are declared by name
        return make_pipeline(prep, cls(categorical_features=cats or None, random_state=0)).fit(X, y)

    def linear(X: Any, y: np.ndarray) -> Any:
        prep = ColumnTransformer(
            [
                (
                    "cat",
                    OneHotEncoder(handle_unknown="ignore"),
                    make_column_selector(dtype_include="category"),
                ),
                (
                    "num",
                    make_pipeline(
                        SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
                    ),
                    make_column_selector(dtype_exclude="category"),
                ),
            ]
        )
        est = Ridge() if regression else LogisticRegression(max_iter=5000)
        return make_pipeline(prep, est).fit(X, y)

    return {
        "LightGBM defaults": lightgbm,
        "HistGradientBoosting defaults": hist_gb,
        ("ridge" if regression else "logistic") + " regression, one-hot + scaled": linear,
    }


# --- the AutoML peers: AutoGluon and FLAML, from their own venv -----------------

AUTOML = {"autogluon": "AutoGluon", "flaml": "FLAML"}  # the runner's names -> people's
AUTOML_ENV = "BENCH_AUTOML_PYTHON"  # the venv's Python (make bench-quality sets it)
AUTOML_VENV = Path(".bench-automl")  # else looked for here, from the working directory
TARGET = "__target__"  # the label's column in the files the runner reads


@dataclass
class AutoML:
    """Where the AutoML peers run, or why they do not (``python`` None)."""

    python: Path | None
    reason: str | None = None
    runner: Path = Path(__file__).resolve().parents[2] / "bench" / "peers" / "automl_runner.py"
    methods: tuple[str, ...] = tuple(AUTOML)


def find_automl(python: Path | None = None, env: dict[str, str] | None = None) -> AutoML:
    """The AutoML venv's Python: given, else ``BENCH_AUTOML_PYTHON``, else
    ``.bench-automl/bin/python``; or the reason there is none, for the report."""
    import os

    env = dict(os.environ) if env is None else env
    hint = "make bench-automl builds it from bench/peers/requirements-automl.lock"
    if python is None and env.get(AUTOML_ENV):
        python = Path(env[AUTOML_ENV])
    if python is None:
        python = AUTOML_VENV / "bin" / "python"
        if not python.exists():
            return AutoML(
                None, f"no AutoML venv: {python} not found and {AUTOML_ENV} unset; {hint}"
            )
    if not python.exists():
        return AutoML(None, f"{python} not found; {hint}")
    automl = AutoML(python.absolute())
    if not automl.runner.is_file():
        return AutoML(None, f"{automl.runner} not found: run from a checkout")
    return automl


def automl_peers(
    automl: AutoML,
    project: Project,
    fit_on: tuple[Any, np.ndarray],
    X_test: Any,
    budget_s: float,
    *,
    seed: int = 0,
) -> tuple[list[tuple[dict[str, Any], np.ndarray]], list[dict[str, str]]]:
    """Each AutoML peer fitted, in its own process with its venv's Python, on
    the rows and columns the defaults get, under minimlops' training budget;
    its outputs on TEST. Data goes by files: parquet in a temporary directory.
    Returns (row, TEST outputs) per peer that ran, and one error per peer that
    did not (a failure is reported, never dropped)."""
    import subprocess
    import tempfile

    import pandas as pd

    assert automl.python is not None
    X_train, y_train = fit_on
    k = len(project.classes or ())
    found, errors = [], []
    with tempfile.TemporaryDirectory(prefix="minimlops-automl-") as tmp:
        work = Path(tmp)
        train = X_train.copy()
        train[TARGET] = y_train
        train.to_parquet(work / "train.parquet")
        X_test.to_parquet(work / "test.parquet")
        spec = {
            "task": project.task,
            "n_classes": k,
            "metric": project.primary_metric,
            "budget_s": budget_s,
            "seed": seed,
        }
        (work / "spec.json").write_text(json.dumps(spec))
        for method in automl.methods:
            name = AUTOML.get(method, method)
            started = time.perf_counter()
            try:
                done = subprocess.run(
                    [str(automl.python), str(automl.runner), method, str(work)],
                    cwd=work,  # what a learner writes where it runs (CatBoost's catboost_*/) stays there
                    capture_output=True,
                    text=True,
                    timeout=5 * budget_s + 300,  # imports, the final refit, prediction
                )
            except subprocess.TimeoutExpired:
                errors.append(
                    {"method": name, "error": f"no answer after {5 * budget_s + 300:.0f} s"}
                )
                continue
            wall = time.perf_counter() - started
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
                errors.append({"method": name, "error": f"exit {done.returncode}: {last[-300:]}"})
                continue
            info = json.loads((work / f"{method}.json").read_text())
            table = pd.read_parquet(work / f"{method}.out.parquet")
            if project.task == "regression":
                out = table["value"].to_numpy(dtype=np.float64)
            else:
                full = table[[f"p{i}" for i in range(k)]].to_numpy(dtype=np.float64)
                out = full[:, 1] if project.task == "binary" else full
            chosen = f" ({info['chosen']})" if info.get("chosen") else ""
            found.append(
                (
                    {
                        "method": f"{name}{chosen}",
                        "peer": name,
                        "kind": "automl",
                        "ours": False,
                        "seconds": float(info["seconds"]),
                        "process_seconds": wall,
                        "version": info.get("version"),
                        "chosen": info.get("chosen"),
                    },
                    out,
                )
            )
    return found, errors


# --- scoring -------------------------------------------------------------------


PEER_MIN_S = 30.0  # the AutoML peers' least time (their own defaults take longer)


def peer_budget(budget_s: float | None, selection_seconds: float) -> float:
    """The seconds AutoGluon and FLAML get on a data set: minimlops' training
    budget when the run sets one; unset (every candidate that fits in
    120 s), the time minimlops' selection took there, in whole seconds and
    at least ``PEER_MIN_S``: the same time, not the cap we never reach."""
    if budget_s is not None:
        return budget_s
    return max(PEER_MIN_S, float(np.ceil(selection_seconds)))


def evaluate(
    ds: DataSet,
    *,
    seed: int = 0,
    budget_s: float | None = None,
    automl: AutoML | None = None,
) -> dict[str, Any]:
    """minimlops and the peers on one data set, scored on TEST. ``budget_s``:
    minimlops' training budget (None: the pipeline's default), which the
    AutoML peers are given too."""
    from minimlops.ml import artifacts
    from minimlops.ml.job import fit_and_score
    from minimlops.ml.metrics import metrics
    from minimlops.ml.selection import output_of
    from minimlops.projects import derived_functions

    project = ds.project
    parts = _splits(ds)
    train, valid, test = parts["TRAIN"], parts["VALIDATION"], parts["TEST"]
    k = len(project.classes or ())
    y_test = _labels(project, test)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    extra = {"budget_s": budget_s} if budget_s else {}
    result = fit_and_score(train, valid, valid.slice(0, 0), project, folds=5, seed=seed, **extra)
    seconds = time.perf_counter() - started
    used = peer_budget(budget_s, result["selection"]["seconds"])
    model = artifacts.from_bytes(
        result["artifact"], artifacts.sha256(result["artifact"]), derived_functions(project)
    )
    out = model.output(test.to_pylist())
    outputs = [out]
    rows.append(
        {
            "method": f"minimlops ({result['algorithm']})",
            "kind": "minimlops",
            "ours": True,
            "seconds": seconds,
            "test": metrics(project.task, y_test, out, k),
        }
    )
    # the peers learn from every labelled row minimlops' served model learned
    # from (it is refitted on TRAIN and VALIDATION): defaults need no VALIDATION
    labelled = (
        pa.concat_tables([train, valid]) if result["fitted_on"]["rows"] > train.num_rows else train
    )
    X_train, cats = _frame(project, labelled)
    X_test, _ = _frame(project, test, cats)
    y_train = _labels(project, labelled)
    for name, fit in peer_methods(project).items():
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = fit(X_train, y_train)
            seconds = time.perf_counter() - started
            out = output_of(project.task, est, X_test, k)
        outputs.append(out)
        rows.append(
            {
                "method": name,
                "kind": "default",
                "ours": False,
                "seconds": seconds,
                "test": metrics(project.task, y_test, out, k),
            }
        )
    errors: list[dict[str, str]] = []
    if automl is not None and automl.python is not None:
        ran, errors = automl_peers(automl, project, (X_train, y_train), X_test, used, seed=seed)
        for row, out in ran:
            row["test"] = metrics(project.task, y_test, out, k)
            rows.append(row)
            outputs.append(out)
    return {
        "data_set": ds.name,
        "note": ds.note,
        "task": project.task,
        "metric": project.primary_metric,
        "direction": project.metric_direction,
        "rows": {k_: t.num_rows for k_, t in parts.items()},
        "budget_s": used,
        **compare(project, y_test, rows, outputs),
        "automl_errors": errors,
        "selection": result["selection"],
        "calibration": result["calibration"],
    }


def _meets(metric: str, direction: str, gap: float, reference: float) -> bool | None:
    """The issue's goal: minimlops at most this far behind ``reference``."""
    goal = GOAL.get(metric)
    if goal is not None:
        allowed = goal[1] if goal[0] == "abs" else goal[1] * reference
        return bool(gap <= allowed)
    if direction == "max":
        return bool(gap >= -0.005)
    return None


def compare(
    project: Project, y: np.ndarray, rows: list[dict[str, Any]], outputs: list[np.ndarray]
) -> dict[str, Any]:
    """minimlops (the first row) against the best plain default (the goal's
    reference; the ratio's too) and against each AutoML peer, with paired
    bootstrap intervals of the gap on TEST."""
    metric, direction = project.primary_metric, project.metric_direction
    k = len(project.classes or ())
    sign = 1 if direction == "min" else -1
    defaults = [r for r in rows if r.get("kind", "default") == "default" and not r["ours"]]
    best = min(defaults, key=lambda r: sign * r["test"][metric])
    ours = rows[0]
    for r in rows:
        r["ratio"] = r["test"][metric] / best["test"][metric] if best["test"][metric] else None
    gap = ours["test"][metric] - best["test"][metric]
    low, high = _gap_interval(project, y, outputs[0], outputs[rows.index(best)], metric, k)
    automl = []
    for i, r in enumerate(rows):
        if r.get("kind") != "automl":
            continue
        peer_gap = ours["test"][metric] - r["test"][metric]
        lo, hi = _gap_interval(project, y, outputs[0], outputs[i], metric, k)
        automl.append(
            {
                "peer": r.get("peer", r["method"]),
                "method": r["method"],
                "gap": peer_gap,
                "gap_95": [lo, hi],
                "goal_met": _meets(metric, direction, peer_gap, r["test"][metric]),
            }
        )
    return {
        "methods": rows,
        "best_peer": best["method"],
        "gap": gap,
        "gap_95": [low, high],
        "goal_met": _meets(metric, direction, gap, best["test"][metric]),
        "automl": automl,
    }


def _gap_interval(
    project: Project,
    y: np.ndarray,
    ours: np.ndarray,
    peer: np.ndarray,
    metric: str,
    k: int,
    draws: int = 1000,
) -> tuple[float, float]:
    """95 % paired bootstrap interval of (minimlops - best peer) on the TEST
    rows: how much of the gap the TEST split's size can explain."""
    from minimlops.ml.evaluation import quick_metrics

    rng = np.random.default_rng(0)
    gaps = []
    for _ in range(draws):
        at = rng.integers(0, len(y), len(y))
        a = quick_metrics(project.task, y[at], ours[at], k).get(metric)
        b = quick_metrics(project.task, y[at], peer[at], k).get(metric)
        if a is not None and b is not None and np.isfinite(a) and np.isfinite(b):
            gaps.append(a - b)
    return float(np.percentile(gaps, 2.5)), float(np.percentile(gaps, 97.5))


# --- splits: what VALIDATION promised against later or unseen-group rows --------

SPLITS_TITLE = "Splits: what VALIDATION promised vs what later (or unseen-group) rows got"
HONEST = 0.15  # the held-out share: the time split's newest rows, the group split's unseen groups


@dataclass
class SplitSet:
    """A generated data set whose rows are not exchangeable: ``strategies``
    are the splits compared, the last the honest one, whose TEST is the
    held-out truth for all of them."""

    name: str
    project: Project  # declares the honest split
    table: pa.Table
    note: str
    strategies: tuple[str, ...]
    held_out: str  # what the held-out rows are, for people
    unit: str  # the rows that go together (a week, a patient): the bootstrap resamples them


def _units(ss: SplitSet, table: pa.Table) -> np.ndarray:
    """Each row's unit: a date column's ISO week, another column's value."""
    values = table.column(ss.unit).to_pylist()
    if ss.project.column(ss.unit).type in ("date", "timestamp"):
        return np.array([f"{v.isocalendar()[0]}-{v.isocalendar()[1]:02d}" for v in values])
    return np.array([str(v) for v in values])


def _split_project(
    name: str,
    description: str,
    target: dict[str, Any],
    columns: list[dict[str, Any]],
    task: dict[str, Any],
    split: dict[str, Any],
) -> Project:
    return projects.from_dict(
        {
            "name": name,
            "description": description,
            "key": "row_id",
            "target": target["name"],
            **task,
            "columns": [
                {
                    "name": "row_id",
                    "type": "integer",
                    "required": True,
                    "min": 0,
                    "max": 10_000_000,
                },
                target,
                *columns,
            ],
            # features: every column but key and target (a group split leaves its
            # column out); a strategy compared keeps the same ones
            "split": split,
        }
    )


def demand_over_time(n: int, seed: int = 23) -> SplitSet:
    """Daily sales of 8 stores over three years: a trend, a yearly season, a
    weekday pattern, a price effect that strengthens over time and a promotion
    effect that grows, plus a level shared by every row of a week (weather,
    events: an AR(1) across weeks) that no column records. A random split
    puts rows of the same weeks on both sides; the newest rows' weeks are new."""
    rng = np.random.default_rng(seed)
    import datetime as dt

    start = dt.date(2022, 1, 3)  # a Monday
    weeks = 156
    day = np.sort(rng.integers(0, weeks * 7, n))
    week = day // 7
    t = day / (weeks * 7)  # 0 to 1 across the three years
    level = np.zeros(weeks)
    for w in range(1, weeks):
        level[w] = 0.7 * level[w - 1] + rng.normal(0, 1.0)
    weather = rng.normal(0, 1, weeks)  # a week's temperature anomaly (recorded)
    season = np.sin(2 * np.pi * (day + 10) / 365.25)
    temperature = 12 - 9 * np.cos(2 * np.pi * (day - 20) / 365.25) + 3 * weather[week]
    temperature += rng.normal(0, 1.5, n)
    store = rng.integers(0, 8, n)
    price = np.round(rng.uniform(6, 14, n), 2)
    promo = rng.random(n) < 0.2
    weekday = (day + start.weekday()) % 7
    units = (
        60
        + 15 * t  # trend
        + 8 * season
        + np.array([0, -1, -1, 0, 2, 6, 4])[weekday]
        + np.random.default_rng(seed + 1).normal(0, 5, 8)[store]
        - (1.0 + 1.5 * t) * (price - 10)  # shoppers grow more price-sensitive
        + (4 + 6 * t) * promo
        + 0.6 * (temperature - 12)
        + 5 * level[week]  # the week's unrecorded level
        + rng.normal(0, 3, n)
    )
    dates = [start + dt.timedelta(days=int(d)) for d in day]
    cols: dict[str, Any] = {
        "row_id": np.arange(1, n + 1),
        "units": np.round(units, 1),
        "sold_on": dates,
        "store": np.array([f"store_{s}" for s in store], dtype=object),
        "price": price,
        "promo": promo,
        "temperature": np.round(temperature, 1),
    }
    project = _split_project(
        "demand_over_time",
        "generated: daily sales with a trend, a season, drift and weekly levels",
        {"name": "units", "type": "float", "required": True},
        [
            {"name": "sold_on", "type": "date", "required": True},
            {
                "name": "store",
                "type": "string",
                "required": True,
                "allowed": [f"store_{s}" for s in range(8)],
            },
            {"name": "price", "type": "float", "required": True},
            {"name": "promo", "type": "boolean", "required": True},
            {"name": "temperature", "type": "float", "required": True},
        ],
        {"task": "regression", "primary_metric": "rmse"},
        {"strategy": "time", "column": "sold_on"},
    )
    return SplitSet(
        "demand_over_time",
        project,
        _table(project, cols),
        f"generated, {n:,} rows, {dates[0]} to {dates[-1]}, a level per week no column "
        "records, a trend and a price effect that drift",
        ("random", "time"),
        "the newest rows",
        "sold_on",
    )


def patient_visits(n: int, seed: int = 29) -> SplitSet:
    """Hospital visits of patients, about 15 each: per patient an age, a BMI,
    a sex and a region that never change (so a model can recognise the
    patient) and a frailty no column records; per visit the stay, the
    medications, a lab value and whether it was an emergency. The target:
    readmitted within 30 days. A random split puts a patient's visits on both
    sides; the held-out rows are patients never seen."""
    rng = np.random.default_rng(seed)
    patients = max(20, n // 15)
    per = rng.poisson(14, patients) + 1
    pid = np.repeat(np.arange(patients), per)[:n]
    if len(pid) < n:
        pid = np.concatenate([pid, rng.integers(0, patients, n - len(pid))])
    pid = np.sort(pid)
    age = np.round(rng.uniform(25, 90, patients), 1)
    bmi = np.round(rng.normal(27, 4.5, patients), 1)
    sex = rng.random(patients) < 0.5
    region = rng.integers(0, 5, patients)
    frailty = rng.normal(0, 1.3, patients)  # unrecorded
    stay = rng.poisson(4, n) + 1
    meds = rng.poisson(3 + 0.04 * (age[pid] - 25), n)
    lab = rng.normal(0, 1, n) + 0.4 * frailty[pid]  # partly reflects the frailty
    emergency = rng.random(n) < 0.35
    logit = (
        -1.6
        + 0.025 * (age[pid] - 60)
        + 0.04 * (bmi[pid] - 27)
        + 0.12 * (stay - 5)
        + 0.08 * (meds - 5)
        + 0.5 * lab
        + 0.6 * emergency
        + np.array([0.0, 0.2, -0.2, 0.3, -0.1])[region[pid]]
        + frailty[pid]
    )
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    cols: dict[str, Any] = {
        "row_id": np.arange(1, n + 1),
        "readmitted": np.where(y, "yes", "no").astype(object),
        "patient_id": np.array([f"P{p:05d}" for p in pid], dtype=object),
        "age": age[pid],
        "bmi": bmi[pid],
        "sex": np.where(sex[pid], "F", "M").astype(object),
        "region": np.array([f"R{r}" for r in region[pid]], dtype=object),
        "length_of_stay": stay,
        "medications": meds,
        "lab_value": np.round(lab, 3),
        "emergency": emergency,
    }
    project = _split_project(
        "patient_visits",
        "generated: visits of patients, a frailty per patient no column records",
        {"name": "readmitted", "type": "string", "required": True, "allowed": ["no", "yes"]},
        [
            {"name": "patient_id", "type": "string", "required": True, "kind": "categorical"},
            {"name": "age", "type": "float", "required": True},
            {"name": "bmi", "type": "float", "required": True},
            {"name": "sex", "type": "string", "required": True, "allowed": ["F", "M"]},
            {
                "name": "region",
                "type": "string",
                "required": True,
                "allowed": [f"R{r}" for r in range(5)],
            },
            {"name": "length_of_stay", "type": "integer", "required": True, "min": 0},
            {"name": "medications", "type": "integer", "required": True, "min": 0},
            {"name": "lab_value", "type": "float", "required": True},
            {"name": "emergency", "type": "boolean", "required": True},
        ],
        {"task": "binary", "positive_class": "yes", "primary_metric": "log_loss"},
        {"strategy": "group", "column": "patient_id"},
    )
    groups = len(set(cols["patient_id"].tolist()))
    return SplitSet(
        "patient_visits",
        project,
        _table(project, cols),
        f"generated, {n:,} visits of {groups:,} patients, {np.mean(y):.0%} readmitted, "
        "a frailty per patient no column records",
        ("random", "group"),
        "patients never seen",
        "patient_id",
    )


def split_sets(smoke: bool) -> list[SplitSet]:
    return [demand_over_time(600 if smoke else 6000), patient_visits(600 if smoke else 6000)]


def _time_counts(table: pa.Table) -> Callable[[str], list[tuple[Any, int]]]:
    def counts(column: str) -> list[tuple[Any, int]]:
        values = [v for v in table.column(column).to_pylist() if v is not None]
        seen: dict[Any, int] = {}
        for v in values:
            seen[v] = seen.get(v, 0) + 1
        return sorted(seen.items())

    return counts


def split_parts(ss: SplitSet) -> tuple[pa.Table, dict[str, tuple[SplitSpec, pa.Table, pa.Table]]]:
    """The held-out rows, and per strategy its declaration, TRAIN and
    VALIDATION. The honest split's TEST (the newest rows, the unseen groups)
    is set aside first; the rest is split by each strategy, TRAIN and
    VALIDATION in the honest split's proportions (70 : 15 by default)."""
    from dataclasses import replace

    from minimlops.domain.splits import Split, cutoffs_from_counts, resolve

    project, table = ss.project, ss.table
    spec = project.split
    column_type = project.column(spec.column).type if spec.column else None
    counts = _time_counts(table)
    honest = resolve(spec, column_type, lambda c, at: cutoffs_from_counts(counts(c), at))
    where = np.array([honest.of_row(r, project.key) for r in table.to_pylist()])
    held = table.filter(pa.array(where == "TEST"))
    rest = table.filter(pa.array(where != "TEST"))
    f = spec.fractions
    share = (f[0] / (f[0] + f[1]), f[1] / (f[0] + f[1]), 0.0)
    out = {}
    for strategy in ss.strategies:
        if strategy == spec.strategy:
            declared, chosen = spec, where[where != "TEST"]
        else:
            declared = replace(SplitSpec(strategy), fractions=share)
            split = Split(declared)
            chosen = np.array([split.of_row(r, project.key) for r in rest.to_pylist()])
        out[strategy] = (
            declared,
            rest.filter(pa.array(chosen == "TRAIN")),
            rest.filter(pa.array(chosen == "VALIDATION")),
        )
    return held, out


def evaluate_splits(
    ss: SplitSet, *, seed: int = 0, budget_s: float | None = None
) -> dict[str, Any]:
    """minimlops trained under each strategy (its TRAIN, its VALIDATION, the
    project's split set to it so cross-validation folds as it does), scored
    on VALIDATION and on the held-out rows."""
    from dataclasses import replace

    from minimlops.ml import artifacts
    from minimlops.ml.job import fit_and_score
    from minimlops.ml.metrics import metrics
    from minimlops.projects import derived_functions

    metric, direction = ss.project.primary_metric, ss.project.metric_direction
    sign = 1.0 if direction == "min" else -1.0
    k = len(ss.project.classes or ())
    found = []
    held, parts = split_parts(ss)
    y_held, units_held = _labels(ss.project, held), _units(ss, held)
    for strategy, (declared, train, valid) in parts.items():
        project = replace(ss.project, split=declared)
        started = time.perf_counter()
        result = fit_and_score(  # None: the pipeline's default budget
            train, valid, valid.slice(0, 0), project, folds=5, seed=seed, budget_s=budget_s
        )
        seconds = time.perf_counter() - started
        model = artifacts.from_bytes(
            result["artifact"], artifacts.sha256(result["artifact"]), derived_functions(project)
        )
        out_held = model.output(held.to_pylist())  # the served model: what users get
        held_scores = metrics(project.task, y_held, out_held, k)
        # VALIDATION's figures are the TRAIN-only fit's (the served one is
        # refitted on VALIDATION too): its outputs, calibrated as they are
        blob = result.get("measured_artifact") or result["artifact"]
        measured = artifacts.from_bytes(blob, artifacts.sha256(blob), derived_functions(project))
        out_valid = measured.output(valid.to_pylist())
        interval = _over_promise_interval(
            project,
            (_labels(project, valid), out_valid, _units(ss, valid)),
            (y_held, out_held, units_held),
            metric,
            k,
        )
        chosen = result["algorithm"]
        cv = (result.get("cv_scores") or {}).get(chosen)
        promised, got = result["validation"][metric], held_scores[metric]
        found.append(
            {
                "strategy": strategy,
                "split": project.split.describe(),
                "rows": {
                    "TRAIN": train.num_rows,
                    "VALIDATION": valid.num_rows,
                    "held_out": held.num_rows,
                },
                "algorithm": chosen,
                "folds_by": result["selection"].get("folds_by"),
                "cv": cv,
                # a forest at random folds: its figure is out-of-bag, not out-of-fold
                "cv_estimate": next(
                    (
                        e.get("estimate")
                        for e in result["selection"].get("leaderboard") or []
                        if e.get("name") == chosen
                    ),
                    None,
                ),
                "validation": result["validation"],
                "held_out": held_scores,
                # > 0: VALIDATION promised better than the held-out rows got
                "over_promise": sign * (got - promised),
                "over_promise_95": interval,
                "seconds": seconds,
            }
        )
    return {
        "data_set": ss.name,
        "note": ss.note,
        "task": ss.project.task,
        "metric": metric,
        "direction": direction,
        "held_out": ss.held_out,
        "honest": ss.project.split.describe(),
        "unit": ss.unit,
        "strategies": found,
    }


def _over_promise_interval(
    project: Project,
    valid: tuple[np.ndarray, np.ndarray, np.ndarray],
    held: tuple[np.ndarray, np.ndarray, np.ndarray],
    metric: str,
    k: int,
    draws: int = 1000,
) -> tuple[float, float]:
    """95 % bootstrap interval of the over-promise, resampling whole units
    (weeks, patients) of VALIDATION and of the held-out rows independently:
    rows of one unit share what no column records, so a row bootstrap would
    claim more certainty than the units give."""
    from minimlops.ml.evaluation import quick_metrics

    rng = np.random.default_rng(0)
    sign = 1.0 if project.metric_direction == "min" else -1.0
    sets = []
    for y, out, units in (valid, held):
        names, at = np.unique(units, return_inverse=True)
        sets.append((y, out, [np.flatnonzero(at == i) for i in range(len(names))]))

    def draw(y: np.ndarray, out: np.ndarray, members: list[np.ndarray]) -> float | None:
        rows = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        value = quick_metrics(project.task, y[rows], out[rows], k).get(metric)
        return value if value is not None and np.isfinite(value) else None

    gaps = []
    for _ in range(draws):
        promised, got = draw(*sets[0]), draw(*sets[1])
        if promised is not None and got is not None:
            gaps.append(sign * (got - promised))
    return float(np.percentile(gaps, 2.5)), float(np.percentile(gaps, 97.5))


def _verdict(met: bool | None) -> str:
    return {True: "goal met", False: "goal NOT met", None: "no goal for this metric"}[met]


def goal_lines(report: dict[str, Any]) -> list[str]:
    """The issue's goal, and how far this run meets it."""
    found = report["data_sets"]
    automl = report.get("automl") or {}
    budget = automl.get("budget_s")
    lines = [
        "Goal: on each data set's primary metric, minimlops at least as good as "
        "the best plain default (at most +0.005 log loss, +1 % RMSE, -0.005 on a "
        "higher-is-better metric), and as good as AutoGluon given the same time on "
        "nearly every data set.",
        "",
    ]
    judged = [d for d in found if d["goal_met"] is not None]
    if judged:
        met = sum(bool(d["goal_met"]) for d in judged)
        missed = [d["data_set"] for d in judged if not d["goal_met"]]
        lines.append(
            f"- Against the best plain default: met on {met} of {len(judged)} data sets"
            + (f" (not on {', '.join(missed)})." if missed else ".")
        )
    if not automl.get("python"):
        lines += [
            f"- **AutoGluon and FLAML were not run**: {automl.get('reason') or 'not asked'}. "
            "Their rows are missing below; the defaults ran.",
        ]
    else:
        for peer in AUTOML.values():
            versus = [
                (d["data_set"], a) for d in found for a in d.get("automl", []) if a["peer"] == peer
            ]
            failed = [
                d["data_set"]
                for d in found
                for e in d.get("automl_errors", [])
                if e["method"] == peer
            ]
            if not versus and not failed:
                continue
            judged_ = [(n, a) for n, a in versus if a["goal_met"] is not None]
            met = sum(bool(a["goal_met"]) for _, a in judged_)
            missed = [n for n, a in judged_ if not a["goal_met"]]
            version = automl.get("versions", {}).get(peer)
            lines.append(
                f"- Against {peer}{f' {version}' if version else ''} ({_budget(budget)}): "
                f"as good on {met} of {len(judged_)} data sets"
                + (f" (not on {', '.join(missed)})" if missed else "")
                + (f"; failed on {', '.join(failed)}" if failed else "")
                + "."
            )
    lines.append("")
    return lines


def _budget(budget: float | None) -> str:
    """The AutoML peers' time in words: minimlops' budget when the run set
    one, else each data set's (see :func:`peer_budget`)."""
    if budget is None:
        return (
            f"the time minimlops' selection took on the data set, at least {PEER_MIN_S:g} s, "
            "in each data set's section"
        )
    return f"{budget:g} s, minimlops' training budget"


def _time_line(d: dict[str, Any]) -> str:
    """A data set's times: what minimlops' selection took, what the peers got
    (nothing for a report written before selection recorded its seconds)."""
    took = (d.get("selection") or {}).get("seconds")
    if took is None or d.get("budget_s") is None:
        return ""
    return f" minimlops' selection took {took:.0f} s; the AutoML peers got {d['budget_s']:g} s."


def markdown(report: dict[str, Any]) -> str:
    automl = report.get("automl") or {}
    lines = [
        "# Model quality: minimlops against the defaults a careful user would try, and AutoML",
        "",
        f"Machine: {report['machine']}. Every method learns from the same rows (minimlops "
        "selects on TRAIN, is gated on VALIDATION and serves a refit on both; the peers "
        "fit on both) and is scored once on TEST (never used by minimlops for selection "
        "or the gate). "
        "Ratio: to the best plain default on the data set's primary metric. "
        + (
            "AutoGluon (`TabularPredictor(...).fit(train, time_limit=B)`, its default "
            "preset) and FLAML (`AutoML().fit(X, y, time_budget=B)`) get the task, the "
            f"primary metric and B: {_budget(automl['budget_s'])}. They run from their own "
            "venv (CPU only, no torch: AutoGluon skips its neural networks); their fit s is "
            "the `fit` call's."
            if automl.get("python")
            else ""
        ),
        "",
        *goal_lines(report),
    ]
    for d in report["data_sets"]:
        metric = d["metric"]
        shown = [m for m in SHOWN[d["task"]] if m != metric]
        rows = d["rows"]
        lines += [
            f"## {d['data_set']} ({d['task']}; {d['note']})",
            "",
            f"TRAIN {rows['TRAIN']:,} · VALIDATION {rows['VALIDATION']:,} · TEST "
            f"{rows['TEST']:,} rows. Primary metric **{metric}** "
            f"({'lower' if d['direction'] == 'min' else 'higher'} is better); minimlops "
            f"vs the best plain default ({d['best_peer']}): {d['gap']:+.4f} (95 % paired "
            f"bootstrap interval on TEST {d['gap_95'][0]:+.4f} to {d['gap_95'][1]:+.4f}), "
            f"{_verdict(d['goal_met'])}." + _time_line(d),
        ]
        for a in d.get("automl", []):
            lo, hi = a["gap_95"]
            lines.append(
                f"minimlops vs {a['peer']}: {a['gap']:+.4f} ({lo:+.4f} to {hi:+.4f}), "
                f"{_verdict(a['goal_met'])}."
            )
        for e in d.get("automl_errors", []):
            lines.append(f"**{e['method']} failed**: {e['error']}.")
        lines += [
            "",
            "| method | " + " | ".join([metric, *shown]) + " | ratio | fit s |",
            "| --- | " + " | ".join(["---:"] * (len(shown) + 3)) + " |",
        ]
        for r in d["methods"]:
            t = r["test"]
            cells = [f"{t.get(m, float('nan')):.4f}" for m in [metric, *shown]]
            name = f"**{r['method']}**" if r["ours"] else r["method"]
            ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else ""
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} | {r['seconds']:.1f} |")
        cal = d.get("calibration") or {}
        if cal.get("reason"):
            lines += [
                "",
                f"Calibration {'kept' if cal.get('kept') else 'not kept'}: {cal['reason']}.",
            ]
        lines.append("")
    if report.get("splits"):
        lines += splits_markdown(report["splits"])
    return "\n".join(lines)


def splits_markdown(found: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"## {SPLITS_TITLE}",
        "",
        "Rows that are not exchangeable: a generated time-ordered data set and a grouped "
        "one. The honest split's TEST (the newest 15 % of the rows, or the groups hashed "
        "to TEST) is set aside first and scored for every strategy; the rest is split by "
        "each strategy into TRAIN and VALIDATION (70 : 15), and minimlops trains as the "
        "pipeline does, with the project's split set to that strategy (cross-validation "
        "inside TRAIN folds by time or by group as it says). Over-promise: how much "
        "better VALIDATION looked than the held-out rows were (> 0: VALIDATION "
        "over-promised), with a 95 % bootstrap interval that resamples whole weeks or "
        "patients (their rows share what no column records).",
        "",
    ]
    for d in found:
        metric = d["metric"]
        other = next(m for m in SHOWN[d["task"]] if m != metric)
        lines += [
            f"### {d['data_set']} ({d['task']}; {d['note']})",
            "",
            f"Held out: {d['held_out']} ({d['honest']}). Primary metric **{metric}** "
            f"({'lower' if d['direction'] == 'min' else 'higher'} is better).",
            "",
            f"| split | TRAIN · VALIDATION · held-out rows | chosen | {metric} in CV "
            f"| {metric} on VALIDATION | {metric} on held-out | over-promise (95 %) "
            f"| {other} on VALIDATION | {other} on held-out | fit s |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in d["strategies"]:
            n = r["rows"]
            v, h = r["validation"], r["held_out"]
            lo, hi = r["over_promise_95"]
            cv = f"{r['cv']:.4f}" if r.get("cv") is not None else ""
            if cv and r.get("cv_estimate"):
                cv += f" ({r['cv_estimate']})"
            lines.append(
                f"| {r['strategy']}: {r['split']} | {n['TRAIN']:,} · {n['VALIDATION']:,} · "
                f"{n['held_out']:,} | {r['algorithm']} | {cv} | {v[metric]:.4f} | "
                f"{h[metric]:.4f} | {r['over_promise']:+.4f} ({lo:+.4f} to {hi:+.4f}) | "
                f"{v.get(other, float('nan')):.4f} | {h.get(other, float('nan')):.4f} | "
                f"{r['seconds']:.1f} |"
            )
        lines.append("")
    return lines


def run(
    out_dir: Path,
    *,
    example: Path | None,
    smoke: bool = False,
    parts: tuple[str, ...] = ("peers", "splits"),
    automl: AutoML | None = None,
    only: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Every data set; writes quality.json and quality.md into out_dir.
    ``parts``: the comparison with the peers, the splits' section, or both.
    ``automl``: where AutoGluon and FLAML run (None: ``find_automl()``; when
    there is no such venv the report says so and the rest runs). ``only``: the
    peers' section's data sets by name (None: ``BENCH_QUALITY_ONLY``, comma
    separated, else all)."""
    import os
    import platform
    import tempfile

    from minimlops.config import Settings

    # minimlops' training budget (MINIMLOPS_TRAINING_BUDGET; unset, every
    # candidate that fits in 120 s): the AutoML peers get it, or the time
    # minimlops' selection took on each data set
    budget = 10.0 if smoke else Settings.from_env(os.environ).training_budget
    automl = find_automl() if automl is None else automl
    if only is None and os.environ.get("BENCH_QUALITY_ONLY"):
        only = tuple(n.strip() for n in os.environ["BENCH_QUALITY_ONLY"].split(",") if n.strip())
    found = []
    if "peers" in parts:
        with tempfile.TemporaryDirectory(prefix="minimlops-quality-") as tmp:
            found = [
                evaluate(ds, budget_s=budget, automl=automl)
                for ds in data_sets(example, Path(tmp), smoke)
                if only is None or ds.name in only
            ]
    splits = (  # four trainings: in smoke, the tests' short budget
        [evaluate_splits(ss, budget_s=3 if smoke else budget) for ss in split_sets(smoke)]
        if "splits" in parts
        else []
    )
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    versions = {
        r["peer"]: r["version"]
        for d in found
        for r in d["methods"]
        if r.get("kind") == "automl" and r.get("version")
    }
    report = {
        "machine": machine,
        "smoke": smoke,
        "budget_s": budget,
        "automl": {
            "python": str(automl.python) if automl.python else None,
            "reason": automl.reason,
            "budget_s": budget,
            "versions": versions,
        },
        "data_sets": found,
        "splits": splits,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "quality.json").write_text(json.dumps(report, indent=2, default=float))
    (out_dir / "quality.md").write_text(markdown(report))
    return report
