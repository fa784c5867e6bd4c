"""Model selection, fitting and evaluation per task: data in, fitted model and numbers out.

The task (binary, multiclass, regression) comes from the project; classes are
the target's values as written in the data, encoded as their index in the
project's class list (for binary: 0 the negative, 1 the positive class).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)

from minimlops.domain.project import Project
from minimlops.ml import features, selection
from minimlops.ml.fast import calibrate, expand

Progress = Callable[[str, int, int], None]
Rows = Sequence[Mapping[str, Any]]
BUDGET_S = 30.0  # seconds model selection may take by default (MINIMLOPS_TRAINING_BUDGET)
IMBALANCE = 0.1  # minority share under which class weights are tried (MINIMLOPS_IMBALANCE)


@dataclass
class TrainedModel:
    """A fitted estimator with the feature spec it needs; predicts from dicts."""

    estimator: Any
    spec: dict[str, Any]
    algorithm: str
    feature_names: tuple[str, ...] = ()
    cv_scores: dict[str, float] = field(default_factory=dict)
    derive: features.Derive = field(default_factory=dict, repr=False)
    selection: selection.Selection | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.features = features.FeatureSet(self.spec, self.derive)
        self.task = self.spec["task"]
        if not self.feature_names:
            self.feature_names = self.features.names

    def output(self, rows: Rows) -> np.ndarray:
        """Per row: binary, the positive class's probability; multiclass, every
        class's probability (one column per project class); regression, the value."""
        X = self.features.matrix(rows)
        if self.task == "regression":
            return np.asarray(self.estimator.predict(X), dtype=np.float64)
        out = expand(self.spec, np.asarray(self.estimator.predict_proba(X), dtype=np.float64))
        return calibrate(self.spec.get("calibration"), out)

    predict_proba = output  # the binary name, kept for callers that read probabilities

    def values(self, rows: Rows) -> list[Any]:
        """:meth:`output` as Python values, one a row (as ``OnnxModel.values``)."""
        return self.output(rows).tolist()  # type: ignore[no-any-return]


def labels(project: Project | Mapping[str, Any], values: Sequence[Any]) -> np.ndarray:
    """Target values as the model's labels: class indices, or floats for regression.

    Raises:
        ValueError: a value is not one of the project's classes.
    """
    task = project.task if isinstance(project, Project) else project["task"]
    if task == "regression":
        return np.asarray(values, dtype=np.float64)
    classes = project.classes if isinstance(project, Project) else project["classes"]
    index = {c: i for i, c in enumerate(classes or ())}
    try:
        return np.fromiter((index[v] for v in values), np.int64, len(values))
    except KeyError as exc:
        raise ValueError(f"target value {exc.args[0]!r} is not one of the classes "
                         f"{list(classes or ())}") from None  # fmt: skip


def select_and_fit(
    rows: Rows | Callable[[], Iterator[Rows]], project: Project, derive: features.Derive, *,
    folds: int = 5, seed: int = 0, progress: Progress | None = None,
    budget_s: float = BUDGET_S, imbalance_threshold: float = IMBALANCE,
) -> TrainedModel:  # fmt: skip
    """Choose an estimator by cross-validation on TRAIN rows on the project's
    primary metric (see ``ml.selection``), then fit it on all of them.

    Args:
        rows: TRAIN rows only, each with the target; or a function that yields
            them a chunk at a time, each time it is called (read twice:
            feature statistics, then features). Only one chunk is ever held as
            Python dicts; the features go into one matrix. The caller bounds
            the rows (MINIMLOPS_TRAINING_MAX_ROWS).
        project: the data set (task, target, classes, features).
        derive: the project's derived-feature functions.
        folds: number of (stratified, for classification) folds.
        seed: fixes the folds and the estimators' randomness.
        progress: called as ``progress(step, done, total)``.
        budget_s: seconds selection may take; candidates not started by then
            are skipped (and listed as such).
        imbalance_threshold: minority-class share under which class weights
            are tried as well.
    """
    chunks = rows if callable(rows) else lambda: iter([rows])
    sizes: list[int] = []

    def counted() -> Iterator[Mapping[str, Any]]:
        for chunk in chunks():
            sizes.append(len(chunk))
            yield from chunk

    spec = features.fit_spec(counted(), project, derive)
    fs = features.FeatureSet(spec, derive)
    X = np.empty((sum(sizes), fs.width), dtype=np.float64)
    y = np.empty(sum(sizes), dtype=np.float64 if project.task == "regression" else np.int64)
    at, changed = 0, "the training rows changed between their two reads"
    for chunk in chunks():  # written in place: one matrix, never two
        end = at + len(chunk)
        if end > len(y):
            raise ValueError(changed)
        X[at:end] = fs.matrix(chunk)
        y[at:end] = labels(project, [r[project.target] for r in chunk])
        at = end
    if at != len(y):
        raise ValueError(changed)
    return _choose(X, y, spec, project, derive, folds=folds, seed=seed, progress=progress,
                   budget_s=budget_s, imbalance_threshold=imbalance_threshold)


