"""minimlops' training against plain defaults on many random splits of small tables.

One TEST split of a small table (21 rows of wine) says little: one confident
mistake moves its log loss by more than the gaps being judged. This draws
``--splits`` random 70/15/15 TRAIN/VALIDATION/TEST splits of each table, trains
as the pipeline does (``fit_and_score``: selection on TRAIN, the gate's figures
on VALIDATION, the served refit on both), fits the plain defaults of
``bench --quality`` on the same rows, and reports each method's mean TEST
figure on the primary metric, and minimlops' mean paired gap to the best
default with its standard error.

Tables: scikit-learn's bundled ``iris``, ``wine``, ``breast_cancer`` and
``diabetes``, and any CSV as ``NAME=PATH:TARGET``, drafted as a user would
(``minimlops init PATH --target TARGET``, with a ``row_id`` key added).

    python bench/repeated_splits.py iris wine penguins=penguins.csv:species --splits 10

``--no-calibration`` trains with calibration switched off, and
``--no-one-se`` with selection's one-standard-error rule off (decision
0036), to measure what each does. Writes one JSON line per split to stdout (``--out`` for the
summary in Markdown too). Uses every core it is given for a few minutes a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

BUNDLED = {
    "iris": ("load_iris", "multiclass"),
    "wine": ("load_wine", "multiclass"),
    "breast_cancer": ("load_breast_cancer", "binary"),
    "diabetes": ("load_diabetes", "regression"),
}


def bundled(name: str) -> tuple[Any, pa.Table]:
    """A scikit-learn data set as a project and its rows."""
    from sklearn import datasets

    from minimlops import projects

    loader, task = BUNDLED[name]
    data = getattr(datasets, loader)(**({"scaled": False} if name == "diabetes" else {}))
    X, y = data.data, data.target
    features = [f"f{i}" for i in range(X.shape[1])]
    columns: list[dict[str, Any]] = [
        {"name": "row_id", "type": "integer", "required": True, "min": 0, "max": 10**7}
    ]
    if task == "regression":
        columns.append({"name": "y", "type": "float", "required": True})
        labels: list[Any] = [float(v) for v in y]
    else:
        classes = [f"c{i}" for i in sorted(set(y.tolist()))]
        columns.append({"name": "y", "type": "string", "required": True, "allowed": classes})
        labels = [f"c{v}" for v in y]
    columns += [{"name": f, "type": "float", "required": True} for f in features]
    spec: dict[str, Any] = {
        "name": name,
        "description": name,
        "key": "row_id",
        "target": "y",
        "task": task,
        "primary_metric": "rmse" if task == "regression" else "log_loss",
        "columns": columns,
    }
    if task == "binary":
        spec["positive_class"] = "c1"
    table = pa.table(
        {
            "row_id": list(range(len(y))),
            "y": labels,
            **{f: X[:, i].astype(float) for i, f in enumerate(features)},
        }
    )
    return projects.from_dict(spec), table


def drafted(name: str, path: Path, target: str, work: Path) -> tuple[Any, pa.Table]:
    """A CSV drafted into a project by ``minimlops init``, and its valid rows."""
    from minimlops import projects
    from minimlops.services import validate

    here = work / name
    here.mkdir(parents=True, exist_ok=True)
    table = pacsv.read_csv(path)
    names = table.schema.names
    if names[0] in ("", "rownames"):  # R's row names: the key
        table = table.rename_columns(["row_id", *names[1:]])
    else:
        table = table.add_column(0, "row_id", pa.array(range(1, table.num_rows + 1)))
    csv = here / f"{name}.csv"
    pacsv.write_csv(table, csv)
    init = [sys.executable, "-m", "minimlops", "init", str(csv), "--target", target]
    done = subprocess.run(
        [*init, "--key", "row_id", "-o", str(here)], capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"minimlops init {path} failed:\n{done.stdout}{done.stderr}")
    project = projects.load(str(here))
    report, parts, first = validate.Report(), [], 1
    with open(csv, "rb") as f:
        header = validate.read_header(f, project)
    with open(csv, "rb") as f:
        for batch in validate.batches(f, header):
            parts.append(
                validate.check_batch(batch, first, report, project, validate.content_keys(project))
            )
            first += batch.num_rows
    return project, pa.concat_tables(parts)


def one_split(project: Any, table: pa.Table, seed: int) -> dict[str, Any]:
    """minimlops and the defaults on one random split, scored on its TEST rows."""
    from minimlops.ml import artifacts
    from minimlops.ml.job import fit_and_score
    from minimlops.ml.metrics import metrics
    from minimlops.ml.selection import output_of
    from minimlops.projects import derived_functions
    from minimlops_bench import quality

    order = np.random.default_rng(1000 + seed).permutation(table.num_rows)
    a, b = int(0.7 * len(order)), int(0.85 * len(order))
    train, valid, test = (
        table.take(pa.array(np.sort(part))) for part in (order[:a], order[a:b], order[b:])
    )
    k, metric = len(project.classes or ()), project.primary_metric
    y_test = quality._labels(project, test)
    started = time.perf_counter()
    result = fit_and_score(train, valid, valid.slice(0, 0), project, folds=5, seed=0)
    seconds = time.perf_counter() - started
    model = artifacts.from_bytes(
        result["artifact"], artifacts.sha256(result["artifact"]), derived_functions(project)
    )
    row: dict[str, Any] = {
        "split": seed,
        "chosen": result["algorithm"],
        "calibrated": bool(result["calibration"].get("kept")),
        "seconds": round(seconds, 1),
        "minimlops": metrics(project.task, y_test, model.output(test.to_pylist()), k)[metric],
    }
    both = result["fitted_on"]["rows"] > train.num_rows  # the peers learn from the same rows
    labelled = pa.concat_tables([train, valid]) if both else train
    X_train, categories = quality._frame(project, labelled)
    X_test, _ = quality._frame(project, test, categories)
    y_train = quality._labels(project, labelled)
    for name, fit in quality.peer_methods(project).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = output_of(project.task, fit(X_train, y_train), X_test, k)
        row[name] = metrics(project.task, y_test, out, k)[metric]
    return row


def summary(name: str, project: Any, rows: list[dict[str, Any]]) -> str:
    """One table's line: each method's mean, and the gap to the best default."""
    methods = [m for m in rows[0] if m not in ("split", "chosen", "calibrated", "seconds")]
    means = {m: float(np.mean([r[m] for r in rows])) for m in methods}
    lower = project.metric_direction == "min"
    peers = methods[1:]
    best = (min if lower else max)(peers, key=lambda m: means[m])
    gaps = np.array([r["minimlops"] - r[best] for r in rows])
    se = float(gaps.std(ddof=1) / np.sqrt(len(gaps))) if len(gaps) > 1 else float("nan")
    cells = " | ".join(f"{means[m]:.4g}" for m in methods)
    kept = sum(r["calibrated"] for r in rows)
    return (
        f"| {name} | {project.primary_metric} | {len(rows)} | {cells} | {best}: "
        f"{gaps.mean():+.4g} ± {se:.2g} | {kept} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="+", help="a bundled name, or NAME=PATH:TARGET")
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--no-calibration", action="store_true")
    parser.add_argument("--no-one-se", action="store_true", help="best by CV, never the linear")
    parser.add_argument("--out", type=Path, help="the summary in Markdown")
    args = parser.parse_args()
    if args.no_one_se:  # selection as before decision 0036: the best by cross-validation
        from minimlops.ml import selection

        selection._simplest_within_one_se = lambda best, *a, **kw: (best, {})
    if args.no_calibration:
        from minimlops.ml import calibration

        decide = calibration.decide

        def never(*a: Any, **kw: Any) -> dict[str, Any]:
            return {**decide(*a, **kw), "kept": False}

        calibration.decide = never
    lines = []
    with tempfile.TemporaryDirectory() as work:
        for spec in args.tables:
            if "=" in spec:
                name, rest = spec.split("=", 1)
                path, target = rest.rsplit(":", 1)
                project, table = drafted(name, Path(path), target, Path(work))
            else:
                name = spec
                project, table = bundled(name)
            rows = []
            for seed in range(args.splits):
                row = one_split(project, table, seed)
                print(json.dumps({"table": name, **row}), flush=True)
                rows.append(row)
            lines.append(summary(name, project, rows))
    header = (
        "| table | metric | splits | minimlops | LightGBM | HistGradientBoosting | linear "
        "| gap to the best default (± its standard error) | calibrations kept |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
    )
    text = header + "\n" + "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
