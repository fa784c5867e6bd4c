"""Why a passenger got their probability: each input against a typical passenger.

For every model input, the input is replaced by its value in the training
rows' typical passenger (median or mode; no name, no cabin) and the passenger
is scored again. The difference is that input's effect: positive when the
passenger's own value pushes the probability up. It works for any model, and
costs one batch prediction of ten rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from minimlops.ml import features

INPUTS = ("Sex", "Pclass", "Age", "Fare", "SibSp", "Parch", "Embarked", "Name", "Cabin")
LABELS = {"Name": "title (from Name)", "Cabin": "deck (from Cabin)"}
DEFAULT_REFERENCE = {"Pclass": 3, "Sex": "male", "Age": 28.0, "SibSp": 0, "Parch": 0,
                     "Fare": 14.45, "Embarked": "S", "Name": None, "Cabin": None}  # fmt: skip


def explain(model: Any, passenger: Mapping[str, Any]) -> dict[str, Any]:
    """The probability and the effect of each input, largest effect first."""
    reference = {**DEFAULT_REFERENCE, **model.spec.get("reference", {})}
    variants = [dict(passenger)] + [{**passenger, name: reference[name]} for name in INPUTS]
    probs = model.predict_proba(variants).tolist()
    base = probs[0]
    effects = []
    for name, p in zip(INPUTS, probs[1:], strict=True):
        shown = _shown(name, passenger)
        effects.append({"input": name, "label": LABELS.get(name, name), "value": shown,
                        "reference": _shown(name, reference), "effect": base - p})  # fmt: skip
    effects.sort(key=lambda e: -abs(e["effect"]))
    return {"probability": base, "prediction": int(base >= 0.5), "effects": effects}


def _shown(name: str, row: Mapping[str, Any]) -> Any:
    if name == "Name":
        return features.title(row)
    if name == "Cabin":
        return features.deck(row)
    return row.get(name)
