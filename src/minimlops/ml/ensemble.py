"""A weighted ensemble of selection's candidates, chosen by greedy ensemble
selection over their out-of-fold predictions (Caruana et al., 2004; what
AutoGluon's and auto-sklearn's final ensembles do).

Members combine as a weighted mean of their outputs: probabilities
(classifiers) or values (regressors). Not a mean in log space (a geometric
mean of probabilities), although its log-odds would be the weighted sum of
the members' and make attributions add up exactly: log space magnifies the
float32 rounding of a probability near 0 or 1 (a forest's 0 that ONNX
computes as 6.6e-7) into differences of 0.017 in the ensemble's
probability, far past the fast path's parity tolerance (measured on the
Titanic example). A weighted mean keeps any difference within the members'.

Whether to serve the ensemble is decided honestly: weights fitted on the
out-of-fold rows look better on those rows than they are, so the ensemble's
figure is itself cross-fitted (weights chosen on four fifths of the
out-of-fold rows, scored on the fifth) and compared with the best single
candidate's on the same rows. Only a better figure serves it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ROUNDS = 25  # greedy additions (with replacement): weights are multiples of 1/ROUNDS
MAX_MEMBERS = 4  # distinct members at most: each costs a serving row its trees
# an ensemble costs serving, fitting and refitting its members' sum: it serves
# only when its cross-fitted figure is better by more than this share
MARGIN = 0.002
# a member stays only if the blend without it is worse by more than this share
# of the figure its weights are chosen on (see _pruned)
MEMBER_MARGIN = 0.002
CROSS_FIT = 5  # folds over the out-of-fold rows for the ensemble's own figure


def blend(task: str, outputs: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The ensemble's output from its members' task outputs (as
    ``selection.output_of``: the positive class's probability, every
    class's probabilities, or the value): their weighted mean."""
    return np.asarray(sum(w * np.asarray(o) for w, o in zip(weights, outputs, strict=True)))


class Ensemble:
    """Fitted members and their weights, predicting as one estimator
    (``predict_proba`` for classifiers, ``predict`` for regressors)."""

    def __init__(
        self, members: Sequence[Any], weights: Sequence[float], names: Sequence[str], task: str
    ) -> None:
        self.members = list(members)
        self.weights = [float(w) for w in weights]
        self.names = list(names)
        self.task = task
        if task != "regression":
            self.classes_ = np.asarray(self.members[0].classes_)
            for m in self.members[1:]:
                if not np.array_equal(np.asarray(m.classes_), self.classes_):
                    raise ValueError("an ensemble's members must be fitted on the same classes")

    def predict_proba(self, X: Any) -> np.ndarray:
        return blend(
            self.task,
            [np.asarray(m.predict_proba(X), dtype=np.float64) for m in self.members],
            self.weights,
        )

    def predict(self, X: Any) -> np.ndarray:
        if self.task == "regression":
            return blend(
                self.task,
                [np.asarray(m.predict(X), dtype=np.float64) for m in self.members],
                self.weights,
            )
        return np.asarray(self.classes_[np.argmax(self.predict_proba(X), axis=1)])

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"n_jobs": None}

    def set_params(self, **params: Any) -> Ensemble:
        """Passed on to every member that takes it (``n_jobs=1`` for serving)."""
        for m in self.members:
            known = m.get_params()
            m.set_params(**{k: v for k, v in params.items() if k in known})
        return self

    def describe(self) -> str:
        return " + ".join(f"{w:.2f} {n}" for w, n in zip(self.weights, self.names, strict=True))


def score(
    task: str, metric: str, y: np.ndarray, out: np.ndarray, n_classes: int, threshold: float = 0.5
) -> float:
    """One metric of outputs ``out`` for labels ``y`` (the primary metric;
    a binary answer's at ``threshold``)."""
    from minimlops.ml.metrics import metrics

    if metric == "log_loss":
        if task == "binary":
            p = np.clip(out, 1e-15, 1 - 1e-15)
            return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        p = np.clip(out, 1e-15, 1)
        p = p / p.sum(axis=1, keepdims=True)
        return float(-np.mean(np.log(p[np.arange(len(y)), y])))
    if metric == "rmse":
        return float(np.sqrt(np.mean((out - y) ** 2)))
    if metric == "mae":
        return float(np.mean(np.abs(out - y)))
    if metric == "accuracy":
        guess = (out >= threshold).astype(np.int64) if task == "binary" else np.argmax(out, axis=1)
        return float(np.mean(guess == y))
    if metric == "brier":
        return float(np.mean((out - y) ** 2))
    return float(metrics(task, y, out, n_classes, threshold).get(metric, np.nan))


def objective(task: str, metric: str, direction: str) -> tuple[str, str]:
    """What greedy selection minimises: the primary metric when it scores
    probabilities or values smoothly; else log loss (accuracy, F1 and ROC AUC
    move in steps, and adding a member rarely changes them on a few hundred
    rows) or RMSE (R² ranks as RMSE does). Whether to serve the ensemble is
    still decided on the primary metric."""
    if metric in ("log_loss", "brier", "rmse", "mae"):
        return metric, direction
    return ("rmse" if task == "regression" else "log_loss"), "min"


@dataclass
class Choice:
    """Greedy selection's result: members (indices into the candidates given)
    with weights summing to 1, and the figures that decided."""

    members: list[int]
    weights: list[float]
    cross_fitted: float  # the ensemble's primary metric, weights fitted out of fold
    best_single: float  # the best single candidate's on the same rows
    best_index: int
    outputs: np.ndarray  # the ensemble's cross-fitted outputs on the out-of-fold rows


