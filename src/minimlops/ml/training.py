"""Selection and fitting per task: TRAIN rows in, a fitted model out.

The task (binary, multiclass, regression) comes from the project; classes are
the target's values as written in the data, encoded as their index in the
project's class list (for binary: 0 the negative, 1 the positive class).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from minimlops.domain.project import Project
from minimlops.ml import encoding, features, selection
from minimlops.ml.model import TrainedModel
from minimlops.ml.outputs import labels

Progress = Callable[[str, int, int], None]
Rows = Sequence[Mapping[str, Any]]
IMBALANCE = (
    0.1  # minority share under which class weights are tried (MINIMLOPS_IMBALANCE_THRESHOLD)
)


def select_and_fit(
    rows: Rows | Callable[[], Iterator[Rows]],
    project: Project,
    derive: features.Derive,
    *,
    folds: int = 5,
    seed: int = 0,
    progress: Progress | None = None,
    budget_s: float | None = None,
    imbalance_threshold: float = IMBALANCE,
    ensembles: bool = True,
) -> TrainedModel:
    """Choose an estimator by cross-validation on TRAIN rows on the project's
    primary metric (see ``ml.selection``), then fit it on all of them.

    Args:
        rows: TRAIN rows only, each with the target; or a function that yields
            them a chunk at a time, each time it is called (read twice:
            feature statistics, then features). Only one chunk is ever held as
            Python dicts; the features go into one matrix. The caller bounds
            the rows (MINIMLOPS_TRAINING_MAX_ROWS).
        project: the data set (task, target, classes, features).
        derive: the project's derived-feature functions.
        folds: number of (stratified, for classification) folds.
        seed: fixes the folds and the estimators' randomness.
        progress: called as ``progress(step, done, total)``.
        budget_s: seconds selection may take; candidates not started by then
            are skipped (and listed as such). None: every candidate that
            fits in ``selection.BUDGET_MAX_S``.
        imbalance_threshold: minority-class share under which class weights
            are tried as well.
        ensembles: try a weighted ensemble of the candidates (served when
            its cross-fitted figure is better; see ``ml.ensemble``).
    """
    chunks = rows if callable(rows) else lambda: iter([rows])
    sizes: list[int] = []

    def counted() -> Iterator[Mapping[str, Any]]:
        for chunk in chunks():
            sizes.append(len(chunk))
            yield from chunk

    spec = features.fit_spec(counted(), project, derive)
    X, y, order, groups = _matrix(spec, derive, project, chunks, sizes, folds, seed)
    return _choose(
        X,
        y,
        spec,
        project,
        derive,
        folds=folds,
        seed=seed,
        progress=progress,
        budget_s=budget_s,
        imbalance_threshold=imbalance_threshold,
        order=order,
        groups=groups,
        ensembles=ensembles,
    )


def _matrix(
    spec: dict[str, Any],
    derive: features.Derive,
    project: Project,
    chunks: Callable[[], Iterator[Rows]],
    sizes: list[int],
    folds: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The rows' features and labels (the rows' second read, into one matrix
    filled in place), and their times or groups when the project splits so.
    Target-encoded columns are fitted here (``encoding.fit_target_encodings``):
    each row gets the encoding fitted on the other folds, drawn the way
    selection draws its own (in time order, on the rows before it; by group,
    on other groups; else shuffled), not the very folds selection scores
    with (it samples large tables and repeats small ones)."""
    fs = features.FeatureSet(spec, derive)
    X = np.empty((sum(sizes), fs.width), dtype=np.float64)
    y = np.empty(sum(sizes), dtype=np.float64 if project.task == "regression" else np.int64)
    at, changed = 0, "the training rows changed between their two reads"
    by = project.split.strategy if project.split.strategy in ("time", "group") else None
    column = project.split.column or ""
    fold_by: list[Any] = []
    encoded = features.target_encoded(spec)
    values: dict[str, list[Any]] = {name: [] for name in encoded}
    for chunk in chunks():  # written in place: one matrix, never two
        end = at + len(chunk)
        if end > len(y):
            raise ValueError(changed)
        X[at:end] = fs.matrix(chunk)
        y[at:end] = labels(project, [r[project.target] for r in chunk])
        if by:
            fold_by.extend(r.get(column) for r in chunk)
        for name, got in fs.values(chunk, encoded).items():
            values[name].extend(got)
        at = end
    if at != len(y):
        raise ValueError(changed)
    order = _times(fold_by) if by == "time" else None
    groups = _groups(fold_by, project, chunks) if by == "group" else None
    if encoded:
        pairs = selection.draw_folds(project.task, y, folds, seed, order, groups)
        own = encoding.fit_target_encodings(spec, values, y, pairs, seed)
        where = {n: i for i, n in enumerate(features.feature_names(spec))}
        for col in spec["columns"]:
            if col["name"] in own:
                first = where[features.target_names(col)[0]]
                X[:, first : first + own[col["name"]].shape[1]] = own[col["name"]]
    return X, y, order, groups


