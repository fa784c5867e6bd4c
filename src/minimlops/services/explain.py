"""Why a row got its answer: Shapley attributions that add up.

Each input column a person typed gets an attribution, and the base value plus
the attributions is the model's raw output for the row: the log-odds
(binary), the predicted class's score, a logit (multiclass; every class's in
``by_class``), the value (regression). How each model is attributed, and how
features become input columns, is ``ml.attributions``'s docstring.

The raw output is the model's BEFORE calibration: a version that keeps
Platt or temperature scaling (``spec["calibration"]``) answers a probability
that calibration moved, and says which (``calibration``); calibration is one
monotone map of the whole output, with no inputs of its own to attribute.

The answer's fields (``prediction``, ``probability``) come from the serving
model, as /predict's do; the attributions need the native estimator, not its
ONNX form, so :class:`Explainer` loads the version's skops artifact on the
first explanation (scikit-learn with it) and keeps it until the champion
changes: the prediction path never pays for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from minimlops.domain.project import Project

if TYPE_CHECKING:
    from minimlops.ml.attributions import Attributor, Explained
    from minimlops.ml.model import TrainedModel

MAX_ROWS = 100  # rows one request may ask to explain (a forest's row costs ~5-15 ms)


class Explainer:
    """The serving version's native model and its attribution method, loaded
    on the first explanation of a version and kept until another is asked."""

    def __init__(self, load: Callable[[str], TrainedModel], project: Project) -> None:
        self._load, self.project = load, project
        self._held: tuple[str, Attributor] | None = None
        # one at a time: the first request loads (~1 s), the rest wait for it,
        # and shap's explainer is not documented as safe across threads
        self._lock = threading.Lock()

    def attributor(self, version: str, served: Any) -> Attributor:
        """The version's attribution method (its skops model loaded on first use).

        Raises:
            ModelNotFoundError, ArtifactIntegrityError: the version cannot be loaded.
        """
        from minimlops.ml.attributions import Attributor

        held = self._held
        if held is None or held[0] != version:
            # a model served without ONNX already is the native one
            model = (
                served if getattr(served, "estimator", None) is not None else self._load(version)
            )
            held = self._held = (version, Attributor(model))
        return held[1]

    def explain(
        self, version: str, served: Any, rows: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """One explanation per row (see :func:`answers`).

        Raises:
            DerivedFeatureError: a derived feature raised on a row.
            ModelNotFoundError, ArtifactIntegrityError: the version cannot be loaded.
        """
        with self._lock:
            attributor = self.attributor(version, served)
            found = attributor.explain(rows)
        out = np.asarray(served.values(rows))  # as /predict answers (its one-row path too)
        spec = attributor.model.spec
        calibration = (spec.get("calibration") or {}).get("method")
        return answers(found, out, rows, self.project, calibration, spec.get("threshold", 0.5))


def answers(
    found: Explained,
    out: np.ndarray,
    rows: Sequence[Mapping[str, Any]],
    project: Project,
    calibration: str | None = None,
    threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """Explanations as the API answers them, one per row. ``out`` is the
    serving model's output for the rows (the answer's fields, as /predict, a
    binary one at the version's ``threshold``)."""
    classes = list(project.classes or ())
    order = {c: i for i, c in enumerate(project.input_columns)}
    at = sorted(range(len(found.inputs)), key=lambda i: order.get(found.inputs[i], len(order)))
    names = [found.inputs[i] for i in at]
    only_derived = {
        c: [f for f, ins in zip(found.features, found.feature_inputs, strict=True) if c in ins]
        for c in names
        if c not in found.features
    }
    from minimlops.ml.features import TIMESTAMP_PARTS

    dates = {c.name for c in project.columns if c.type in ("date", "timestamp")}
    labels = {}  # a date's parts said as such: its six names fill a line
    for c, via in only_derived.items():
        own = {f"{c}_{p}" for p in TIMESTAMP_PARTS} if c in dates else set()
        parts = [f for f in via if f in own]
        said = (["its date parts"] if parts else []) + [f for f in via if f not in parts]
        if said:
            labels[c] = f"{c} (via {', '.join(said)})"
    result = []
    for r, row in enumerate(rows):
        if project.task == "multiclass":
            best = int(np.argmax(out[r]))
            answer: dict[str, Any] = {
                "prediction": classes[best],
                "probability": float(out[r][best]),
            }
            column = found.classes.index(best) if best in found.classes else int(found.shown()[r])
        elif project.task == "binary":
            p = float(out[r])
            answer = {"prediction": classes[1] if p >= threshold else classes[0], "probability": p}
            column = 0
        else:
            answer, column = {"prediction": float(out[r])}, 0
        by_input = found.by_input[r, column, at]
        attributions = [
            {
                "input": name,
                "label": labels.get(name, name),
                "value": _plain(row.get(name)),
                "attribution": float(a),
            }
            for name, a in zip(names, by_input.tolist(), strict=True)
        ]
        attributions.sort(key=lambda e: -abs(e["attribution"]))
        explanation = {
            **answer,
            "output_space": found.space,
            "base_value": float(found.base[r, column]),
            "raw_output": float(found.raw[r, column]),
            "calibration": calibration,
            "method": found.method,
            "attributions": attributions,
            "features": [
                {"feature": f, "inputs": list(ins), "attribution": float(a)}
                for f, ins, a in zip(
                    found.features,
                    found.feature_inputs,
                    found.by_feature[r, column].tolist(),
                    strict=True,
                )
            ],
        }
        if project.task == "multiclass":
            explanation["class"] = classes[found.classes[column]]
            explanation["by_class"] = {
                str(classes[c]): {
                    "base_value": float(found.base[r, j]),
                    "raw_output": float(found.raw[r, j]),
                    "attributions": dict(
                        zip(names, found.by_input[r, j, at].tolist(), strict=True)
                    ),
                }
                for j, c in enumerate(found.classes)
            }
        result.append(explanation)
    return result


def _plain(value: Any) -> Any:
    """A request's value as JSON writes it (a date as its ISO text)."""
    return value.isoformat() if hasattr(value, "isoformat") else value
