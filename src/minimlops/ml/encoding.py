"""Target encodings, fitted at training time (never imported by serving,
which only looks them up: ``ml.features``).

A high-cardinality category's target encoding is the smoothed mean of the
label among the TRAIN rows with its value, by scikit-learn's
``TargetEncoder`` (empirical-Bayes smoothing: a value seen twice is pulled
toward the overall mean more than one seen a hundred times). It reads labels,
so a training row must not get it from its own: cross fitting, on folds drawn
the way selection draws its own (``selection.draw_folds``).

Not ``TargetEncoder.fit_transform``'s own cross fitting: its folds are
shuffled (stratified), where a time split needs each row encoded from older
rows only and a group split from other groups only. The encoder is given
integer codes of the values, not the text: on 400,000 rows of 300,000
tickets that took fitting from ~9 s to well under one.

At most ``KEPT`` values keep an encoding of their own (the ones with most
rows, as frequencies do); the rarer ones are encoded as one value, which is
also what a value TRAIN never had gets: the spec stays small however many
values a column has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MISSING = "\x00missing"  # a missing value's stand-in, as a category of its own
KEPT = 5000  # values with an encoding of their own (features.MAX_FREQUENCIES)


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
        text = np.array([MISSING if v is None else str(v) for v in values[col["name"]]], object)
        names, codes = np.unique(text, return_inverse=True)
        counts = np.bincount(codes, minlength=len(names))
        rare = len(names)  # the code of the values past the KEPT commonest
        if len(names) > KEPT:
            order = np.lexsort((np.arange(len(names)), -counts))  # most rows first, then by text
            kept = np.zeros(len(names), dtype=bool)
            kept[order[:KEPT]] = True
            kept[names == MISSING] = True
            codes = np.where(kept[codes], codes, rare)
        x = codes.reshape(-1, 1)
        full = _Encoder(spec, x, y, seed)
        present = np.unique(codes)
        table = full(present.reshape(-1, 1))
        at = {int(c): i for i, c in enumerate(present)}

        def numbers(v: np.ndarray) -> list[float]:
            return [float(round(float(e), 10)) for e in v]

        te["values"] = {
            str(names[c]): numbers(table[at[int(c)]])
            for c in present
            if c != rare and names[c] != MISSING
        }
        te["rest"] = numbers(table[at[rare]] if rare in at else full.mean)
        missing = np.flatnonzero(names == MISSING)
        te["missing"] = (
            numbers(table[at[int(missing[0])]])
            if len(missing) and int(missing[0]) in at
            else te["rest"]
        )
        own = np.tile(full.mean, (len(x), 1))
        for fit_rows, score_rows in folds:
            own[score_rows] = _Encoder(spec, x[fit_rows], y[fit_rows], seed)(x[score_rows])
        out[col["name"]] = own
    return out


class _Encoder:
    """scikit-learn's ``TargetEncoder`` fitted on one column's value codes
    and the labels, giving every output (a class the rows lack: 0). Rows of a
    single class (a small fold) get their share whatever the value; rows of
    two classes of a multiclass task, a binary encoder of the second (the
    multiclass one needs three)."""

    def __init__(self, spec: Mapping[str, Any], x: np.ndarray, y: np.ndarray, seed: int) -> None:
        from sklearn.preprocessing import TargetEncoder

        task = spec["task"]
        self.k = len(spec["classes"] or ()) if task == "multiclass" else 1
        self.mean = np.zeros(self.k)
        self._enc: Any = None
        self._present: list[int] = [0]
        self._pair = False
        if len(y) < 2:
            if len(y):
                self.mean[:] = self._shares(task, y)
            return
        if task == "regression":
            self.mean[0] = float(np.mean(y))
            self._enc = TargetEncoder(target_type="continuous", random_state=seed).fit(x, y)
            return
        labels = y.astype(np.int64)
        self.mean[:] = self._shares(task, labels)
        classes = np.flatnonzero(np.bincount(labels, minlength=max(self.k, 2)))
        if len(classes) < 2:
            return
        if task == "binary" or len(classes) == 2:
            self._pair = task == "multiclass"
            self._present = [int(c) for c in classes] if self._pair else [0]
            positive = (labels == classes[1]).astype(np.int64)
            self._enc = TargetEncoder(target_type="binary", random_state=seed).fit(x, positive)
            return
        self._enc = TargetEncoder(target_type="multiclass", random_state=seed).fit(x, labels)
        self._present = [int(c) for c in self._enc.classes_]

    def _shares(self, task: str, y: np.ndarray) -> np.ndarray:
        if task == "regression":
            return np.array([float(np.mean(y))])
        shares = np.bincount(y.astype(np.int64), minlength=max(self.k, 2)) / len(y)
        return shares[1:2] if task == "binary" else shares[: self.k]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Encodings of value codes (unseen ones: the labels' mean), (n, outputs)."""
        got = np.tile(self.mean, (len(x), 1))
        if self._enc is None or not len(x):
            return got
        found = np.asarray(self._enc.transform(x), dtype=np.float64).reshape(len(x), -1)
        if self._pair:  # the second class's share, and the first's the rest
            got[:, self._present[1]] = found[:, 0]
            got[:, self._present[0]] = 1.0 - found[:, 0]
        else:
            got[:, self._present] = found
        return got
