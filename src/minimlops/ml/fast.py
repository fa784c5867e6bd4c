"""The fast serving path: the fitted estimator as ONNX, run by onnxruntime.

Only the estimator is converted; features are built by the same code as in
training (``FeatureSet.vector`` for one row, ``FeatureSet.matrix`` for many,
held equal by a test). Trees compare in
float32 in scikit-learn too, so float32 input reproduces its probabilities;
:func:`parity` measures the largest difference, and a model is served this way
only when it is within ``TOLERANCE`` on the evaluation rows. A linear
champion's one row skips onnxruntime: its weights (``linear_form``, checked
at training the same way) are scored by ``FeatureSet.linear``'s lookups.
"""

from __future__ import annotations

import math
import struct
import threading
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from minimlops.ml import features

if TYPE_CHECKING:
    from minimlops.ml.training import TrainedModel

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
        onx = convert_lightgbm(model.estimator, zipmap=False,
                               initial_types=[("input", FloatTensorType([None, len(model.feature_names)]))])  # fmt: skip
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
    if not isinstance(scaler, StandardScaler) or not isinstance(linear, (LogisticRegression, Ridge)):
        return None
    coef = np.asarray(linear.coef_, dtype=np.float64).reshape(-1)
    intercept = float(np.asarray(linear.intercept_, dtype=np.float64).reshape(-1)[0])
    if coef.shape[0] != len(model.feature_names):  # a multinomial model: one row a class
        return None
    scale = scaler.scale_ if scaler.with_std and scaler.scale_ is not None else np.ones_like(coef)
    mean = scaler.mean_ if scaler.with_mean else np.zeros_like(coef)
    weights = coef / scale
    return {"weights": weights.tolist(), "bias": intercept - float(weights @ mean)}


def linear_output(task: str, linear: Mapping[str, Any], X: np.ndarray) -> np.ndarray:
    """What :func:`linear_form`'s numbers predict for a feature matrix (the
    training-time check of the fold): the value, or the positive class's
    probability before calibration."""
    z = X @ np.asarray(linear["weights"], dtype=np.float64) + linear["bias"]
    if task == "regression":
        return z
    with np.errstate(over="ignore"):  # exp of a large -z is inf: the probability is 0
        return 1.0 / (1.0 + np.exp(-z))


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
    if calibration["method"] == "platt":  # minimum/maximum: np.clip's Python wrapper costs a row ~1 us
        p = np.minimum(np.maximum(out, 1e-12), 1 - 1e-12)
        z = calibration["a"] * np.log(p / (1 - p)) + calibration["b"]
        return 1.0 / (1.0 + np.exp(-z))
    logits = np.log(np.minimum(np.maximum(out, 1e-12), 1.0)) / calibration["t"]
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


