"""The trained model: a fitted estimator with the feature spec it needs,
predicting from dicts (training, evaluation and the slow serving path)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from minimlops.ml import features
from minimlops.ml.outputs import bounded, calibrate, expand

if TYPE_CHECKING:
    from minimlops.ml.selection import Selection

Rows = Sequence[Mapping[str, Any]]


@dataclass
class TrainedModel:
    """A fitted estimator with the feature spec it needs; predicts from dicts."""

    estimator: Any
    spec: dict[str, Any]
    algorithm: str
    feature_names: tuple[str, ...] = ()
    cv_scores: dict[str, float] = field(default_factory=dict)
    derive: features.Derive = field(default_factory=dict, repr=False)
    selection: Selection | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.features = features.FeatureSet(self.spec, self.derive)
        self.task = self.spec["task"]
        if not self.feature_names:
            self.feature_names = self.features.names

    def output(self, rows: Rows) -> np.ndarray:
        """Per row: binary, the positive class's probability; multiclass, every
        class's probability (one column per project class); regression, the value."""
        X = self.features.matrix(rows)
        if self.task == "regression":
            return bounded(self.spec, np.asarray(self.estimator.predict(X), dtype=np.float64))
        out = expand(self.spec, np.asarray(self.estimator.predict_proba(X), dtype=np.float64))
        return calibrate(self.spec.get("calibration"), out)

    predict_proba = output  # the binary name, kept for callers that read probabilities

    def values(self, rows: Rows) -> list[Any]:
        """:meth:`output` as Python values, one a row (as ``OnnxModel.values``)."""
        return self.output(rows).tolist()  # type: ignore[no-any-return]
