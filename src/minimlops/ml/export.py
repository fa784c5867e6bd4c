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
    """Convert a trained model's estimator to ONNX (float32 input, no ZipMap);
    an ensemble to one graph (see :func:`_ensemble_to_onnx`)."""
    from minimlops.ml.ensemble import Ensemble

    if isinstance(model.estimator, Ensemble):
        return _ensemble_to_onnx(model.estimator, model.task, len(model.feature_names))
    onx = _estimator_to_onnx(model.estimator, model.task, len(model.feature_names))
    return bytes(onx.SerializeToString())


def _estimator_to_onnx(estimator: Any, task: str, width: int) -> Any:
    """One fitted estimator as an ONNX ModelProto: classifiers output
    ``[label, probabilities]``, regressors ``[value]`` (shape ``[N, 1]``)."""
    if type(estimator).__module__.startswith("lightgbm"):
        return _lightgbm_to_onnx(estimator, width)
    from skl2onnx import to_onnx as convert  # training-time only

    # Trees compare in float32 in scikit-learn too: float32 input reproduces them.
    # A linear regression's value loses ~1e-5 of itself in float32 (centring
    # values near their mean), more than TOLERANCE: it gets float64 input.
    double = task == "regression" and not hasattr(estimator, "estimators_")
    sample = np.zeros((1, width), dtype=np.float64 if double else np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        options = {} if task == "regression" else {id(estimator): {"zipmap": False}}
        return convert(estimator, sample, options=options)


def _lightgbm_to_onnx(estimator: Any, width: int) -> Any:
    """LightGBM's trees through onnxmltools (its converter; skl2onnx has none).
    LightGBM bins float64 features but compares them with float64 thresholds:
    float32 input can only differ on a value within float32 rounding of a
    threshold, which the parity check would catch."""
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_lightgbm(
            estimator,
            zipmap=False,
            initial_types=[("input", FloatTensorType([None, width]))],
        )


def _ensemble_to_onnx(ensemble: Any, task: str, width: int) -> bytes:
    """An ensemble as one ONNX graph: its members' graphs side by side on one
    input, combined as ``Ensemble`` does: ``sum w_i p_i``, a weighted mean of
    the members' probabilities (or values). Its ``label`` output is the
    position of the most probable class (nothing reads it: the fast path
    reads the probabilities).

    One graph rather than one inference session per member: one row costs
    one ``run`` (onnxruntime's per-call overhead, a few microseconds, is paid
    once, not per member), and the fast path's I/O binding and batch code
    serve it unchanged. The input is float64 when a member needs it (a
    linear regression), cast to float32 for the others.
    """
    import onnx
    from onnx import TensorProto, helper

    graphs = [
        onnx.compose.add_prefix(_estimator_to_onnx(m, task, width), f"m{i}_")
        for i, m in enumerate(ensemble.members)
    ]
    regression = task == "regression"
    double = any(g.graph.input[0].type.tensor_type.elem_type == TensorProto.DOUBLE for g in graphs)
    in_type = TensorProto.DOUBLE if double else TensorProto.FLOAT
    nodes: list[Any] = []
    inits: list[Any] = []
    parts: list[str] = []
    opsets: dict[str, int] = {"": 13}
    for i, (g, w) in enumerate(zip(graphs, ensemble.weights, strict=True)):
        for o in g.opset_import:
            opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
        member_in = g.graph.input[0]
        if member_in.type.tensor_type.elem_type == in_type:
            nodes.append(helper.make_node("Identity", ["input"], [member_in.name]))
        else:
            to = member_in.type.tensor_type.elem_type
            nodes.append(helper.make_node("Cast", ["input"], [member_in.name], to=to))
        nodes.extend(g.graph.node)
        inits.extend(g.graph.initializer)
        out = g.graph.output[0 if regression else 1].name
        if regression:
            nodes.append(helper.make_node("Cast", [out], [f"e{i}_v"], to=TensorProto.DOUBLE))
            inits.append(helper.make_tensor(f"e{i}_w", TensorProto.DOUBLE, [], [w]))
            nodes.append(helper.make_node("Mul", [f"e{i}_v", f"e{i}_w"], [f"e{i}_part"]))
        else:
            inits.append(helper.make_tensor(f"e{i}_w", TensorProto.FLOAT, [], [w]))
            nodes.append(helper.make_node("Mul", [out, f"e{i}_w"], [f"e{i}_part"]))
        parts.append(f"e{i}_part")
    if regression:
        nodes.append(helper.make_node("Sum", parts, ["variable"]))
        outputs = [helper.make_tensor_value_info("variable", TensorProto.DOUBLE, [None, 1])]
    else:
        nodes.append(helper.make_node("Sum", parts, ["probabilities"]))
        nodes.append(helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0))
        outputs = [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, None]),
        ]
    graph = helper.make_graph(
        _needed(nodes, [o.name for o in outputs]),
        "ensemble",
        [helper.make_tensor_value_info("input", in_type, [None, width])],
        outputs,
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())]
    )
    model.ir_version = max(g.ir_version for g in graphs)
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


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


def _needed(nodes: list[Any], outputs: list[str]) -> list[Any]:
    """The nodes the outputs depend on, in order: the members' own label
    outputs (and the casts and copies that make them) are dropped, each a
    step onnxruntime would run on every row for nothing."""
    wanted, kept = set(outputs), []
    for node in reversed(nodes):
        if wanted.intersection(node.output):
            kept.append(node)
            wanted.update(i for i in node.input if i)
    return kept[::-1]
