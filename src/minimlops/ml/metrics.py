"""The task's metrics, its baselines, and scoring a model on labelled rows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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

from minimlops.ml.outputs import labels, predicted

Rows = Sequence[Mapping[str, Any]]


def metrics(
    task: str, y: np.ndarray, out: np.ndarray, n_classes: int = 2, threshold: float = 0.5
) -> dict[str, float]:
    """The task's metrics of outputs ``out`` for labels ``y``.

    binary: accuracy, ROC AUC, log loss, Brier score, F1 and calibration error
    (accuracy and F1 of the answers at ``threshold``: the project's);
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
    guess = predicted(task, out, threshold)
    out_m["accuracy"] = float(accuracy_score(y, guess))
    if task == "multiclass":
        labels_ = list(range(n_classes))
        clipped = np.clip(out, 1e-15, 1)
        out_m["macro_f1"] = float(
            f1_score(y, guess, labels=labels_, average="macro", zero_division=0)
        )
        out_m["log_loss"] = float(
            log_loss(y, clipped / clipped.sum(axis=1, keepdims=True), labels=labels_)
        )
        return out_m
    out_m.update(
        log_loss=float(log_loss(y, out, labels=[0, 1])),
        brier=float(brier_score_loss(y, out, pos_label=1)),
        f1=float(f1_score(y, guess, zero_division=0)),
    )
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


def scores(
    model: Any, chunks: Iterable[Rows], target: str, classes: Sequence[Any] | None
) -> tuple[np.ndarray, np.ndarray]:
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