def greedy(
    task: str,
    metric: str,
    direction: str,
    y: np.ndarray,
    outputs: Sequence[np.ndarray],
    n_classes: int,
    rounds: int = ROUNDS,
    max_members: int = MAX_MEMBERS,
) -> tuple[list[int], list[float]]:
    """Caruana's greedy selection with replacement: start from the best
    candidate, then add (again) whichever one most improves the blend's
    metric (see :func:`objective`), ``rounds`` times; then drop the members
    that do not pay for their place (:func:`_pruned`). Returns member indices
    and weights. The blend is kept as a running sum, so each trial costs one
    pass over the rows."""
    metric, direction = objective(task, metric, direction)
    sign = 1.0 if direction == "min" else -1.0
    outs = [np.asarray(o, dtype=np.float64) for o in outputs]
    singles = [sign * score(task, metric, y, o, n_classes) for o in outputs]
    first = int(np.nanargmin(singles))
    counts = {first: 1}
    total = outs[first].copy()
    for n in range(2, rounds + 1):
        allowed = list(counts) if len(counts) >= max_members else range(len(outputs))
        best: tuple[float, int] | None = None
        for j in allowed:
            value = sign * score(task, metric, y, (total + outs[j]) / n, n_classes)
            if np.isfinite(value) and (best is None or value < best[0] - 1e-12):
                best = (value, j)
        if best is None:
            break
        counts[best[1]] = counts.get(best[1], 0) + 1
        total += outs[best[1]]
    counts = _pruned(counts, lambda c: sign * _blend_score(task, metric, y, outs, c, n_classes))
    members = sorted(counts)
    added = sum(counts.values())
    return members, [counts[i] / added for i in members]


def _blend_score(
    task: str,
    metric: str,
    y: np.ndarray,
    outs: Sequence[np.ndarray],
    counts: dict[int, int],
    n_classes: int,
) -> float:
    added = sum(counts.values())
    members = sorted(counts)
    return score(
        task,
        metric,
        y,
        blend(task, [outs[i] for i in members], [counts[i] / added for i in members]),
        n_classes,
    )


def _pruned(counts: dict[int, int], value: Callable[[dict[int, int]], float]) -> dict[int, int]:
    """Greedy selection's members without those that do not pay for their
    place: while the blend without one more member (the others' weights
    scaled up) is worse than greedy selection's whole blend by at most
    ``MEMBER_MARGIN`` of the figure the weights are chosen on (see
    :func:`objective`; on the rows they were chosen on), that member goes,
    the one whose loss costs least first, so in all that figure moves by at
    most ``MEMBER_MARGIN``. Each member costs a served row its trees: in the
    wide example's ensemble, a boosted-trees member picked once in 25 rounds
    (weight 0.04) took 3.3 of the 7.0 ms onnxruntime spent on 500 rows
    (its profiler). ``value``: a blend's figure, lower is better."""
    counts = dict(counts)
    whole = value(counts)
    if not np.isfinite(whole):
        return counts
    while len(counts) > 1:
        trials = [(value({i: c for i, c in counts.items() if i != j}), j) for j in sorted(counts)]
        finite = [t for t in trials if np.isfinite(t[0])]
        if not finite:
            break
        figure, member = min(finite)
        if figure - whole > MEMBER_MARGIN * abs(whole):
            break
        del counts[member]
    return counts


def choose(
    task: str,
    metric: str,
    direction: str,
    y: np.ndarray,
    outputs: Sequence[np.ndarray],
    n_classes: int,
    seed: int,
    repeats: int = 1,
    folds: np.ndarray | None = None,
    threshold: float = 0.5,
) -> Choice | None:
    """Greedy selection on all the out-of-fold rows, and its cross-fitted
    figure against the best single candidate's; None with fewer than two
    candidates or too few rows to cross-fit. ``y`` and ``outputs`` may hold
    ``repeats`` repeated cross-validations' rows one after the other.
    ``folds`` (one a row, of one repetition): the cross-fit's folds, when
    rows are not exchangeable (whole groups, blocks of time); else random."""
    if len(outputs) < 2 or len(y) < 2 * CROSS_FIT:
        return None
    sign = 1.0 if direction == "min" else -1.0
    singles = [score(task, metric, y, o, n_classes, threshold) for o in outputs]
    best_index = int(np.nanargmin([sign * s for s in singles]))
    rng = np.random.default_rng(seed)
    # ``repeats`` cross-validations one after the other: a row's outputs in
    # each stay on one side, so weights are never fitted on the row they score
    n = len(y) // repeats
    fold = np.tile(rng.permutation(n) % CROSS_FIT if folds is None else folds, repeats)
    fitted = np.zeros_like(np.asarray(outputs[0], dtype=np.float64))
    for k in range(CROSS_FIT):
        train, held = fold != k, fold == k
        if not held.any() or not train.any():  # fewer groups than folds
            continue
        members, weights = greedy(
            task, metric, direction, y[train], [o[train] for o in outputs], n_classes
        )
        fitted[held] = blend(task, [outputs[i][held] for i in members], weights)
    members, weights = greedy(task, metric, direction, y, outputs, n_classes)
    return Choice(
        members,
        weights,
        score(task, metric, y, fitted, n_classes, threshold),
        singles[best_index],
        best_index,
        fitted,
    )
