"""Model selection, fitting and evaluation: data in, fitted model and numbers out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.base import ClassifierMixin, clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from minimlops.ml import features

Progress = Callable[[str, int, int], None]
SELECTION_SAMPLE = 50_000  # rows used for cross-validation on big data sets
TREE_SAMPLE = 100_000  # rows each tree of a forest sees at most (bounds time and memory)


def candidates(seed: int, n_rows: int = 0) -> dict[str, ClassifierMixin]:
    """The estimators model selection chooses from, by name.

    Only estimators the fast serving path (ONNX) reproduces to 1e-5 are here:
    linear models and random forests. Histogram gradient boosting does not
    convert with the installed skl2onnx, and classic gradient boosting takes
    over 30 s on 700,000 rows, so neither is a candidate.
    """
    per_tree = None if n_rows <= TREE_SAMPLE else TREE_SAMPLE / n_rows
    # Two threads pay off from a few thousand rows; on the example's ~500 rows
    # per fold their start-up costs more than they save (1.6 s vs 2.0 s for
    # the whole selection). The trees are the same either way.
    jobs = 1 if n_rows < 2000 else 2
    return {
        "logistic_regression": make_pipeline(
            StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)),
        "random_forest": RandomForestClassifier(
            n_estimators=200, max_depth=7, min_samples_leaf=2,
            max_samples=per_tree, n_jobs=jobs, random_state=seed),
        "random_forest_deep": RandomForestClassifier(
            n_estimators=150, max_depth=12, min_samples_leaf=3, max_features=0.5,
            max_samples=per_tree, n_jobs=jobs, random_state=seed),
    }  # fmt: skip


@dataclass
class TrainedModel:
    """A fitted estimator with the feature spec it needs; predicts from dicts."""

    estimator: Any
    spec: dict[str, Any]
    algorithm: str
    feature_names: tuple[str, ...] = features.FEATURE_NAMES
    cv_scores: dict[str, float] = field(default_factory=dict)

    def predict_proba(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Survival probability of each passenger."""
        X = features.matrix(rows, self.spec)
        return np.asarray(self.estimator.predict_proba(X)[:, 1], dtype=np.float64)


def _sample(n: int, y: np.ndarray, seed: int) -> np.ndarray:
    if n <= SELECTION_SAMPLE:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, SELECTION_SAMPLE, replace=False))


def select_and_fit(
    rows: Sequence[Mapping[str, Any]] | Callable[[], Iterator[Sequence[Mapping[str, Any]]]],
    *, folds: int = 5, seed: int = 0, progress: Progress | None = None,
) -> TrainedModel:  # fmt: skip
    """Choose an estimator by cross-validated log loss on TRAIN rows, then fit it.

    Args:
        rows: TRAIN rows only, each with the label ``Survived``; or a function
            that yields them a chunk at a time, each time it is called (read
            twice: imputation values, then features). Only one chunk is ever
            held as Python dicts; the features go into one matrix (256 bytes
            a row). The caller bounds the rows (MINIMLOPS_TRAINING_MAX_ROWS).
        folds: number of stratified folds.
        seed: fixes the folds and the estimators' randomness.
        progress: called as ``progress(step, done, total)``.
    """
    chunks = rows if callable(rows) else lambda: iter([rows])
    sizes: list[int] = []

    def counted() -> Iterator[Mapping[str, Any]]:
        for chunk in chunks():
            sizes.append(len(chunk))
            yield from chunk

    spec = features.fit_spec(counted())
    X = np.empty((sum(sizes), len(features.FEATURE_NAMES)), dtype=np.float64)
    y = np.empty(sum(sizes), dtype=np.int64)
    at, changed = 0, "the training rows changed between their two reads"
    for chunk in chunks():  # written in place: one matrix, never two
        end = at + len(chunk)
        if end > len(y):
            raise ValueError(changed)
        X[at:end] = features.matrix(chunk, spec)
        y[at:end] = [int(r["Survived"]) for r in chunk]
        at = end
    if at != len(y):
        raise ValueError(changed)
    if len(np.unique(y)) < 2:
        raise ValueError("training needs both classes (Survived 0 and 1)")
    folds = max(2, min(folds, int(np.bincount(y).min())))
    pick = _sample(len(y), y, seed)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores: dict[str, float] = {}
    models = candidates(seed, len(y))
    for i, (name, est) in enumerate(models.items()):
        if progress:
            progress(f"cross-validating {name}", i, len(models) + 1)
        s = cross_val_score(clone(est), X[pick], y[pick], cv=cv, scoring="neg_log_loss")
        scores[name] = float(-s.mean())
    best = min(scores, key=lambda n: scores[n])
    if progress:
        progress(f"fitting {best} on {len(y):,} rows", len(models), len(models) + 1)
    fitted = clone(models[best]).fit(X, y)
    if "n_jobs" in fitted.get_params():
        # Threads help fitting; on one row at serving time they cost ~10 ms.
        fitted.set_params(n_jobs=1)
    return TrainedModel(fitted, spec, best, cv_scores=scores)


def scores(model: Any, chunks: Iterable[Sequence[Mapping[str, Any]]]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and the model's survival probabilities of labelled rows, given a
    chunk at a time (only one chunk is held as dicts)."""
    ys, ps = [np.empty(0, np.int64)], [np.empty(0, np.float64)]
    for chunk in chunks:
        if len(chunk):
            ys.append(np.fromiter((int(r["Survived"]) for r in chunk), np.int64, len(chunk)))
            ps.append(model.predict_proba(chunk))
    return np.concatenate(ys), np.concatenate(ps)


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Accuracy, ROC AUC, log loss, Brier score and calibration error of
    probabilities p for labels y."""
    if len(y) == 0:
        return {"rows": 0}
    out = {"rows": float(len(y)), "accuracy": float(accuracy_score(y, p >= 0.5)),
           "log_loss": float(log_loss(y, p, labels=[0, 1])),
           "brier": float(brier_score_loss(y, p))}  # fmt: skip
    if len(np.unique(y)) == 2:
        out["roc_auc"] = float(roc_auc_score(y, p))
    out["ece"] = expected_calibration_error(y, p)
    return out


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - predicted probability| over probability bins, weighted."""
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(y[mask].mean() - p[mask].mean())
    return float(total / len(y))


def gender_baseline(rows: pa.Table) -> float:
    """Accuracy of "women survive, men do not" on labelled rows."""
    if rows.num_rows == 0:
        return 0.0
    female, survived = pc.equal(rows.column("Sex"), "female"), pc.equal(rows.column("Survived"), 1)
    return int(pc.sum(pc.equal(female, survived)).as_py() or 0) / rows.num_rows
