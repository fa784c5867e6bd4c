"""A trained model for the serving path: its estimator as ONNX (scikit-learn's
through skl2onnx, LightGBM's through onnxmltools), a linear model's weights
with the scaler folded in, and the parity check that lets a model be served
this way only when it predicts like itself within ``TOLERANCE``."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from minimlops.ml.outputs import difference
from minimlops.ml.serving import OnnxModel

if TYPE_CHECKING:
    from minimlops.ml.model import TrainedModel

TOLERANCE = 1e-5  # absolute on probabilities; relative (to the value) on regression outputs


def to_onnx(model: TrainedModel) -> bytes:
    """Convert a trained model's estimator to ONNX (float32 input, no ZipMap)."""
    if type(model.estimator).__module__.startswith("lightgbm"):
        return _lightgbm_to_onnx(model)
    from skl2onnx import to_onnx as convert  # training-time only

    # Trees compare in float32 in scikit-learn too: float32 input reproduces them.
    # A linear regression's value loses ~1e-5 of itself in float32 (centring
    # values near their mean), more than TOLERANCE: it gets float64 input.
    double = model.task == "regression" and not hasattr(model.estimator, "estimators_")
    sample = np.zeros((1, len(model.feature_names)), dtype=np.float64 if double else np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        options = {} if model.task == "regression" else {id(model.estimator): {"zipmap": False}}
        onx = convert(model.estimator, sample, options=options)
    return bytes(onx.SerializeToString())


def _lightgbm_to_onnx(model: TrainedModel) -> bytes:
    """LightGBM's trees through onnxmltools (its converter; skl2onnx has none).
    LightGBM bins float64 features but compares them with float64 thresholds:
    float32 input can only differ on a value within float32 rounding of a
    threshold, which the parity check would catch."""
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onx = convert_lightgbm(
            model.estimator,
            zipmap=False,
            initial_types=[("input", FloatTensorType([None, len(model.feature_names)]))],
        )
    return bytes(onx.SerializeToString())


def linear_form(model: TrainedModel) -> dict[str, Any] | None:
    """A binary logistic regression's or a ridge regression's weights over the
    features and its bias, the scaler folded in (``coef / scale`` and
    ``intercept - coef . mean / scale``), or None for any other estimator.
    Served, one row's score is computed from them in plain Python (see
    :meth:`OnnxModel.values`), in float64 as scikit-learn computes it."""
    from sklearn.linear_model import LogisticRegression, Ridge  # training-time only
    from sklearn.preprocessing import StandardScaler

    steps = getattr(model.estimator, "steps", None)
    if model.task not in ("binary", "regression") or not steps or len(steps) != 2:
        return None
    (_, scaler), (_, linear) = steps
    if not isinstance(scaler, StandardScaler) or not isinstance(
        linear, (LogisticRegression, Ridge)
    ):
        return None
    coef = np.asarray(linear.coef_, dtype=np.float64).reshape(-1)
    intercept = float(np.asarray(linear.intercept_, dtype=np.float64).reshape(-1)[0])
    if coef.shape[0] != len(model.feature_names):  # a multinomial model: one row a class
        return None
    scale = scaler.scale_ if scaler.with_std and scaler.scale_ is not None else np.ones_like(coef)
    mean = scaler.mean_ if scaler.with_mean else np.zeros_like(coef)
    weights = coef / scale
    return {"weights": weights.tolist(), "bias": intercept - float(weights @ mean)}


def parity(model: TrainedModel, fast: OnnxModel, rows: Sequence[Mapping[str, Any]]) -> float:
    """Largest difference between the two on rows (see :func:`difference`)."""
    if not rows:
        return 0.0
    return difference(model.task, model.output(rows), fast.output(rows))