def _choose(X: np.ndarray, y: np.ndarray, spec: dict[str, Any], project: Project,
            derive: features.Derive, *, folds: int, seed: int, progress: Progress | None,
            budget_s: float, imbalance_threshold: float) -> TrainedModel:  # fmt: skip
    task = project.task
    if task != "regression":
        present = np.unique(y)
        if len(present) < 2:
            raise ValueError(f"training needs two classes or more of {project.target}; "
                             f"TRAIN has only {[project.classes[i] for i in present]}")  # fmt: skip
        spec["fitted_classes"] = [int(c) for c in present]
    n_classes = len(project.classes or ()) if task != "regression" else 0
    chosen = selection.select(X, y, task=task, n_classes=n_classes, metric=project.primary_metric,
                              direction=project.metric_direction, folds=folds, seed=seed,
                              budget_s=budget_s, imbalance_threshold=imbalance_threshold,
                              progress=progress)  # fmt: skip
    name = chosen.chosen.name
    steps = len(chosen.leaderboard) + 1
    if progress:
        progress(f"fitting {name} on {len(y):,} rows", steps - 1, steps)
    fitted = selection.fit_chosen(chosen, task, X, y, seed)
    if "n_jobs" in fitted.get_params():
        # Threads help fitting; on one row at serving time they cost ~10 ms.
        fitted.set_params(n_jobs=1)
    scores = {e["name"]: e["cv"][project.primary_metric] for e in chosen.leaderboard
              if e.get("status") == "scored" and project.primary_metric in e["cv"]}  # fmt: skip
    return TrainedModel(fitted, spec, name, cv_scores=scores, derive=derive, selection=chosen)


def scores(model: Any, chunks: Iterable[Rows], target: str,
           classes: Sequence[Any] | None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Labels and the model's outputs on labelled rows, given a chunk at a time
    (only one chunk is held as dicts)."""
    task = model.spec["task"]
    spec = {"task": task, "classes": classes}
    ys, outs = [], []
    for chunk in chunks:
        if len(chunk):
            ys.append(labels(spec, [r[target] for r in chunk]))
            outs.append(model.output(chunk))
    if not ys:
        k = len(classes or ())
        empty = np.empty((0, k)) if task == "multiclass" else np.empty(0)
        return np.empty(0, np.float64 if task == "regression" else np.int64), empty
    return np.concatenate(ys), np.concatenate(outs)


def predicted(task: str, out: np.ndarray) -> np.ndarray:
    """The predicted label of each output: 1 at probability >= 0.5 (binary), the
    most probable class (multiclass), the value (regression)."""
    if task == "binary":
        return (out >= 0.5).astype(np.int64)
    if task == "multiclass":
        return np.argmax(out, axis=1) if len(out) else np.empty(0, np.int64)
    return out


def metrics(task: str, y: np.ndarray, out: np.ndarray, n_classes: int = 2) -> dict[str, float]:
    """The task's metrics of outputs ``out`` for labels ``y``.

    binary: accuracy, ROC AUC, log loss, Brier score, F1 and calibration error;
    multiclass: accuracy, macro F1, log loss; regression: RMSE, MAE, R².
    """
    if len(y) == 0:
        return {"rows": 0}
    out_m: dict[str, float] = {"rows": float(len(y))}
    if task == "regression":
        err = out - y
        out_m.update(rmse=float(np.sqrt(np.mean(err**2))), mae=float(mean_absolute_error(y, out)))
        if len(y) > 1 and np.var(y) > 0:
            out_m["r2"] = float(r2_score(y, out))
        return out_m
    guess = predicted(task, out)
    out_m["accuracy"] = float(accuracy_score(y, guess))
    if task == "multiclass":
        labels_ = list(range(n_classes))
        clipped = np.clip(out, 1e-15, 1)
        out_m["macro_f1"] = float(f1_score(y, guess, labels=labels_, average="macro",
                                           zero_division=0))  # fmt: skip
        out_m["log_loss"] = float(log_loss(y, clipped / clipped.sum(axis=1, keepdims=True),
                                           labels=labels_))  # fmt: skip
        return out_m
    out_m.update(log_loss=float(log_loss(y, out, labels=[0, 1])),
                 brier=float(brier_score_loss(y, out, pos_label=1)),
                 f1=float(f1_score(y, guess, zero_division=0)))  # fmt: skip
    if len(np.unique(y)) == 2:
        out_m["roc_auc"] = float(roc_auc_score(y, out))
    out_m["ece"] = expected_calibration_error(y, out)
    return out_m


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - predicted probability| over probability bins, weighted."""
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(y[mask].mean() - p[mask].mean())
    return float(total / len(y))


def baseline(task: str, train_y: np.ndarray, y: np.ndarray, n_classes: int = 2) -> dict[str, float]:
    """The task's baseline on labels ``y``, learned from TRAIN labels: the class
    priors (classification: the majority class's accuracy, the priors' log
    loss) or the TRAIN mean (regression)."""
    if len(y) == 0 or len(train_y) == 0:
        return {}
    if task == "regression":
        return metrics(task, y, np.full(len(y), float(np.mean(train_y))))
    priors = np.bincount(train_y, minlength=n_classes) / len(train_y)
    out = np.tile(priors, (len(y), 1))
    result = metrics(task, y, out[:, 1] if task == "binary" else out, n_classes)
    result["accuracy"] = float(np.mean(y == int(np.argmax(priors))))
    return result


def gender_baseline(rows: pa.Table) -> float:
    """Titanic's own extra baseline: accuracy of "women survive, men do not"."""
    if rows.num_rows == 0:
        return 0.0
    female, survived = pc.equal(rows.column("Sex"), "female"), pc.equal(rows.column("Survived"), 1)
    return int(pc.sum(pc.equal(female, survived)).as_py() or 0) / rows.num_rows
