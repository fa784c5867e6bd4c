"""What a model's raw output becomes, in numpy and plain Python only (the
serving path imports this; scikit-learn never): the task's output from the
fitted classes' probabilities, calibration, the predicted label, and labels
from target values."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from minimlops.domain.project import Project


def expand(spec: Mapping[str, Any], proba: np.ndarray) -> np.ndarray:
    """Probabilities over the fitted classes as the task's output: all the
    project's classes for multiclass (an absent class gets 0), the positive
    column for binary."""
    fitted = spec.get("fitted_classes")
    k = len(spec["classes"])
    if fitted is not None and list(fitted) != list(range(k)):
        full = np.zeros((len(proba), k))
        full[:, fitted] = proba
        proba = full
    return proba[:, 1] if spec["task"] == "binary" else proba


def calibrate(calibration: Mapping[str, Any] | None, out: np.ndarray) -> np.ndarray:
    """Probabilities through the version's calibration, if it kept one:
    binary, Platt scaling of the log-odds (``a * logit(p) + b``); multiclass,
    temperature scaling (``softmax(log(p) / t)``). The same in both forms."""
    if not calibration:
        return out
    if (
        calibration["method"] == "platt"
    ):  # minimum/maximum: np.clip's Python wrapper costs a row ~1 us
        p = np.minimum(np.maximum(out, 1e-12), 1 - 1e-12)
        z = calibration["a"] * np.log(p / (1 - p)) + calibration["b"]
        return 1.0 / (1.0 + np.exp(-z))
    logits = np.log(np.minimum(np.maximum(out, 1e-12), 1.0)) / calibration["t"]
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def bounded(spec: Mapping[str, Any], out: np.ndarray) -> np.ndarray:
    """Regression values kept within the target's declared bounds (``spec["bounds"]``)."""
    bounds = spec.get("bounds")
    if not bounds:
        return out
    return np.clip(out, bounds[0], bounds[1])  # one of them may be None


def bounds_of(spec: Mapping[str, Any]) -> tuple[float, float] | None:
    """(min, max) of ``spec["bounds"]`` as floats (infinite where undeclared), or None."""
    bounds = spec.get("bounds")
    if not bounds:
        return None
    lo, hi = bounds
    return (-math.inf if lo is None else float(lo), math.inf if hi is None else float(hi))


def sigmoid(z: float) -> float:
    """The logistic function of one float, in plain Python (no overflow)."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def platt_one(calibration: Mapping[str, Any], p: float) -> float:
    """:func:`calibrate`'s Platt scaling of one probability, in plain Python
    (numpy's five calls on one value cost ~5 us; this ~0.3 us)."""
    p = min(max(p, 1e-12), 1 - 1e-12)
    z = calibration["a"] * math.log(p / (1 - p)) + calibration["b"]
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0  # exp(700+) overflows a float


def linear_output(task: str, linear: Mapping[str, Any], X: np.ndarray) -> np.ndarray:
    """What :func:`linear_form`'s numbers predict for a feature matrix (the
    training-time check of the fold): the value, or the positive class's
    probability before calibration."""
    z = X @ np.asarray(linear["weights"], dtype=np.float64) + linear["bias"]
    if task == "regression":
        return z
    with np.errstate(over="ignore"):  # exp of a large -z is inf: the probability is 0
        return 1.0 / (1.0 + np.exp(-z))


def predicted(task: str, out: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The predicted label of each output: 1 at probability >= ``threshold``
    (binary: the project's), the most probable class (multiclass), the value
    (regression)."""
    if task == "binary":
        return (out >= threshold).astype(np.int64)
    if task == "multiclass":
        return np.argmax(out, axis=1) if len(out) else np.empty(0, np.int64)
    return out


def difference(task: str, a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference of ``b`` from ``a``: absolute on probabilities,
    relative to the value's size (at least 1) on regression outputs."""
    if task == "regression":
        return float((np.abs(a - b) / np.maximum(np.abs(a), 1.0)).max())
    return float(np.abs(a - b).max())


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
        raise ValueError(
            f"target value {exc.args[0]!r} is not one of the classes {list(classes or ())}"
        ) from None
