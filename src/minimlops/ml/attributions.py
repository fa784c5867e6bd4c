"""Shapley attributions that add up: per input, how far it moved a row's raw
output away from the model's base value, so that ``base + sum == raw output``.

Why a raw output, and which: the attributions of a sum are the sum of the
attributions, so they are exact in the space where the model adds things up.
That is the log-odds for binary, the predicted class's score (a logit: the
class scores' softmax is the probabilities) for multiclass, the value for
regression; always BEFORE the version's calibration (``spec["calibration"]``,
which maps a probability to a probability and has no inputs of its own).

By estimator (the candidates of ``ml.candidates`` and their ``Ensemble``):

- linear (``StandardScaler`` then ``LogisticRegression`` or ``Ridge``):
  exact, ``phi_j = coef_j * (x_j - mean_j) / scale_j``; the base is the model
  at the training mean (per class for a multinomial model).
- LightGBM: its own exact TreeSHAP, ``predict(X, pred_contrib=True)``.
- random forest: exact TreeSHAP by the ``shap`` package (the ``explain``
  extra: it brings numba and pandas, kept out of the Cloud bundle) on the forest's own
  output, a probability (the mean of the trees'). A probability is not
  log-odds, so classifiers' attributions are then rescaled, row by row, to
  sum to ``logit(p) - logit(base)`` (multiclass: ``log p_c - log base_c``,
  a class score whose softmax is p): local accuracy stays exact; how the
  total splits among inputs is the probability-space split, an
  approximation of the log-odds one (the secant of the link between the
  base and the row, not its curve per input). Probabilities are floored at
  ``FLOOR`` first (a forest's 0 or 1 has no finite log-odds).
- ``Ensemble`` (``ml.ensemble``): a regressor's value is the weighted mean
  of its members' values, so its attributions are the weighted sum of
  theirs, exact. A classifier's probability is the weighted mean of its
  members' probabilities (not of their log-odds: see ``ml.ensemble`` for
  why), so the members' attributions are taken to probability space (a
  forest's are there already; a linear or boosted member's go through its
  link: the sigmoid's secant for binary, for multiclass the softmax's
  Jacobian averaged along the path from the base's class scores to the
  row's, since a class's probability moves with every class's score),
  summed with the weights (exact in probability space),
  then rescaled to add up to the ensemble's log-odds (class score
  ``log p_c``): local accuracy exact, the split approximate, as a forest's.

Features to input columns: a feature's one-hot slots, frequency, target
encoding and missing indicator add up to the feature; a feature adds up to the input column it
reads; a derived feature reading several inputs gives each an equal share
(Shapley values of the features, not of the inputs: how a derived feature
depends on each of its inputs is code we cannot see into). Both levels are
returned.

Only numpy at import: the serving process imports this module, and loads
scikit-learn (and shap, for forests) only when it explains.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from minimlops.ml.ensemble import Ensemble
from minimlops.ml.features import feature_names

if TYPE_CHECKING:
    from minimlops.ml.model import TrainedModel

SPACES = {"binary": "log-odds", "multiclass": "logit", "regression": "value"}
FLOOR = 1e-15  # probabilities are clipped here before their log (a forest's 0 or 1)
TINY = 1e-12  # a change of output below this is read as none (see _rescaled)
PATH_POINTS, PANEL = 16, 4.0  # the softmax's path: points a panel, logits a panel (_to_probability)

# (base (n, k), slot attributions (n, k, width)) of a feature matrix
Slots = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class Explained:
    """Attributions of n rows: ``k`` outputs each (1 for binary and
    regression; one per fitted class for multiclass, ``classes`` holding their
    index among the project's classes), by feature and by input column."""

    space: str
    method: str
    classes: list[int]
    base: np.ndarray  # (n, k)
    raw: np.ndarray  # (n, k): base + by_feature.sum(-1)
    features: list[str]
    feature_inputs: list[tuple[str, ...]]
    by_feature: np.ndarray  # (n, k, features)
    inputs: list[str]
    by_input: np.ndarray  # (n, k, inputs)

    def shown(self) -> np.ndarray:
        """Per row, the output a person is shown: the only one, or the
        predicted (highest-scoring) class's column."""
        if self.raw.shape[1] == 1:
            return np.zeros(len(self.raw), dtype=np.int64)
        return np.argmax(self.raw, axis=1)


class Attributor:
    """A model's attribution method, prepared once (a forest's TreeSHAP
    explainer takes ~40 ms to build; a row then takes a few)."""

    def __init__(self, model: TrainedModel) -> None:
        self.model, self.task = model, model.task
        self.k = 1 if self.task != "multiclass" else len(_classes(model.estimator))
        self.method, self._slots = _method(model.estimator, self.task, self.k)
        self.groups = groups(model.spec)
        self.inputs = list(dict.fromkeys(c for _, ins, _, _ in self.groups for c in ins))
        where = {c: i for i, c in enumerate(self.inputs)}
        share = np.zeros((len(self.groups), len(self.inputs)))
        for g, (_, ins, _, _) in enumerate(self.groups):
            for c in ins:  # a derived feature of several inputs: equal shares
                share[g, where[c]] += 1.0 / len(ins)
        self._share = share

    def explain(self, rows: Sequence[Mapping[str, Any]]) -> Explained:
        """Attributions of rows (dicts or request structs, as ``FeatureSet.matrix``).

        Raises:
            DerivedFeatureError: a derived feature raised on a row.
        """
        fs = self.model.features
        # one row: its vector in plain Python (~3 us; the matrix's set-up ~30)
        X = np.asarray([fs.vector(rows[0])]) if len(rows) == 1 else fs.matrix(rows)
        return self.explain_matrix(X)

    def explain_matrix(self, X: np.ndarray) -> Explained:
        base, slots = self._slots(X)
        by_feature = np.stack([slots[:, :, a:b].sum(axis=2) for _, _, a, b in self.groups], axis=2)
        est = self.model.estimator
        return Explained(
            space=SPACES[self.task],
            method=self.method,
            classes=[int(c) for c in _classes(est)] if self.task == "multiclass" else [],
            base=base,
            raw=base + slots.sum(axis=2),
            features=[name for name, _, _, _ in self.groups],
            feature_inputs=[ins for _, ins, _, _ in self.groups],
            by_feature=by_feature,
            inputs=self.inputs,
            by_input=by_feature @ self._share,
        )


def groups(spec: Mapping[str, Any]) -> list[tuple[str, tuple[str, ...], int, int]]:
    """Each feature of a spec: its name, the input columns it reads, and its
    slots ``[start, stop)`` among the model's columns (``feature_names`` order)."""
    out, at = [], 0
    for col in spec["columns"]:
        if col["kind"] == "categorical":
            width = (len(col["categories"]) + 1) * col.get("one_hot", True)
            width += col.get("frequency") is not None
            width += len((col.get("target_encoding") or {}).get("outputs") or ())
        else:
            width = 2 if col["indicator"] else 1
        if col["derived"]:
            inputs = tuple(col.get("inputs") or (col["name"],))
        elif col.get("date"):
            inputs = (col["date"][0],)
        else:
            inputs = (col["name"],)
        out.append((col["name"], inputs, at, at + width))
        at += width
    if at != len(feature_names(spec)):  # never seen: the two readings of a spec agree
        raise ValueError(f"{at} feature slots for {len(feature_names(spec))} model columns")
    return out


def raw_output(estimator: Any, X: np.ndarray, task: str) -> np.ndarray:
    """The model's raw output, (n, k), computed from the estimator's own
    prediction (not from attributions): log-odds, class scores, values. What
    attributions must add up to (the tests hold them to it)."""
    if isinstance(estimator, Ensemble) and task == "regression":
        return np.asarray(
            sum(
                w * raw_output(m, X, task)
                for w, m in zip(estimator.weights, estimator.members, strict=True)
            )
        )
    if isinstance(estimator, Ensemble):  # its probabilities' log-odds or logs
        return _forest_raw(np.asarray(estimator.predict_proba(X), dtype=np.float64), task)
    kind = _kind(estimator)
    if kind == "linear":
        final = estimator[-1]
        z = (
            estimator.decision_function(X)
            if hasattr(final, "predict_proba")
            else estimator.predict(X)
        )
        return _classes_wide(np.asarray(z, dtype=np.float64).reshape(len(X), -1), task)
    if kind == "lightgbm":
        z = estimator.predict(X, raw_score=True)
        return _classes_wide(np.asarray(z, dtype=np.float64).reshape(len(X), -1), task)
    if task == "regression":
        return np.asarray(estimator.predict(X), dtype=np.float64).reshape(-1, 1)
    return _forest_raw(np.asarray(estimator.predict_proba(X), dtype=np.float64), task)


def mean_abs(explained: Explained) -> list[dict[str, Any]]:
    """Mean |attribution| per input column over the rows (each row's shown
    output: the predicted class's for multiclass), largest first."""
    rows = np.arange(len(explained.raw))
    chosen = explained.by_input[rows, explained.shown(), :]
    means = np.abs(chosen).mean(axis=0) if len(rows) else np.zeros(len(explained.inputs))
    out = [
        {"column": c, "mean_abs": float(round(float(m), 6))}
        for c, m in zip(explained.inputs, means, strict=True)
    ]
    return sorted(out, key=lambda e: -e["mean_abs"])


def _kind(est: Any) -> str:
    name = type(est).__name__
    if hasattr(est, "steps"):
        return "linear"
    if name.startswith("LGBM"):
        return "lightgbm"
    if hasattr(est, "estimators_") and hasattr(est.estimators_[0], "tree_"):
        return "forest"
    raise TypeError(f"no attribution method for {name}")


def _classes(est: Any) -> np.ndarray:
    return np.asarray(est.classes_)


def _method(est: Any, task: str, k: int) -> tuple[str, Slots]:
    """The method's name, and the function from a feature matrix to (base, slots)."""
    if isinstance(est, Ensemble):
        if task == "regression":
            parts = [_method(m, task, k) for m in est.members]
            names = _weighted_names(est, [n for n, _ in parts])
            return f"weighted sum of its members' ({names})", _weighted(est, parts)
        members = [_in_probability(m, task, k) for m in est.members]
        names = _weighted_names(est, [n for n, _ in members])
        return (
            f"its members' in probability space, weighted ({names}), "
            f"rescaled to add up to the {SPACES[task]}",
            _blended(est, [f for _, f in members], task),
        )
    kind = _kind(est)
    if kind == "linear":
        return "exact (linear model)", _linear(est, task)
    if kind == "lightgbm":
        return "exact TreeSHAP (LightGBM)", _lightgbm(est, task, k)
    return (
        "exact TreeSHAP (shap)"
        if task == "regression"
        else "TreeSHAP on the probability, rescaled to add up to the "
        + ("log-odds" if task == "binary" else "logit"),
        _forest(est, task),
    )


def _classes_wide(z: np.ndarray, task: str) -> np.ndarray:
    """A multiclass model fitted on two classes gives one score (the second
    class's log-odds): as two class scores, ``[0, z]`` (the same softmax)."""
    if task == "multiclass" and z.shape[1] == 1:
        return np.concatenate([np.zeros_like(z), z], axis=1)
    return z


def _linear(est: Any, task: str) -> Slots:
    """``phi = coef * (T(x) - T(mean))``, base the model at the training mean
    (``T``: the pipeline's steps before the model; a StandardScaler's
    ``T(mean)`` is 0, so the base is the intercept)."""
    final, before = est[-1], est[:-1]
    coef = np.atleast_2d(np.asarray(final.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(final.intercept_, dtype=np.float64))
    scaler = est[0]
    mean = getattr(scaler, "mean_", None)
    centre = (
        np.asarray(before.transform(np.asarray(mean)[None, :]), dtype=np.float64)
        if mean is not None and len(est) > 1
        else np.zeros((1, coef.shape[1]))
    )
    base_k = intercept + coef @ centre[0]
    transform: Callable[[np.ndarray], Any] = before.transform if len(est) > 1 else np.asarray
    if len(est) == 2 and type(scaler).__name__ == "StandardScaler":
        # its arithmetic in numpy: scikit-learn's checks of one row cost ~0.3 ms
        transform = _standardise(scaler)

    def slots(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Z = np.asarray(transform(X), dtype=np.float64) - centre
        s = Z[:, None, :] * coef[None, :, :]
        b = np.broadcast_to(base_k, (len(X), len(base_k))).copy()
        if task == "multiclass" and s.shape[1] == 1:
            s = np.concatenate([np.zeros_like(s), s], axis=1)
            b = np.concatenate([np.zeros_like(b), b], axis=1)
        return b, s

    return slots


def _standardise(scaler: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A fitted StandardScaler's ``transform``, without its input checks."""
    m = scaler.mean_ if scaler.mean_ is not None else 0.0
    sc = scaler.scale_ if scaler.scale_ is not None else 1.0

    def transform(X: np.ndarray) -> np.ndarray:
        return np.asarray((X - m) / sc)

    return transform


def _lightgbm(est: Any, task: str, k: int) -> Slots:
    def slots(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # the Booster's own predict (the scikit-learn wrapper's checks cost
        # ~10x one row's TreeSHAP), on one thread: OpenMP's default of every
        # core costs a row ~100x under load (measured: 0.14 against 16 ms)
        c = np.asarray(est.booster_.predict(X, pred_contrib=True, num_threads=1), dtype=np.float64)
        c = c.reshape(len(X), -1, X.shape[1] + 1)
        b, s = c[:, :, -1], c[:, :, :-1]
        if task == "multiclass" and c.shape[1] == 1:  # two classes fitted: one score
            s = np.concatenate([np.zeros_like(s), s], axis=1)
            b = np.concatenate([np.zeros_like(b), b], axis=1)
        return b, s

    return slots


def _forest_raw(p: np.ndarray, task: str) -> np.ndarray:
    """Probabilities (every class's) as a raw output, floored at ``FLOOR``:
    the positive class's log-odds, (n, 1), or log-probabilities as class
    scores, (n, k)."""
    if task == "binary":
        return _logit(p[:, 1:2])
    return np.log(np.maximum(p, FLOOR))


def _logit(q: np.ndarray) -> np.ndarray:
    q = np.minimum(np.maximum(q, FLOOR), 1.0 - FLOOR)
    return np.asarray(np.log(q) - np.log1p(-q))


def _rescaled(
    task: str, base_p: np.ndarray, phi_p: np.ndarray, p: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Probability-space attributions (n, k, width) that add up to ``p -
    base_p`` as raw-space ones that add up to ``raw(p) - raw(base_p)``: each
    row's scaled by the secant of the link, (raw(p) - raw(base)) / (p -
    base); with no change, by its slope at the base. ``p``: (n, k), the
    positive class's column for binary; ``base_p``: (k,) or (n, k)."""
    n = len(p)
    base_p = np.broadcast_to(base_p, (n, p.shape[1]))
    if task == "binary":
        base_raw, raw = _logit(base_p), _logit(p)
        slope_at = 1.0 / np.maximum(base_p * (1.0 - base_p), FLOOR)
    else:
        base_raw, raw = np.log(np.maximum(base_p, FLOOR)), np.log(np.maximum(p, FLOOR))
        slope_at = 1.0 / np.maximum(base_p, FLOOR)
    moved = phi_p.sum(axis=2)
    far = np.abs(moved) > TINY
    slope = np.where(far, (raw - base_raw) / np.where(far, moved, 1.0), slope_at)
    return np.array(base_raw), phi_p * slope[:, :, None]


def _to_probability(
    task: str, base: np.ndarray, slots: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A member's raw-space attributions as probability-space ones (the
    inverse of :func:`_rescaled`): the base's probability, and attributions
    that add up to ``p - p_base``.

    Binary: each row's scaled by the sigmoid's secant. Multiclass: a class's
    probability moves with every class's score, not its own alone (a secant
    per class divides by its own score's change, which can be ~0 while its
    probability moves: attributions in the thousands were seen), so each
    input's class-score attributions go through the softmax's Jacobian
    averaged along the straight line from the base's scores to the row's
    (integrated gradients of the softmax, by Gauss-Legendre quadrature);
    what the quadrature leaves of ``p - p_base`` is shared in proportion to
    each attribution's size, so they add up exactly."""
    z = base + slots.sum(axis=2)
    moved = z - base
    if task == "binary":
        p, pb = 1.0 / (1.0 + np.exp(-z)), 1.0 / (1.0 + np.exp(-base))
        far = np.abs(moved) > TINY
        slope = np.where(far, (p - pb) / np.where(far, moved, 1.0), pb * (1.0 - pb))
        return pb, slots * slope[:, :, None]
    p, pb = _softmax(z), _softmax(base)
    k = z.shape[1]
    # Gauss-Legendre on panels of [0, 1], one per PANEL of the largest spread
    # of a row's score changes (the softmax turns within a few logits): the
    # quadrature is then exact to ~1e-13 (measured to a spread of 250 logits)
    spread = float((moved.max(axis=1) - moved.min(axis=1)).max(initial=0.0))
    panels = int(min(max(np.ceil(spread / PANEL), 1), 64))
    t, w = _gauss_legendre()
    start = np.linspace(0.0, 1.0, panels + 1)[:-1, None]
    at = (start + (t + 1.0) / (2.0 * panels)).ravel()
    weight = np.tile(w / (2.0 * panels), panels)
    q = _softmax((base[None] + at[:, None, None] * moved[None]).reshape(-1, k))
    q = q.reshape(len(at), *z.shape).transpose(1, 0, 2)  # (n, points, k)
    wq = q * weight[None, :, None]
    # the mean Jacobian, diag(mean q) - mean(q q^T), as one matrix product a row
    jac = wq.sum(axis=1)[:, :, None] * np.eye(k) - np.matmul(wq.transpose(0, 2, 1), q)
    phi = np.einsum("nck,nkw->ncw", jac, slots)
    left = (p - pb) - phi.sum(axis=2)
    size = np.abs(phi)
    total = size.sum(axis=2, keepdims=True)
    phi = phi + left[:, :, None] * np.where(total > 0, size / np.where(total > 0, total, 1.0), 0.0)
    return pb, phi


@functools.cache
def _gauss_legendre() -> tuple[np.ndarray, np.ndarray]:
    """``PATH_POINTS`` nodes and weights on [-1, 1] (an eigenproblem: ~0.6 ms)."""
    t, w = np.polynomial.legendre.leggauss(PATH_POINTS)
    return np.asarray(t), np.asarray(w)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def _weighted(est: Any, parts: list[tuple[str, Slots]]) -> Slots:
    def slots(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = [f(X) for _, f in parts]
        base = sum(w * b for w, (b, _) in zip(est.weights, found, strict=True))
        s = sum(w * s for w, (_, s) in zip(est.weights, found, strict=True))
        return np.asarray(base), np.asarray(s)

    return slots


def _weighted_names(est: Any, names: list[str]) -> str:
    return ", ".join(f"{w:.2f} × {n}" for w, n in zip(est.weights, names, strict=True))


def _in_probability(est: Any, task: str, k: int) -> tuple[str, Slots]:
    """A classifier member's method, and its attributions in probability
    space: a forest's as TreeSHAP gives them, any other's taken there from
    its raw space (:func:`_to_probability`)."""
    if _kind(est) == "forest":
        return "TreeSHAP on the probability", _forest_probability(est, task)
    name, raw = _method(est, task, k)
    return name, lambda X: _to_probability(task, *raw(X))


def _blended(est: Any, parts: list[Slots], task: str) -> Slots:
    def slots(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        base_p: Any = 0.0
        phi_p: Any = 0.0
        for w, f in zip(est.weights, parts, strict=True):
            pb, s = f(X)
            base_p, phi_p = base_p + w * pb, phi_p + w * s
        # the ensemble's probability as the members' add up (its weighted
        # mean): a forest's own predict_proba of one row costs ~20x its TreeSHAP
        p = np.asarray(base_p + phi_p.sum(axis=2))
        return _rescaled(task, np.asarray(base_p), np.asarray(phi_p), p)

    return slots


def _forest(est: Any, task: str) -> Slots:
    probability = _forest_probability(est, task)
    if task == "regression":
        return probability

    def slots(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b, phi = probability(X)
        # the forest's probability as TreeSHAP adds it up (to ~1e-15):
        # scikit-learn's predict_proba of one row costs ~20x the explanation
        return _rescaled(task, b, phi, b + phi.sum(axis=2))

    return slots


def _forest_probability(est: Any, task: str) -> Slots:
    """A forest's TreeSHAP on its own output: the value, or the probability
    (binary: the positive class's)."""
    try:
        import shap  # ~1 s with numba: only when a forest is explained
    except ImportError:
        raise ImportError(
            "explaining a random forest needs the shap package: pip install 'minimlops[explain]'"
        ) from None

    explainer = shap.TreeExplainer(est)
    expected = np.atleast_1d(np.asarray(explainer.expected_value, dtype=np.float64))

    def probability(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sv = explainer.shap_values(X, check_additivity=False)
        phi = np.stack(sv, axis=-1) if isinstance(sv, list) else np.asarray(sv)
        phi = np.asarray(phi, dtype=np.float64)
        n = len(X)
        if task == "regression":
            return np.full((n, 1), expected[0]), phi.reshape(n, 1, -1)
        phi = np.moveaxis(phi, -1, 1)  # (n, classes, width)
        if task == "binary":
            phi, expected_k = phi[:, 1:2, :], expected[1:2]
        else:
            expected_k = expected
        return np.broadcast_to(expected_k, (n, len(expected_k))).copy(), phi

    return probability
