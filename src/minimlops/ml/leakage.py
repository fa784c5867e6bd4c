"""Leakage guards: warnings, naming the column, that a version's figures may
promise more than the model will do on tomorrow's rows.

Three kinds, each cheap (counts on the rows training read, no model fitted):

- ``proxy``: one feature alone predicts the target almost perfectly. For
  classification, the share of rows whose class is their value's (or value
  bin's) commonest class; for regression, the rank correlation (numbers) or
  the share of variance the value's mean explains (categories). Such a column
  is usually written after the outcome (a refund date for churn, a "status"
  for fraud), and it will not be there, or not mean the same, when a
  prediction is asked for.
- ``id``: an id-like feature (almost one value per row, or named like an id):
  a model can only memorise it.
- ``overlap``: the split lets rows of one entity or period sit on both sides:
  with a random split, an id-like column whose VALIDATION values are mostly
  also in TRAIN (use a group split on it), or a date column (use a time split).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from minimlops.domain.project import TIME_TYPES, Project

PROXY = 0.99  # purity, rank correlation or explained variance: "almost perfectly"
ID_SHARE = 0.9  # distinct values per row from which a text column is id-like
MIN_ROWS = 50  # fewer rows: no verdict
SAMPLE = 20_000  # rows the checks read at most
BINS = 50  # a number is binned by quantiles for the classification check
_ID_NAME = re.compile(
    r"(^|[_\s.-])(id|ids|uuid|guid)$|^(id|uuid)([_\s.-]|$)|"
    r"(customer|user|client|patient|account|member|person|subject|household|device|"
    r"session|employee|student|driver|visitor)([_\s.-]?(id|no|nr|number|key|code))?$",
    re.IGNORECASE,
)


def id_named(name: str) -> bool:
    """Whether a column's name says it holds an id (customer_id, user, uuid)."""
    return bool(_ID_NAME.search(name))


def check(project: Project, train: pa.Table, valid: pa.Table) -> list[dict[str, Any]]:
    """The warnings for a training run's TRAIN and VALIDATION rows, each
    ``{"kind", "column", "message"}``, in the columns' order."""
    if train.num_rows < MIN_ROWS:
        return []
    if train.num_rows > SAMPLE:
        at = np.random.default_rng(0).choice(train.num_rows, SAMPLE, replace=False)
        train = train.take(np.sort(at))
    out: list[dict[str, Any]] = []
    y = train.column(project.target)
    raw = [f for f in project.features if f in project.column_names]
    for name in raw:
        col = project.column(name)
        values = train.column(name)
        if col.type in ("string", "integer") and (why := _id_like(name, col.type, values)):
            out.append(
                {
                    "kind": "id",
                    "column": name,
                    "message": f"{name!r} {why}: a model can only memorise it; leave it "
                    "out of features (or use it for a group split)",
                }
            )
            continue
        if col.type in TIME_TYPES:
            continue
        if (score := _proxy(project, col.kind, values, y)) is not None and score >= PROXY:
            out.append(
                {
                    "kind": "proxy",
                    "column": name,
                    "message": f"{name!r} alone predicts {project.target!r} almost perfectly "
                    f"({score:.3f} on TRAIN): is it known before the outcome? If it is "
                    "written after it, leave it out of features",
                }
            )
    out.extend(_overlap(project, train, valid))
    return out


def _id_like(name: str, type_: str, values: pa.ChunkedArray) -> str | None:
    present = values.drop_null()
    n = len(present)
    if n < MIN_ROWS:
        return None
    distinct = len(pc.unique(present))
    if type_ == "string" and distinct >= ID_SHARE * n:
        return f"has {distinct:,} distinct values in {n:,} rows (an id?)"
    if id_named(name) and distinct >= 0.5 * n:
        return f"is named like an id and has {distinct:,} distinct values in {n:,} rows"
    return None


