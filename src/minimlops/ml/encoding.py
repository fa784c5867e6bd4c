"""Target encodings, fitted at training time (never imported by serving,
which only looks them up: ``ml.features``).

A high-cardinality category's target encoding is the smoothed mean of the
label among the TRAIN rows with its value, by scikit-learn's
``TargetEncoder`` (empirical-Bayes smoothing: a value seen twice is pulled
toward the overall mean more than one seen a hundred times). It reads labels,
so a training row must not get it from its own: cross fitting, on folds drawn
as selection's are (``selection.draw_folds``).

Not ``TargetEncoder.fit_transform``'s own cross fitting: its folds are
shuffled (stratified), where a time split needs each row encoded from older
rows only and a group split from other groups only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MISSING = "\x00missing"  # a missing value's stand-in, as a category of its own


def fit_target_encodings(
    spec: dict[str, Any],
    values: Mapping[str, Sequence[Any]],
    y: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Fit each target-encoded column's encoding on every row (stored in
    ``spec``: what serving looks up) and return, per column, the training
    rows' own encodings, (n, outputs): each row's from a fit on the rows of
    the fold that scores it (``(fit, score)`` pairs); a row no fold scores
    (the oldest block of a time split) gets the label's mean.

    ``values`` are the column's values on the rows (None when missing), ``y``
    the labels (class indices, or values for regression).
    """
    out: dict[str, np.ndarray] = {}
    for col in spec["columns"]:
        te = col.get("target_encoding")
        if te is None:
            continue
        x = np.array(
            [[MISSING if v is None else str(v)] for v in values[col["name"]]], dtype=object
        )
        full = _Encoder(spec, x, y, seed)
        cats = full.categories
        table = full(np.array([[c] for c in cats], dtype=object)) if cats else np.zeros((0, full.k))

        def kept(v: np.ndarray) -> list[float]:
            return [float(round(float(e), 10)) for e in v]

        te["values"] = {c: kept(r) for c, r in zip(cats, table, strict=True) if c != MISSING}
        te["rest"] = kept(full.mean)
        te["missing"] = kept(table[cats.index(MISSING)]) if MISSING in cats else te["rest"]
        own = np.tile(full.mean, (len(x), 1))
        for fit_rows, score_rows in folds:
            own[score_rows] = _Encoder(spec, x[fit_rows], y[fit_rows], seed)(x[score_rows])
        out[col["name"]] = own
    return out


class _Encoder:
    """scikit-learn's ``TargetEncoder`` fitted on one column's values and
    labels, giving every output (a class the rows lack: 0); rows of a single
    class (a small fold) get their share, whatever the value."""

    def __init__(self, spec: Mapping[str, Any], x: np.ndarray, y: np.ndarray, seed: int) -> None:
        from sklearn.preprocessing import TargetEncoder

        task = spec["task"]
        self.k = len(spec["classes"] or ()) if task == "multiclass" else 1
        self.mean = np.zeros(self.k)
        self.categories: list[str] = []
        self._enc: Any = None
        if task == "regression":
            self.mean[0] = float(np.mean(y)) if len(y) else 0.0
            kind = "continuous"
        else:
            labels = y.astype(np.int64)
            shares = np.bincount(labels, minlength=max(self.k, 2)) / max(1, len(labels))
            self.mean[:] = shares[1:2] if task == "binary" else shares[: self.k]
            if np.count_nonzero(shares) < 2:
                return
            kind = "binary" if task == "binary" else "multiclass"
        if len(y) < 2:
            return
        self._enc = TargetEncoder(target_type=kind, random_state=seed).fit(x, y)
        self.categories = [str(c) for c in self._enc.categories_[0]]
        self._present = [int(c) for c in self._enc.classes_] if kind == "multiclass" else [0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Encodings of values (unseen ones: the labels' mean), (n, outputs)."""
        got = np.tile(self.mean, (len(x), 1))
        if self._enc is not None and len(x):
            got[:, self._present] = np.asarray(self._enc.transform(x), dtype=np.float64).reshape(
                len(x), -1
            )
        return got
