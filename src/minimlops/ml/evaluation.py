"""The numbers behind a version's evaluation page, computed once at training
on VALIDATION rows and stored with the version (never recomputed per view).

Per task: binary, the ROC and precision-recall curves, a reliability diagram
and the confusion matrix at the serving threshold; multiclass, the confusion
matrix and per-class precision and recall; regression, predicted against
actual, residuals and their distribution. For every task: bootstrap intervals
of the metrics, and permutation importance of the raw input columns (what the
user sends, not the one-hot columns the model sees). Every list is bounded,
so a version's evaluation stays a few tens of kilobytes whatever the data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

CURVE_POINTS = 101  # at most, per curve
SCATTER_POINTS = 400  # at most, predicted against actual
HISTOGRAM_BINS = 20
RELIABILITY_BINS = 10
MAX_CLASSES = 50  # a confusion matrix beyond it is cut to the most frequent classes
IMPORTANCE_ROWS = 1000  # VALIDATION rows permutation importance uses at most
IMPORTANCE_REPEATS = 3
BOOTSTRAP = 200  # resamples for the metrics' intervals
FORMAT = 1


def _r(x: float, digits: int = 6) -> float:
    return float(round(float(x), digits))


def _thin(*columns: np.ndarray, at_most: int = CURVE_POINTS) -> list[list[float]]:
    """Columns of a curve kept at ``at_most`` evenly spaced points (ends kept)."""
    n = len(columns[0])
    keep = np.unique(np.linspace(0, n - 1, min(n, at_most)).round().astype(int)) if n else []
    return [[_r(c[i], 5) for c in columns] for i in keep]


def binary(
    y: np.ndarray, p: np.ndarray, classes: Sequence[Any], threshold: float = 0.5
) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

    out: dict[str, Any] = {}
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, p)
        precision, recall, _ = precision_recall_curve(y, p)
        out["roc"] = {"points": _thin(fpr, tpr), "columns": ["fpr", "tpr"]}
        out["precision_recall"] = {
            "points": _thin(recall[::-1], precision[::-1]),
            "columns": ["recall", "precision"],
            "average_precision": _r(average_precision_score(y, p)),
            "prevalence": _r(np.mean(y)),
        }
    which = np.minimum((p * RELIABILITY_BINS).astype(int), RELIABILITY_BINS - 1)
    bins = []
    for b in range(RELIABILITY_BINS):
        mask = which == b
        if mask.any():
            bins.append(
                {
                    "from": b / RELIABILITY_BINS,
                    "to": (b + 1) / RELIABILITY_BINS,
                    "predicted": _r(p[mask].mean()),
                    "observed": _r(y[mask].mean()),
                    "rows": int(mask.sum()),
                }
            )
    out["reliability"] = bins
    guess = (p >= threshold).astype(int)
    matrix = [[int(np.sum((y == a) & (guess == b))) for b in (0, 1)] for a in (0, 1)]
    out["confusion"] = {
        "labels": [str(c) for c in classes],
        "matrix": matrix,
        "threshold": threshold,
    }
    return out


def multiclass(y: np.ndarray, proba: np.ndarray, classes: Sequence[Any]) -> dict[str, Any]:
    k = len(classes)
    guess = np.argmax(proba, axis=1)
    keep = list(range(k))
    if k > MAX_CLASSES:  # the most frequent classes; the rest are left out and said so
        keep = sorted(np.argsort(-np.bincount(y, minlength=k))[:MAX_CLASSES].tolist())
    matrix = [[int(np.sum((y == a) & (guess == b))) for b in keep] for a in keep]
    per_class = []
    for c in keep:
        tp = int(np.sum((y == c) & (guess == c)))
        predicted, actual = int(np.sum(guess == c)), int(np.sum(y == c))
        per_class.append(
            {
                "class": str(classes[c]),
                "support": actual,
                "precision": _r(tp / predicted) if predicted else None,
                "recall": _r(tp / actual) if actual else None,
            }
        )
    return {
        "confusion": {
            "labels": [str(classes[c]) for c in keep],
            "matrix": matrix,
            "classes_left_out": k - len(keep),
        },
        "per_class": per_class,
    }


def regression(y: np.ndarray, value: np.ndarray, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    at = np.sort(rng.choice(len(y), min(len(y), SCATTER_POINTS), replace=False))
    residual = value - y
    counts, edges = np.histogram(residual, bins=HISTOGRAM_BINS)
    return {
        "scatter": {
            "columns": ["actual", "predicted"],
            "points": [[_r(y[i], 5), _r(value[i], 5)] for i in at],
            "rows": len(y),
        },
        "residuals": {
            "columns": ["predicted", "residual"],
            "points": [[_r(value[i], 5), _r(residual[i], 5)] for i in at],
        },
        "errors": {"edges": [_r(e, 5) for e in edges], "counts": counts.tolist()},
    }


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties counted half), in numpy."""
    from scipy.stats import rankdata

    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int(len(y) - pos.sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _auc_of_draws(y: np.ndarray, p: np.ndarray) -> Callable[[np.ndarray], float]:
    """ROC AUC of bootstrap draws of these rows, as :func:`_auc` gives on
    ``y[at], p[at]``, from one sort: a draw is a count per row, and the
    Mann-Whitney statistic a sum over the distinct scores of positive counts
    times the negative counts below (ties half). O(rows) a draw instead of a
    sort (~3 s of a 150,000-row VALIDATION's 200 draws)."""
    values, group = np.unique(p, return_inverse=True)
    pos = (y == 1).astype(np.float64)
    n, k = len(y), len(values)

    def auc(at: np.ndarray) -> float:
        w = np.bincount(at, minlength=n).astype(np.float64)
        wpos = np.bincount(group, weights=w * pos, minlength=k)
        wneg = np.bincount(group, weights=w * (1.0 - pos), minlength=k)
        n_pos, n_neg = wpos.sum(), wneg.sum()
        if not n_pos or not n_neg:
            return float("nan")
        below = np.cumsum(wneg) - wneg
        return float(np.sum(wpos * (below + 0.5 * wneg)) / (n_pos * n_neg))

    return auc


def _f1(y: np.ndarray, guess: np.ndarray, c: int) -> float:
    tp = np.sum((guess == c) & (y == c))
    denominator = np.sum(guess == c) + np.sum(y == c)
    return float(2 * tp / denominator) if denominator else 0.0


def quick_metrics(
    task: str,
    y: np.ndarray,
    out: np.ndarray,
    n_classes: int = 2,
    *,
    auc: bool = True,
    threshold: float = 0.5,
) -> dict[str, float]:
    """The task's metrics as :func:`metrics.metrics` computes them (bar the
    calibration error), in plain numpy: ~50x cheaper, for the bootstrap and
    permutation importance, which compute them hundreds of times."""
    if task == "regression":
        err = out - y
        found = {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}
        spread = float(np.sum((y - y.mean()) ** 2))
        if len(y) > 1 and spread > 0:
            found["r2"] = 1.0 - float(np.sum(err**2)) / spread
        return found
    if task == "multiclass":
        clipped = np.clip(out, 1e-15, 1)
        clipped = clipped / clipped.sum(axis=1, keepdims=True)
        guess = np.argmax(out, axis=1)
        return {
            "accuracy": float(np.mean(guess == y)),
            "log_loss": float(-np.mean(np.log(clipped[np.arange(len(y)), y]))),
            "macro_f1": float(np.mean([_f1(y, guess, c) for c in range(n_classes)])),
        }
    p = np.clip(out, 1e-15, 1 - 1e-15)
    guess = (out >= threshold).astype(np.int64)
    found = {
        "accuracy": float(np.mean(guess == y)),
        "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        "brier": float(np.mean((out - y) ** 2)),
        "f1": _f1(y, guess, 1),
    }
    if auc:
        found["roc_auc"] = _auc(y, out)
    return found


def intervals(
    task: str, y: np.ndarray, out: np.ndarray, n_classes: int, seed: int, threshold: float = 0.5
) -> dict[str, list[float]]:
    """95 % bootstrap intervals of the task's metrics on these rows."""
    if len(y) < 10:
        return {}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    auc = _auc_of_draws(y, out) if task == "binary" else None
    for _ in range(BOOTSTRAP):
        at = rng.integers(0, len(y), len(y))
        if task != "regression" and len(np.unique(y[at])) < 2:
            continue
        found = quick_metrics(task, y[at], out[at], n_classes, auc=auc is None, threshold=threshold)
        if auc is not None:
            found["roc_auc"] = auc(at)
        for name, value in found.items():
            if name != "rows" and np.isfinite(value):
                draws.setdefault(name, []).append(value)
    return {
        name: [_r(np.percentile(v, 2.5)), _r(np.percentile(v, 97.5))]
        for name, v in draws.items()
        if len(v) >= BOOTSTRAP // 2
    }


def permutation_importance(
    output: Callable[[Sequence[Mapping[str, Any]]], np.ndarray],
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    score: Callable[[np.ndarray], float],
    direction: str,
    seed: int,
) -> list[dict[str, Any]]:
    """How much the primary metric (``score`` of the outputs on ``rows``)
    worsens when one raw column's values are shuffled across the rows (mean
    and spread over a few shuffles), most important first. Derived features
    follow the columns they are made of."""
    rng = np.random.default_rng(seed)
    base = score(output(rows))
    worse = 1.0 if direction == "min" else -1.0
    found = []
    for column in columns:
        values = [r.get(column) for r in rows]
        drops = []
        for _ in range(IMPORTANCE_REPEATS):
            order = rng.permutation(len(rows))
            shuffled = [{**r, column: values[j]} for r, j in zip(rows, order, strict=True)]
            drops.append(worse * (score(output(shuffled)) - base))
        found.append(
            {"column": column, "importance": _r(np.mean(drops)), "spread": _r(np.std(drops))}
        )
    return sorted(found, key=lambda e: -e["importance"])


def evaluate(
    task: str,
    y: np.ndarray,
    out: np.ndarray,
    classes: Sequence[Any] | None,
    *,
    seed: int = 0,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """The task's plots' numbers and the metrics' intervals (without importance)."""
    result: dict[str, Any] = {"format": FORMAT, "task": task, "rows": len(y)}
    if len(y) == 0:
        return result
    k = len(classes or ())
    if task == "binary":
        result.update(binary(y, out, classes or (0, 1), threshold))
    elif task == "multiclass":
        result.update(multiclass(y, out, classes or ()))
    else:
        result.update(regression(y, out, seed))
    result["intervals"] = intervals(task, y, out, k, seed, threshold)
    return result
