"""The estimators model selection chooses from, for a task and a data size.

Every candidate is one the fast serving path (ONNX) reproduces to 1e-5: a
linear model, LightGBM's gradient-boosted trees in a few settings, and two
random forests. Gradient-boosted trees are the strongest default on tabular
data; LightGBM rather than scikit-learn's HistGradientBoosting because the
installed skl2onnx cannot convert the latter (it writes a Python ``False``
into an integer attribute, which protobuf 7 refuses), while onnxmltools
converts LightGBM's trees within ~1e-7 of its own probabilities; it also
fits 1,000,000 rows in seconds on two cores (measured: docs/performance.md, training).

The boosted trees stop early: each fit holds out a part of the rows it is
given and stops when their loss has not improved for ``PATIENCE`` rounds.
Their settings are a small fixed grid (not a search that grows with the
budget): from heavily regularised (small data such as the Titanic example's
~600 TRAIN rows) to more capacity (large data).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TREE_SAMPLE = 100_000  # rows each tree of a forest sees at most (bounds time and memory)
PATIENCE = 50  # boosting rounds without improvement on the held-out rows before stopping
MAX_ROUNDS = 2000
# (name, settings): the grid of LightGBM settings, in the order they are tried
BOOSTED = (
    ("lightgbm", {"learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 20}),  # its defaults
    (
        "lightgbm_small",
        {
            "learning_rate": 0.1,
            "num_leaves": 7,
            "max_depth": 3,
            "min_child_samples": 10,
            "reg_lambda": 5.0,
        },
    ),  # few rows
    (
        "lightgbm_regularised",
        {
            "learning_rate": 0.05,
            "num_leaves": 15,
            "min_child_samples": 20,
            "reg_lambda": 1.0,
            "subsample": 0.8,
            "subsample_freq": 1,
            "colsample_bytree": 0.8,
        },
    ),
    (
        "lightgbm_large",
        {"learning_rate": 0.1, "num_leaves": 63, "min_child_samples": 20, "reg_lambda": 0.1},
    ),  # many rows
)


@dataclass(frozen=True)
class Candidate:
    """One estimator to try: how to make it, and what selection records."""

    name: str
    family: str  # linear | boosted_trees | random_forest
    params: dict[str, Any]
    make: Callable[[], Any] = field(repr=False)
    early_stopping: bool = False  # boosted trees: fit with held-out rows, then a fixed count
    cost: float = 1.0  # expected time relative to the previous candidate of its family
    # settings for cross-validation only: a forest's error has mostly settled by 100
    # trees, so the folds use half the final fit's trees (half the time; measured on
    # the Titanic example: the forests' CV accuracy moved by 2 of 624 rows)
    cv_params: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """The settings a person compares, in one line."""
        shown = {
            k: v for k, v in self.params.items() if k not in ("random_state", "n_jobs", "verbose")
        }
        return ", ".join(f"{k}={v}" for k, v in shown.items())


def threads(n_rows: int) -> int:
    """Threads for fitting: one on small data (their start-up costs more than
    they save on a few thousand rows), else up to the cores there are (max 4)."""
    return 1 if n_rows < 5000 else max(1, min(os.cpu_count() or 1, 4))


def lightgbm(
    task: str,
    params: dict[str, Any],
    *,
    seed: int,
    n_rows: int,
    n_estimators: int = MAX_ROUNDS,
    class_weight: str | None = None,
) -> Any:
    import lightgbm as lgb

    cls = lgb.LGBMRegressor if task == "regression" else lgb.LGBMClassifier
    extra = {} if task == "regression" else {"class_weight": class_weight}
    return cls(
        n_estimators=n_estimators,
        random_state=seed,
        n_jobs=threads(n_rows),
        deterministic=True,
        force_col_wise=True,
        verbose=-1,
        **params,
        **extra,
    )


class Ignoring:
    """A linear pipeline fitted with some feature columns set to 0, and returned
    as the pipeline itself: standardized, a column of zeros is zeros, so its
    weight is 0 and the fitted pipeline reads the column and ignores it (it is
    exported, served and stored as any pipeline).

    For a date's calendar parts (its year, month, day and day of the year):
    in a year of TRAIN rows they rise with the trend (days since 1970), and a
    ridge model splits the trend between them; in January the day of the year
    falls back to 1 and takes its share of the trend with it (a trial's daily
    shop sales, fitted on 2024: January and February 2025 answered -23 units
    on average against 110 sold, RMSE 138 against 36 without those parts). Trees are not fed
    this way; linear models keep the trend and the day of the week."""

    def __init__(self, pipeline: Any, columns: tuple[int, ...]) -> None:
        self.pipeline, self.columns = pipeline, list(columns)

    def fit(self, X: Any, y: Any) -> Any:
        import numpy as np

        X = np.array(X, dtype=np.float64, copy=True)
        X[:, self.columns] = 0.0
        return self.pipeline.fit(X, y)


def candidates(
    task: str,
    seed: int,
    n_rows: int = 0,
    *,
    class_weight: str | None = None,
    linear_ignores: tuple[int, ...] = (),
) -> list[Candidate]:
    """The candidates for a task, cheapest and likeliest first (a training
    budget that runs out skips the ones at the end).

    ``class_weight="balanced"``: classifiers weigh each class by the inverse
    of its frequency (a rare minority class; see ``select``).
    ``linear_ignores``: feature columns the linear candidate gives no weight
    (a date's calendar parts; see :class:`Ignoring`).
    """
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    regression = task == "regression"
    per_tree = None if n_rows <= TREE_SAMPLE else TREE_SAMPLE / n_rows
    jobs = threads(n_rows)
    forest = RandomForestRegressor if regression else RandomForestClassifier
    weight = {} if regression else {"class_weight": class_weight}
    out = [
        Candidate(
            "ridge_regression" if regression else "logistic_regression",
            "linear",
            {"alpha": 1.0} if regression else {"C": 1.0},
            lambda: _ignoring(
                make_pipeline(StandardScaler(), Ridge(alpha=1.0))
                if regression
                else make_pipeline(
                    StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, **weight)
                ),
                linear_ignores,
            ),
        )
    ]
    for name, params in BOOSTED:
        out.append(
            Candidate(
                name,
                "boosted_trees",
                dict(params),
                lambda p=params: lightgbm(
                    task, p, seed=seed, n_rows=n_rows, class_weight=class_weight
                ),
                early_stopping=True,
            )
        )
    shallow = {"n_estimators": 200, "max_depth": 7, "min_samples_leaf": 2}
    deep = {"n_estimators": 150, "max_depth": 12, "min_samples_leaf": 3, "max_features": 0.5}
    # measured: the deep forest takes 3-4x the shallow one's time from a few thousand rows
    for name, params, cost in (("random_forest", shallow, 1.0), ("random_forest_deep", deep, 3.5)):
        out.append(
            Candidate(
                name,
                "random_forest",
                dict(params),
                lambda p=params: forest(
                    **p, max_samples=per_tree, n_jobs=jobs, random_state=seed, **weight
                ),
                cost=cost,
                cv_params={"n_estimators": 100},
            )
        )
    return out


def _ignoring(pipeline: Any, columns: tuple[int, ...]) -> Any:
    return Ignoring(pipeline, columns) if columns else pipeline