def _proxy(
    project: Project, kind: str, values: pa.ChunkedArray, y: pa.ChunkedArray
) -> float | None:
    """How well the column alone predicts the target (1 = perfectly), or None."""
    present = pc.is_valid(values)
    if pc.sum(present).as_py() < MIN_ROWS:
        return None
    v, t = values.filter(present), y.filter(present)
    numeric = kind == "numeric"
    if project.task == "regression":
        target = np.asarray(t.to_numpy(zero_copy_only=False), dtype=np.float64)
        if np.std(target) == 0:
            return None
        if numeric:
            x = np.asarray(v.to_numpy(zero_copy_only=False), dtype=np.float64)
            if np.std(x) == 0:
                return None
            return abs(float(np.corrcoef(_ranks(x), _ranks(target))[0, 1]))
        codes, n_values = _codes(v)
        if n_values > 0.5 * len(codes):  # one value per row explains anything
            return None
        sums = np.bincount(codes, weights=target, minlength=n_values)
        counts = np.bincount(codes, minlength=n_values)
        means = sums / np.maximum(counts, 1)
        residual = float(np.sum((target - means[codes]) ** 2))
        return 1.0 - residual / float(np.sum((target - target.mean()) ** 2))
    labels, classes = _codes(t)
    if classes < 2:
        return None
    if np.bincount(labels).max() >= 0.95 * len(labels):  # the majority alone is "perfect"
        return None
    if numeric:
        x = np.asarray(v.to_numpy(zero_copy_only=False), dtype=np.float64)
        edges = np.unique(np.quantile(x, np.linspace(0, 1, BINS + 1)[1:-1]))
        codes, n_values = np.searchsorted(edges, x, side="right"), len(edges) + 1
    else:
        codes, n_values = _codes(v)
        if n_values > 0.5 * len(codes):
            return None
    table = np.zeros((n_values, classes))
    np.add.at(table, (codes, labels), 1)
    return float(table.max(axis=1).sum() / len(labels))


def _codes(values: pa.ChunkedArray) -> tuple[Any, int]:
    """Values as integer codes 0..k-1, and k."""
    encoded = pc.dictionary_encode(values).combine_chunks()
    return np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64), len(
        encoded.dictionary
    )


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    return ranks


def _overlap(project: Project, train: pa.Table, valid: pa.Table) -> list[dict[str, Any]]:
    """With a random split: entities and periods on both sides."""
    if project.split.strategy != "random" or valid.num_rows == 0:
        return []
    out = []
    for col in project.columns:
        name = col.name
        if name in (project.key, project.target) or name not in valid.column_names:
            continue
        if col.type in TIME_TYPES and col.name in project.features:
            out.append(
                {
                    "kind": "overlap",
                    "column": name,
                    "message": f"{name!r} is a {col.type} and the split is random: TRAIN and "
                    "VALIDATION cover the same period, so VALIDATION says how the model does "
                    "on the past it saw, not on later rows; consider [split] strategy = "
                    f'"time", column = "{name}"',
                }
            )
            continue
        if col.type not in ("string", "integer") or not id_named(name):
            continue
        seen = train.column(name).drop_null()
        later = pc.unique(valid.column(name).drop_null())
        distinct = len(pc.unique(seen))
        if len(later) < 20 or distinct > ID_SHARE * len(seen) or distinct < 0.01 * len(seen):
            continue  # unique per row, or a few values: not an entity that repeats
        shared = int(pc.sum(pc.is_in(later, value_set=pc.unique(seen))).as_py() or 0)
        if shared >= 0.5 * len(later):
            out.append(
                {
                    "kind": "overlap",
                    "column": name,
                    "message": f"{name!r} repeats: {shared:,} of the {len(later):,} "
                    f"VALIDATION values of {name!r} are also in TRAIN, so VALIDATION "
                    "measures memory of them, not skill on new ones; consider [split] "
                    f'strategy = "group", column = "{name}"',
                }
            )
    return out
