"""Calibrated probabilities, when they measurably help.

A calibrator is fitted on the chosen candidate's out-of-fold predictions on
TRAIN (never on the rows it is judged on): Platt scaling of the log-odds for a
binary task, one temperature for multiclass. It is kept only when it lowers
the VALIDATION log loss measurably: by at least ``MARGIN`` and by more than
twice the standard error of the rows' paired differences. The decision and
both figures are recorded in the version. A kept calibration is part of the model's spec,
so the scikit-learn and ONNX forms apply it alike (``outputs.calibrate``).

A calibrator only softens or shifts, never sharpens: a temperature is at
least 1, and a Platt slope above 1 (or below 0, which would invert the
scores) is refitted as a shift alone (slope 1).
The folds' models learn from fewer rows than the served one, which is refitted
on TRAIN and VALIDATION, and a regularised model sharpens with more rows by
itself; and a sharpening's gain is bounded by the loss there is, while one
confident error on a later row costs without bound (measured on small
tables: decision 0035).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minimlops.ml.outputs import calibrate

MARGIN = 0.001  # VALIDATION log loss must fall by at least this
MIN_ROWS = 30  # fewer VALIDATION rows: no decision worth making
MIN_TEMPERATURE, MAX_TEMPERATURE = 1.0, 20.0  # a temperature softens, never sharpens


def _losses(task: str, y: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Each row's log loss."""
    if task == "binary":
        p = np.clip(out, 1e-15, 1 - 1e-15)
        return np.asarray(-(y * np.log(p) + (1 - y) * np.log(1 - p)))
    p = np.clip(out, 1e-15, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    return np.asarray(-np.log(p[np.arange(len(y)), y]))


def _log_loss(task: str, y: np.ndarray, out: np.ndarray) -> float:
    return float(np.mean(_losses(task, y, out)))


def fit(task: str, oof: np.ndarray, y: np.ndarray) -> dict[str, Any] | None:
    """The calibrator's parameters, from out-of-fold outputs and their labels."""
    if task == "binary":
        from sklearn.linear_model import LogisticRegression

        if len(np.unique(y)) < 2:
            return None
        p = np.clip(oof, 1e-12, 1 - 1e-12)
        z = np.log(p / (1 - p)).reshape(-1, 1)
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(z, y)
        a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        if not 0.0 <= a <= 1.0:  # it would sharpen, or invert the scores: the shift alone
            a, b = 1.0, _shift(z.ravel(), y)
        return {"method": "platt", "a": a, "b": b}
    if task == "multiclass":
        from scipy.optimize import minimize_scalar

        best = minimize_scalar(
            lambda t: _log_loss(task, y, calibrate({"method": "temperature", "t": t}, oof)),
            bounds=(MIN_TEMPERATURE, MAX_TEMPERATURE),
            method="bounded",
        )
        # the search stops a hair inside its bound: at the bound, no softening fits
        t = float(best.x)
        return {"method": "temperature", "t": 1.0 if t - MIN_TEMPERATURE < 1e-3 else t}
    return None


def _shift(z: np.ndarray, y: np.ndarray) -> float:
    """The intercept ``b`` that minimises the log loss of ``sigmoid(z + b)``."""
    from scipy.optimize import minimize_scalar

    def loss(b: float) -> float:
        s = z + b  # log(1 + e^-s) for y = 1, log(1 + e^s) for y = 0, without overflow
        return float(np.mean(np.logaddexp(0.0, np.where(y == 1, -s, s))))

    return float(minimize_scalar(loss, bounds=(-30.0, 30.0), method="bounded").x)


def decide(
    task: str, oof: np.ndarray | None, oof_y: np.ndarray | None, y: np.ndarray, out: np.ndarray
) -> dict[str, Any]:
    """Fit on TRAIN's out-of-fold outputs; keep if VALIDATION's log loss falls."""
    if task == "regression":
        return {}
    if oof is None or oof_y is None or len(y) < MIN_ROWS:
        return {"kept": False, "reason": f"fewer than {MIN_ROWS} VALIDATION rows"}
    params = fit(task, oof, oof_y)
    if params is None:
        return {"kept": False, "reason": "one class only in the out-of-fold rows"}
    name = "platt (a shift alone)" if params.get("a") == 1.0 else params["method"]
    raw, fixed = _losses(task, y, out), _losses(task, y, calibrate(params, out))
    before, after = float(raw.mean()), float(fixed.mean())
    # measurably: lower by MARGIN, and by more than twice the standard error of
    # the rows' paired differences (on a few dozen rows a lucky fall is no gain)
    diff = fixed - raw
    noise = 2 * float(diff.std(ddof=1)) / np.sqrt(len(diff)) if len(diff) > 1 else float("inf")
    # a Python bool: numpy's would be written to the metadata as the text "False"
    kept = bool(after < before - MARGIN and float(diff.mean()) + noise < 0)
    return {
        "kept": kept,
        "params": params,
        "validation_log_loss_before": before,
        "validation_log_loss_after": after,
        "margin": MARGIN,
        "noise": noise,
        "reason": (
            f"{name} lowers VALIDATION log loss {before:.4f} -> {after:.4f} "
            f"(by more than twice its standard error, {noise / 2:.4f})"
            if kept
            else f"{name} would give {after:.4f} against {before:.4f}: not "
            f"lower by {MARGIN} and by twice its standard error ({noise / 2:.4f})"
        ),
    }
