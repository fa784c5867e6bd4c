"""Why a row got its answer: each input against a typical row of the training data.

For every input the model reads (a feature column, or a column a derived
feature reads), the input is replaced by its value in the training rows'
typical row (median or mode) and the row is scored again. The difference is
that input's effect on the answer: on the positive class's probability
(binary), on the predicted class's probability (multiclass), on the value
(regression). It works for any model, and costs one batch prediction.

An input already at its typical value has no effect by construction (the
row scored again is the same row): each effect says whether it is
(``at_typical``), and ``typical_row`` says every input is, as on the
prediction page's first answer, where nothing moved the answer away from the
typical row's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from minimlops.domain.project import Project


def inputs_of(project: Project) -> list[str]:
    """The request columns the model reads, in the project's column order."""
    used = set(project.features)
    for d in project.derived:
        if d.name in used:
            used.update(d.inputs)
    return [c for c in project.input_columns if c in used]


def explain(model: Any, row: Mapping[str, Any], project: Project) -> dict[str, Any]:
    """The answer and the effect of each input, largest effect first."""
    reference = dict(model.spec.get("reference", {}))
    names = inputs_of(project)
    variants = [dict(row)] + [{**row, name: reference.get(name)} for name in names]
    out = np.asarray(model.output(variants))
    derived_of = {c: [d.name for d in project.derived if c in d.inputs] for c in names}
    classes = project.classes or ()
    if project.task == "multiclass":
        best = int(np.argmax(out[0]))
        scores = out[:, best]
        answer: dict[str, Any] = {"prediction": classes[best], "probability": float(scores[0])}
    else:
        scores = out
        answer = (
            {
                "probability": float(out[0]),
                "prediction": classes[1] if out[0] >= 0.5 else classes[0],
            }
            if project.task == "binary"
            else {"prediction": float(out[0])}
        )
    effects = []
    for name, s in zip(names, scores[1:].tolist(), strict=True):
        via = derived_of[name]
        label = f"{name} (via {', '.join(via)})" if via and name not in project.features else name
        effects.append(
            {
                "input": name,
                "label": label,
                "value": row.get(name),
                "reference": reference.get(name),
                "effect": float(scores[0]) - s,
                "at_typical": same_value(row.get(name), reference.get(name)),
            }
        )
    effects.sort(key=lambda e: -abs(e["effect"]))
    return {**answer, "effects": effects, "typical_row": all(e["at_typical"] for e in effects)}


def same_value(value: Any, typical: Any) -> bool:
    """The request's value is the typical one: 28 and 28.0 are; None and a
    number are not (a missing value is imputed, which can move the answer)."""
    if value is None or typical is None:
        return value is None and typical is None
    if isinstance(value, int | float) and isinstance(typical, int | float):
        return math.isclose(value, typical, rel_tol=1e-9, abs_tol=1e-12)
    return bool(value == typical)
