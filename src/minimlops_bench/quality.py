"""``minimlops bench --quality``: minimlops' model selection against the
defaults a careful user would try, on the same rows, in one run.

For every example project and two generated data sets (a wide one of mixed
types with high-cardinality categories and interactions; an imbalanced
binary one), the rows are split by the key hash as the pipeline splits them.
minimlops trains as ``train_model`` does (selection on TRAIN, the gate's
numbers on VALIDATION); the peers fit on the same TRAIN rows:

- LightGBM with its defaults, string columns as pandas categories (its own
  categorical handling);
- scikit-learn's HistGradientBoosting with its defaults, categories
  ordinal-encoded and declared categorical;
- a logistic (ridge, for regression) regression on one-hot categories and
  standardized, median-imputed numbers.

Everything is scored once on the TEST split, which minimlops never uses for
selection or gating. The ratio is to the best peer on the project's primary
metric (> 1 is worse for a loss).
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


def evaluate(ds: DataSet, *, seed: int = 0, budget_s: float | None = None) -> dict[str, Any]:
    """minimlops and the peers on one data set, scored on TEST."""
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
    model = artifacts.from_bytes(
        result["artifact"], artifacts.sha256(result["artifact"]), derived_functions(project)
    )
    out = model.output(test.to_pylist())
    outputs = [out]
    rows.append(
        {
            "method": f"minimlops ({result['algorithm']})",
            "ours": True,
            "seconds": seconds,
            "test": metrics(project.task, y_test, out, k),
        }
    )
    X_train, cats = _frame(project, train)
    X_test, _ = _frame(project, test, cats)
    y_train = _labels(project, train)
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
                "ours": False,
                "seconds": seconds,
                "test": metrics(project.task, y_test, out, k),
            }
        )
    metric, direction = project.primary_metric, project.metric_direction
    sign = 1 if direction == "min" else -1
    peers = [r for r in rows if not r["ours"]]
    best = min(peers, key=lambda r: sign * r["test"][metric])
    ours = rows[0]
    for r in rows:
        r["ratio"] = r["test"][metric] / best["test"][metric] if best["test"][metric] else None
    gap = ours["test"][metric] - best["test"][metric]
    goal = GOAL.get(metric)
    met = None
    if goal is not None:
        allowed = goal[1] if goal[0] == "abs" else goal[1] * best["test"][metric]
        met = bool(gap <= allowed)
    elif direction == "max":
        met = bool(gap >= -0.005)
    low, high = _gap_interval(project, y_test, outputs[0], outputs[rows.index(best)], metric, k)
    return {
        "data_set": ds.name,
        "note": ds.note,
        "task": project.task,
        "metric": metric,
        "direction": direction,
        "rows": {k_: t.num_rows for k_, t in parts.items()},
        "methods": rows,
        "best_peer": best["method"],
        "gap": gap,
        "gap_95": [low, high],
        "goal_met": met,
        "selection": result["selection"],
        "calibration": result["calibration"],
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


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Model quality: minimlops against the defaults a careful user would try",
        "",
        f"Machine: {report['machine']}. Every method fits on the same TRAIN rows and is "
        "scored once on TEST (never used by minimlops for selection or the gate). "
        "Ratio: to the best peer on the data set's primary metric.",
        "",
    ]
    for d in report["data_sets"]:
        metric = d["metric"]
        shown = [m for m in SHOWN[d["task"]] if m != metric]
        rows = d["rows"]
        verdict = {True: "goal met", False: "goal NOT met", None: "no goal for this metric"}[
            d["goal_met"]
        ]
        lines += [
            f"## {d['data_set']} ({d['task']}; {d['note']})",
            "",
            f"TRAIN {rows['TRAIN']:,} · VALIDATION {rows['VALIDATION']:,} · TEST "
            f"{rows['TEST']:,} rows. Primary metric **{metric}** "
            f"({'lower' if d['direction'] == 'min' else 'higher'} is better); minimlops "
            f"vs the best peer ({d['best_peer']}): {d['gap']:+.4f} (95 % paired bootstrap "
            f"interval on TEST {d['gap_95'][0]:+.4f} to {d['gap_95'][1]:+.4f}), {verdict}.",
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
    return "\n".join(lines)


def run(out_dir: Path, *, example: Path | None, smoke: bool = False) -> dict[str, Any]:
    """Every data set; writes quality.json and quality.md into out_dir."""
    import os
    import platform
    import tempfile

    with tempfile.TemporaryDirectory(prefix="minimlops-quality-") as tmp:
        found = [
            evaluate(ds, budget_s=10 if smoke else None)
            for ds in data_sets(example, Path(tmp), smoke)
        ]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    report = {"machine": machine, "smoke": smoke, "data_sets": found}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "quality.json").write_text(json.dumps(report, indent=2, default=float))
    (out_dir / "quality.md").write_text(markdown(report))
    return report