class OnnxModel:
    """Predicts like the TrainedModel it was converted from, ~500x faster on one row."""

    def __init__(self, onnx_bytes: bytes, spec: Mapping[str, Any], algorithm: str,
                 derive: features.Derive | None = None,
                 linear: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        # errors only: LightGBM's converted classifiers declare their unused label
        # output with a wrong shape, and onnxruntime warns about it on every run
        options.log_severity_level = 3
        self.session = ort.InferenceSession(onnx_bytes, options,
                                            providers=["CPUExecutionProvider"])  # fmt: skip
        self.input = self.session.get_inputs()[0].name
        self.dtype = np.float64 if self.session.get_inputs()[0].type == "tensor(double)" else np.float32
        self.spec, self.algorithm = dict(spec), algorithm
        self.task = self.spec["task"]
        # classifiers: [label, probabilities]; regressors: [value]
        self.outputs = [self.session.get_outputs()[0 if self.task == "regression" else 1].name]
        self.features = features.FeatureSet(self.spec, derive or {})
        fitted = self.spec.get("fitted_classes")
        # binary with both classes fitted (always, in practice): the positive column as is
        self._positive_only = self.task == "binary" and list(fitted or [0, 1]) == [0, 1]
        self._calibration = self.spec.get("calibration")
        self._bound = threading.local()  # one row's input and output, bound (see _one)
        # one row in plain Python past onnxruntime: the value, or the positive
        # column (Platt-scaled if kept); multiclass goes through output()
        self._plain_one = self.task == "regression" or self._positive_only and (
            not self._calibration or self._calibration["method"] == "platt")
        # a linear model's one row: its score from the weights, no onnxruntime
        # (~3.6 instead of ~11 us for a wide churn row; see linear_form)
        self._linear = (self.features.linear(linear["weights"], linear["bias"])
                        if linear and self._plain_one else None)  # fmt: skip

    def output(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """As :meth:`TrainedModel.output`: the positive class's probability,
        every class's probabilities, or the value."""
        if len(rows) == 1:  # a dict to a vector in plain Python: ~2 us, numpy's set-up ~30 us
            out = np.array(self._one(self.features.vector(rows[0])), dtype=np.float64)  # a copy
        else:
            X = self.features.matrix(rows).astype(self.dtype, copy=False)
            out = np.asarray(self.session.run(self.outputs, {self.input: X})[0], dtype=np.float64)
        if self.task == "regression":
            return out.reshape(-1)
        out = out[:, 1] if self._positive_only else expand(self.spec, out)
        return calibrate(self._calibration, out) if self._calibration else out

    predict_proba = output

    def values(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """:meth:`output` as Python values, one a row: a float (a probability or
        a value), or a list of floats (multiclass). One binary or regression
        row skips numpy's conversions and calibration (~1.5 and ~5 us of calls
        on one value): the same numbers, within a float's last digit. Given
        the weights of a linear model, one row skips onnxruntime too: its
        score in float64, scikit-learn's number (onnxruntime's float32 one is
        within ``TOLERANCE`` of it, checked at training)."""
        if len(rows) != 1 or not self._plain_one:
            return self.output(rows).tolist()  # type: ignore[no-any-return]
        if self._linear is not None:
            z = self._linear(rows[0])
            if self.task == "regression":
                return [z]
            p = sigmoid(z)
        else:
            out = self._one(self.features.vector(rows[0]))
            if self.task == "regression":
                return [out.item(0)]
            p = out.item(1)
        return [platt_one(self._calibration, p) if self._calibration else p]

    def _one(self, vector: list[float]) -> np.ndarray:
        """The model's output for one feature vector, through an I/O binding
        made once per thread: the vector is written into the bound input's
        memory and onnxruntime runs on it, writing into arrays bound once too
        (~0.6x the time of building an array and calling ``session.run``,
        which checks its arguments in Python on every call; measured). The
        array returned is this thread's output buffer: read it (or copy it)
        before the thread's next call."""
        bound = self._bound.__dict__.get("one")
        if bound is None:
            bound = self._bound.one = self._bind_one()
        x, binding, pack, memory, out, _ = bound
        try:  # struct writes the floats in ~0.5x numpy's time from a list, rounded as numpy does
            pack(memory, 0, *vector)
        except OverflowError:  # beyond float32: numpy writes inf, as the batch path does
            with np.errstate(over="ignore"):
                x[0] = vector
        self.session.run_with_iobinding(binding)
        return out

    def _bind_one(self) -> tuple[np.ndarray, Any, Any, memoryview, np.ndarray, list[np.ndarray]]:
        x = np.zeros((1, self.features.width), dtype=self.dtype)
        pack = struct.Struct(f"={self.features.width}{'d' if self.dtype == np.float64 else 'f'}").pack_into
        binding = self.session.io_binding()
        # by address: onnxruntime reads this memory at every run (never a copy)
        binding.bind_input(self.input, "cpu", 0, self.dtype, list(x.shape), x.ctypes.data)
        # every output (a classifier's label too, which is otherwise allocated
        # at each run) into an array of its one-row shape, learnt by one run
        names = [o.name for o in self.session.get_outputs()]
        for name in names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        buffers = [np.zeros_like(np.ascontiguousarray(a)) for a in binding.copy_outputs_to_cpu()]
        binding.clear_binding_outputs()
        for name, buf in zip(names, buffers, strict=True):
            binding.bind_output(name, "cpu", 0, buf.dtype, list(buf.shape), buf.ctypes.data)
        # the buffers live as long as the binding that writes into them
        return x, binding, pack, memoryview(x).cast("B"), buffers[names.index(self.outputs[0])], buffers


def parity(model: TrainedModel, fast: OnnxModel, rows: Sequence[Mapping[str, Any]]) -> float:
    """Largest difference between the two on rows (see :func:`difference`)."""
    if not rows:
        return 0.0
    return difference(model.task, model.output(rows), fast.output(rows))


def difference(task: str, a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference of ``b`` from ``a``: absolute on probabilities,
    relative to the value's size (at least 1) on regression outputs."""
    if task == "regression":
        return float((np.abs(a - b) / np.maximum(np.abs(a), 1.0)).max())
    return float(np.abs(a - b).max())