def _times(values: Sequence[Any]) -> np.ndarray:
    """Dates and timestamps as sortable numbers (seconds); a row without a
    time sorts first, as the time split puts it in TRAIN."""
    import datetime as dt

    def seconds(v: Any) -> float:
        if v is None:
            return -np.inf
        if isinstance(v, dt.datetime):
            return v.timestamp()
        if isinstance(v, dt.date):
            return float(v.toordinal() - 719163) * 86400.0  # days since 1970
        return float(v)

    return np.array([seconds(v) for v in values], dtype=np.float64)


def _groups(
    values: Sequence[Any], project: Project, chunks: Callable[[], Iterator[Rows]]
) -> np.ndarray:
    """Each row's group as text; a row without one is a group of its own (its key)."""
    if all(v is not None for v in values):
        return np.array([str(v) for v in values], dtype=object)
    keys = [r[project.key] for chunk in chunks() for r in chunk]
    return np.array(
        [f"g:{v}" if v is not None else f"k:{k}" for v, k in zip(values, keys, strict=True)],
        dtype=object,
    )


def _choose(
    X: np.ndarray,
    y: np.ndarray,
    spec: dict[str, Any],
    project: Project,
    derive: features.Derive,
    *,
    folds: int,
    seed: int,
    progress: Progress | None,
    budget_s: float | None,
    imbalance_threshold: float,
    order: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    ensembles: bool = True,
) -> TrainedModel:
    task = project.task
    if task != "regression":
        present = np.unique(y)
        if len(present) < 2:
            raise ValueError(
                f"training needs two classes or more of {project.target}; "
                f"TRAIN has only {[project.classes[i] for i in present]}"
            )
        spec["fitted_classes"] = [int(c) for c in present]
    n_classes = len(project.classes or ()) if task != "regression" else 0
    chosen = selection.select(
        X,
        y,
        task=task,
        n_classes=n_classes,
        metric=project.primary_metric,
        direction=project.metric_direction,
        folds=folds,
        seed=seed,
        budget_s=budget_s,
        imbalance_threshold=imbalance_threshold,
        progress=progress,
        order=order,
        groups=groups,
        ensembles=ensembles,
        threshold=project.threshold,
        linear_ignores=calendar_columns(spec, derive),
    )
    name = chosen.name
    steps = chosen.steps
    if progress:
        progress(f"fitting {name} on {len(y):,} rows", steps - 1, steps)
    fitted = selection.fit_chosen(chosen, task, X, y, seed, calendar_columns(spec, derive))
    if "n_jobs" in fitted.get_params():
        # Threads help fitting; on one row at serving time they cost ~10 ms.
        fitted.set_params(n_jobs=1)
    scores = {
        e["name"]: e["cv"][project.primary_metric]
        for e in chosen.leaderboard
        if e.get("status") == "scored" and project.primary_metric in e["cv"]
    }
    return TrainedModel(fitted, spec, name, cv_scores=scores, derive=derive, selection=chosen)


CALENDAR = ("year", "month", "day", "day_of_year")  # rise with the trend within a year


def calendar_columns(spec: dict[str, Any], derive: features.Derive) -> tuple[int, ...]:
    """The feature columns of dates' calendar parts, which linear candidates
    give no weight (see ``candidates.Ignoring``)."""
    parts = {c["name"] for c in spec["columns"] if c.get("date") and c["date"][1] in CALENDAR}
    if not parts:
        return ()
    names = features.FeatureSet(spec, derive).names
    return tuple(i for i, n in enumerate(names) if n in parts)


def refit(
    model: TrainedModel,
    rows: Rows | Callable[[], Iterator[Rows]],
    project: Project,
    *,
    seed: int = 0,
) -> TrainedModel:
    """The chosen candidate, with the settings selection chose (boosted trees:
    its round count), fitted again on more rows (TRAIN and VALIDATION): the
    features' statistics and the estimator learn from all of them. The
    calibration chosen for ``model`` is kept."""
    if model.selection is None:
        raise ValueError("only a model that went through selection can be refitted")
    chunks = rows if callable(rows) else lambda: iter([rows])
    sizes: list[int] = []

    def counted() -> Iterator[Mapping[str, Any]]:
        for chunk in chunks():
            sizes.append(len(chunk))
            yield from chunk

    spec = features.fit_spec(counted(), project, model.derive, like=model.spec)
    X, y, _, _ = _matrix(spec, model.derive, project, chunks, sizes, model.selection.folds, seed)
    if project.task != "regression":
        spec["fitted_classes"] = [int(c) for c in np.unique(y)]
    for kept in ("calibration",):
        if kept in model.spec:
            spec[kept] = model.spec[kept]
    fitted = selection.fit_chosen(
        model.selection, project.task, X, y, seed, calendar_columns(spec, model.derive)
    )
    if "n_jobs" in fitted.get_params():
        fitted.set_params(n_jobs=1)
    return TrainedModel(
        fitted,
        spec,
        model.algorithm,
        cv_scores=model.cv_scores,
        derive=model.derive,
        selection=model.selection,
    )
