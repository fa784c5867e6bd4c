"""The retraining cycle's eyes: live accuracy, drift, and the triggers they pull.

Live accuracy is counted by the warehouse (labelled and right, per version and
time bucket), so it never reads the predictions themselves; drift numbers come
from the warehouse as Arrow and are computed with numpy on whole columns. Drift compares the recent requests with the champion's own training
rows: PSI on categories and on training-decile bins of numbers, plus the
two-sample Kolmogorov-Smirnov statistic for numbers. A date or timestamp is
compared by the parts that do not grow with time, as categories (month, day of
week, and a timestamp's hour in UTC: ``name_month``, ...): the date itself
always moves on, and would always "drift".
"""

from __future__ import annotations

import json
import logging
import math
import weakref
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from minimlops.domain.alerts import alert_id, wanted
from minimlops.domain.events import RetrainRequested
from minimlops.domain.splits import recorded_split
from minimlops.services import train
from minimlops.services.deps import Deps
from minimlops.services.registry import ModelRegistry
from minimlops.services.tables import arrow_schema

logger = logging.getLogger(__name__)
ESTIMATE = "estimate"  # a triggers-table row of an estimate alert: no retraining
EPS = 1e-4
ESTIMATE_WINDOW = 1000  # newest predictions the accuracy estimate reads
ESTIMATE_MIN_ROWS = 30  # fewer of a version's: no estimate (7 rows gave 0.94, 0.76-1.00)


def drift_columns(project: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The request columns drift is measured on, by kind: (categorical, numeric).
    Every raw feature column; free text is not compared."""
    raw = [project.column(f) for f in project.features if f in project.column_names]
    return (
        tuple(c.name for c in raw if c.kind in ("categorical", "boolean")),
        tuple(c.name for c in raw if c.kind == "numeric"),
    )


DERIVED_REFERENCE_ROWS = 5_000  # TRAIN rows a derived feature is computed on for drift


MAX_DERIVED_CATEGORIES = 50  # more in the reference (a surname): new values are no drift


def derived_drift(project: Any) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The derived features drift compares, as the model reads them: name ->
    (kind, inputs), for each derived feature the model uses that reads an
    input drift does not compare itself: free text (a ticket's subject, read
    by a derived severity) or a column that is no feature. One made only of
    compared inputs (a log of the fare) drifts when they do: compared once."""
    categorical, numeric = drift_columns(project)
    compared = {*categorical, *numeric, *(c for c, _ in date_parts(project).values())}
    return {
        d.name: ("categorical" if d.kind in ("categorical", "boolean") else "numeric", d.inputs)
        for d in project.derived
        if d.name in project.features and any(i not in compared for i in d.inputs)
    }


def _with_derived(deps: Deps, table: pa.Table, limit: int | None = None) -> pa.Table:
    """``table`` (at most ``limit`` of its rows) with a column per derived
    feature drift compares, computed by the project's code on each row that
    has every input (a request without the name tells nothing of a title
    read from it); no value where an input is missing or the code fails."""
    found = derived_drift(deps.project)
    if not found:
        return table
    if limit is not None and table.num_rows > limit:
        at = np.random.default_rng(0).choice(table.num_rows, limit, replace=False)
        table = table.take(np.sort(at))
    inputs = sorted({c for _, ins in found.values() for c in ins if c in table.column_names})
    rows = table.select(inputs).to_pylist()
    for name, (kind, needs) in found.items():
        fn = deps.derive.get(name)
        values: list[Any] = []
        for row in rows:
            value = None
            if fn is not None and all(row.get(c) is not None for c in needs):
                try:  # the prediction was answered: a row the code fails on is skipped
                    value = fn(row)
                    value = float(value) if kind == "numeric" else str(value)
                except Exception:
                    value = None
            values.append(value)
        table = table.append_column(
            name, pa.array(values, pa.float64() if kind == "numeric" else pa.string())
        )
    return table


def _derived_feature(
    name: str, kind: str, ref: _Reference, recent: pa.Array, cfg: MonitorConfig
) -> dict[str, Any] | None:
    """A derived feature's drift, on the rows that have its inputs; None when
    it has too many categories to compare (new values are the norm)."""
    values = recent.drop_null()
    if kind == "categorical":
        counts = ref.categorical.get(name) or {}
        if len(counts) > MAX_DERIVED_CATEGORIES:
            return None
        if len(values) < cfg.drift_min_rows or not counts:
            return {"feature": name, "kind": kind, "psi": None, "status": "no data"}
        return _categorical(name, counts, values, cfg)
    if len(values) < cfg.drift_min_rows:
        return {"feature": name, "kind": kind, "psi": None, "status": "no data"}
    return _numeric(name, ref.numeric.get(name, np.zeros(0)), values, cfg)


# a date's parts compared by drift, by column type, and how Arrow reads them
# Parts whose mix stays the same as time goes on: the day of the week and the
# hour. Not the month: a week of predictions is one or two months against the
# training window's twelve, so it would "drift" by the calendar alone (a
# time-ordered batch retrained the model on the same rows when it was compared).
_PARTS = {"date": ("day_of_week",), "timestamp": ("day_of_week", "hour")}
_READ = {"month": pc.month, "day_of_week": pc.day_of_week, "hour": pc.hour}


def date_parts(project: Any) -> dict[str, tuple[str, str]]:
    """The date parts drift compares: ``<column>_<part>`` -> (column, part),
    for every date and timestamp feature column."""
    raw = [project.column(f) for f in project.features if f in project.column_names]
    return {
        f"{c.name}_{part}": (c.name, part)
        for c in raw
        if c.kind == "date"
        for part in _PARTS[c.type]
    }


def _part(values: pa.Array, part: str) -> pa.Array:
    """One part of a date or timestamp column (a timestamp's read in UTC)."""
    if pa.types.is_timestamp(values.type):  # the instant, whatever zone the reader gave
        values = values.cast(pa.timestamp(values.type.unit, tz="UTC"))
    elif pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        values = values.cast(pa.timestamp("us", tz="UTC") if part == "hour" else pa.date32())
    return _READ[part](values)


def _drift_column(table: pa.Table, name: str, parts: dict[str, tuple[str, str]]) -> pa.Array:
    """A compared column of a table: a column, or a date part of one."""
    if name in parts:
        column, part = parts[name]
        return _part(table.column(column).combine_chunks(), part)
    return table.column(name).combine_chunks()


@dataclass(frozen=True)
class MonitorConfig:
    """Windows and thresholds of monitoring and of the automatic triggers."""

    drift_window: int = 500
    drift_hours: float | None = None
    drift_min_rows: int = 100
    psi_warn: float = 0.1
    psi_drift: float = 0.25
    # classification: live accuracy under this retrains; None: the champion's own
    # (``accuracy_floor``: half its lift over always answering the majority class)
    accuracy_threshold: float | None = None
    error_ratio: float = 1.5  # regression: live RMSE over this times VALIDATION's retrains
    min_labels: int = 30
    retrain_every: float | None = None
    drift_min_importance: float = 0.05  # a feature's share of the importance for drift to matter


FALLBACK_THRESHOLD = 0.7  # a version without VALIDATION figures: the exercise's threshold


def accuracy_floor(cfg: MonitorConfig, meta: dict[str, Any] | None) -> tuple[float | None, str]:
    """The live accuracy under which a classifier retrains, and how it was set
    (None: accuracy cannot judge this version, and why).

    ``MINIMLOPS_ACCURACY_THRESHOLD`` when set; else halfway between what the
    version scored on VALIDATION and what always answering the majority class
    scores there: it has lost half of what it adds. A fixed 0.7 cannot fire on
    a target with 93 % of one class (a model that always says "no" passes it);
    on Titanic (0.83 against 0.58) halfway is 0.71. A version no more accurate
    than the majority class on VALIDATION (a lowered ``threshold`` trades
    accuracy for recall) has no such floor: its accuracy falling says nothing.
    """
    if cfg.accuracy_threshold is not None:
        return cfg.accuracy_threshold, "MINIMLOPS_ACCURACY_THRESHOLD"
    meta = meta or {}
    scored = ((meta.get("metrics") or {}).get("validation") or {}).get("accuracy")
    majority = (((meta.get("baseline") or {}).get("task")) or {}).get("accuracy")
    if scored is None or majority is None:
        return FALLBACK_THRESHOLD, "no VALIDATION figures to set it from"
    if scored <= majority:
        return None, (
            f"version {meta.get('version')} is no more accurate on VALIDATION ({scored:.3f}) "
            f"than always answering the majority class ({majority:.3f}), so accuracy cannot "
            "judge it; set MINIMLOPS_ACCURACY_THRESHOLD to watch it all the same"
        )
    return majority + (scored - majority) / 2, (
        f"half of version {meta.get('version')}'s lift: {scored:.3f} on VALIDATION, "
        f"{majority:.3f} always answering the majority class"
    )


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def live_accuracy(
    deps: Deps, registry: ModelRegistry, window: int = ESTIMATE_WINDOW
) -> list[dict[str, Any]]:
    """Per model version: served, labelled (and which share, and how long
    after the prediction its label came: median and 90th percentile), live
    accuracy with its interval, the accuracy estimated from the served
    probabilities of its recent predictions (``estimated``), and when it was
    champion. A labelled prediction counts only if it was made before its row
    landed in the training table: one made after it (a row sent again, or
    asked about once more) may be answered from what the model learnt, so it
    is left out and counted in ``predicted_after_landing``."""
    n = deps.names
    served = deps.warehouse.served_per_version(n.predictions_table)
    counted = {
        r["model_version"]: r
        for r in deps.warehouse.labelled_accuracy(
            n.predictions_table, n.feedback_table, landed_in=n.training_table
        )
    }
    pointer, _ = registry.champion()
    history = (pointer or {}).get("history", [])
    out = []
    versions = sorted({m["version"] for m in registry.versions()} | set(served), key=int)
    regression = deps.project.task == "regression"
    estimates: dict[str, dict[str, Any]] = {}
    if not regression:
        try:
            estimates = estimated(deps, window)
        except Exception:  # a display and an alert: never what stops the monitor
            logger.exception("monitor: no accuracy estimate")
    for v in versions:
        c = counted.get(v) or {"labelled": 0, "correct": 0}
        total, correct = c["labelled"], c["correct"]
        low, high = wilson(correct, total)
        periods = [
            {"from": h["at"], "to": nxt["at"] if nxt else None, "reason": h["reason"]}
            for h, nxt in zip(history, [*history[1:], None][: len(history)], strict=True)
            if h["version"] == v
        ]
        row = {
            "version": v,
            "served": served.get(v, 0),
            "labelled": total,
            "label_coverage": total / served[v] if served.get(v) else None,
            # labelled, but made when their row had already landed: left out
            "predicted_after_landing": c.get("predicted_after_landing", 0),
            "label_delay_s": {"p50": c.get("delay_p50_s"), "p90": c.get("delay_p90_s")}
            if total
            else None,
            "live_accuracy": None if regression or not total else correct / total,
            "interval_95": [low, high] if total and not regression else None,
            "estimated": estimates.get(v),
            "champion_periods": periods,
        }
        if regression:
            row["live_mae"] = c["abs_error"] / total if total else None
            row["live_rmse"] = math.sqrt(c["squared_error"] / total) if total else None
            # the absolute errors' mean and spread (|e|^2 = e^2): a normal interval
            if total > 1:
                spread = max(0.0, c["squared_error"] / total - row["live_mae"] ** 2)
                half = 1.96 * math.sqrt(spread / total)
                row["mae_interval_95"] = [max(0.0, row["live_mae"] - half), row["live_mae"] + half]
        out.append(row)
    return out


def estimated(deps: Deps, window: int = 0) -> dict[str, dict[str, Any]]:
    """Per version, what its ``window`` newest predictions should score if the
    served probabilities are calibrated, before any label arrives: each row is
    right with the probability of the class it predicted, so accuracy is
    their mean, with a 95 % interval from their variance (the rows' outcomes
    are independent Bernoulli draws); log loss is the mean entropy, and the
    Brier score (binary) the mean of p(1 - p). It assumes what calibration on
    VALIDATION measured still holds: under covariate drift with the same
    relation between inputs and label it does (``test_the_estimate_tracks``),
    under concept drift only labels can tell. A version with fewer than
    ``ESTIMATE_MIN_ROWS`` of them gets none. Predictions made after their
    row had landed are not among them (the model may have learnt those)."""
    # as live accuracy: a row asked about after it landed may be answered from
    # what the model learnt, which is not what tomorrow's rows will get (with a
    # hash of the row for key, a prediction has none until its label comes)
    hashed = deps.project.key_is_row_hash
    recent = deps.warehouse.recent_predictions(
        deps.names.predictions_table,
        window or ESTIMATE_WINDOW,
        landed_in=None if hashed else deps.names.training_table,
    )
    if not hashed:
        recent = recent.filter(pc.invert(recent.column("learnt")))
    recent = recent.filter(pc.is_valid(recent.column("probability")))
    if deps.project.task == "multiclass":
        recent = recent.filter(pc.is_valid(recent.column("probabilities")))
    if recent.num_rows == 0:
        return {}
    project = deps.project
    versions = recent.column("model_version").to_pylist()
    p = np.asarray(recent.column("probability").to_numpy(zero_copy_only=False), dtype=np.float64)
    binary = project.task == "binary"
    if binary:  # the positive class's probability: the predicted one's is p or 1 - p
        positive = project.positive_class
        said = np.array([v == positive for v in recent.column("prediction").to_pylist()])
        right = np.where(said, p, 1.0 - p)
        q = np.clip(p, 1e-15, 1 - 1e-15)
        loss = -(q * np.log(q) + (1 - q) * np.log(1 - q))
        brier = p * (1 - p)
    else:
        right = p
        every = [json.loads(x) for x in recent.column("probabilities").to_pylist()]
        loss = np.array(
            [-sum(v * math.log(v) for v in _values(e) if v > 0) for e in every], dtype=np.float64
        )
        brier = None
    out: dict[str, dict[str, Any]] = {}
    for v in dict.fromkeys(versions):
        at = np.array([x == v for x in versions])
        n, r = int(at.sum()), right[at]
        if n < ESTIMATE_MIN_ROWS:
            continue
        mean = float(r.mean())
        half = 1.96 * math.sqrt(float(np.sum(r * (1 - r)))) / n
        out[v] = {
            "rows": n,
            "accuracy": mean,
            "interval_95": [max(0.0, mean - half), min(1.0, mean + half)],
            "log_loss": float(loss[at].mean()),
            **({"brier": float(brier[at].mean())} if brier is not None else {}),
        }
    return out


def _values(probabilities: Any) -> list[float]:
    """A prediction's class probabilities, as its JSON holds them (a mapping
    of class to probability, or a list)."""
    return [
        float(x)
        for x in (probabilities.values() if isinstance(probabilities, dict) else probabilities)
    ]


def accuracy_series(deps: Deps, bucket_seconds: int = 60) -> list[dict[str, Any]]:
    """Per version and time bucket (of the prediction): labelled rows and accuracy."""
    n = deps.names
    regression = deps.project.task == "regression"
    return [
        {
            "version": r["model_version"],
            "at": r["at"],
            "labelled": r["labelled"],
            "accuracy": None if regression else r["correct"] / r["labelled"],
            **(
                {
                    "mae": r["abs_error"] / r["labelled"],
                    "rmse": math.sqrt(r["squared_error"] / r["labelled"]),
                }
                if regression
                else {}
            ),
        }
        for r in deps.warehouse.labelled_accuracy(
            n.predictions_table, n.feedback_table, bucket_seconds, landed_in=n.training_table
        )
    ]


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.clip(expected / max(expected.sum(), 1), EPS, None)
    a = np.clip(actual / max(actual.sum(), 1), EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def _status(psi: float, cfg: MonitorConfig, noise: float = 0.0) -> str:
    """ok, warn or drift: over the threshold, and over what the same
    distribution gives by chance in a window this size (``noise``)."""
    if psi <= noise:
        return "ok"
    return "drift" if psi >= cfg.psi_drift else ("warn" if psi >= cfg.psi_warn else "ok")


NULL_DRAWS = 1000  # windows drawn from the reference itself, for the noise floor
NULL_QUANTILE = 0.99


def _noise(expected: np.ndarray, n: int, seed: int = 0) -> float:
    """The PSI that a reference of its size and a window of ``n`` rows, both
    drawn from the reference's distribution, reach by chance (its 99th
    percentile over ``NULL_DRAWS`` draws; ten values in the tail): the
    reference against itself. PSI's bias grows with the bins
    and shrinks with the rows (about (bins - 1) / n): a 50-category column
    compared on 500 rows shows ~0.1 from sampling alone, which the fixed
    thresholds would call a warning on identical data."""
    total = int(expected.sum())
    if n == 0 or total == 0:
        return 0.0
    p = expected / total
    g = np.random.default_rng(seed)
    # both sides drawn: the reference is a sample too (its rare categories' shares
    # are themselves noisy), then the window
    e = np.clip(g.multinomial(total, p, size=NULL_DRAWS) / total, EPS, None)
    a = np.clip(g.multinomial(n, p, size=NULL_DRAWS) / n, EPS, None)
    psi = np.sum((a - e) * np.log(a / e), axis=1)
    return float(np.quantile(psi, NULL_QUANTILE))


def _jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """The Jensen-Shannon distance (base 2: 0 the same, 1 disjoint) of two
    count vectors: an effect size of a categorical shift that stays bounded
    when a category is new or gone, where PSI explodes."""
    p, q = p / max(p.sum(), 1), q / max(q.sum(), 1)
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        at = x > 0
        return float(np.sum(x[at] * np.log2(x[at] / m[at])))

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))


def _categorical(
    name: str, train: dict[Any, int], recent: pa.Array, cfg: MonitorConfig
) -> dict[str, Any]:
    r = _counts(recent)
    cats = sorted({*train, *r}, key=str)
    e = np.array([train.get(c, 0) for c in cats], float)
    a = np.array([r.get(c, 0) for c in cats], float)
    psi = _psi(e, a)
    noise = _noise(e, int(a.sum()))
    return {
        "feature": name,
        "kind": "categorical",
        "psi": psi,
        "noise_psi": noise,
        "status": _status(psi, cfg, noise),
        "effect": {"jensen_shannon": _jensen_shannon(e, a)},
        "train": {str(c): x / max(e.sum(), 1) for c, x in zip(cats, e, strict=True)},
        "recent": {str(c): x / max(a.sum(), 1) for c, x in zip(cats, a, strict=True)},
    }


def _counts(values: pa.Array) -> dict[Any, int]:
    """How often each value occurs (missing values counted under None)."""
    return {v["values"]: v["counts"] for v in pc.value_counts(values).to_pylist()}


def _numbers(values: pa.Array) -> np.ndarray:
    return np.asarray(values.drop_null().to_numpy(zero_copy_only=False), dtype=float)


def _numeric(name: str, t: np.ndarray, recent: pa.Array, cfg: MonitorConfig) -> dict[str, Any]:
    r = _numbers(recent)
    if len(t) == 0 or len(r) == 0:
        return {"feature": name, "kind": "numeric", "psi": None, "status": "no data"}
    edges = np.unique(np.quantile(t, np.linspace(0, 1, 11)))
    edges[0], edges[-1] = -np.inf, np.inf
    expected = np.histogram(t, edges)[0].astype(float)
    psi = _psi(expected, np.histogram(r, edges)[0].astype(float))
    noise = _noise(expected, len(r))
    from scipy import stats  # ~0.3 s to import: not on the way to the first prediction

    ks = stats.ks_2samp(t, r)
    # how far the values moved, in the reference's own spread (its interquartile
    # range; its standard deviation when most values are one): 0.5 is half an IQR
    q1, q3 = np.quantile(t, [0.25, 0.75])
    scale = float(q3 - q1) or float(np.std(t)) or 1.0
    return {
        "feature": name,
        "kind": "numeric",
        "psi": psi,
        "noise_psi": noise,
        "status": _status(psi, cfg, noise),
        "effect": {"wasserstein_iqr": float(stats.wasserstein_distance(t, r)) / scale},
        "ks_statistic": float(ks.statistic),
        "ks_pvalue": float(ks.pvalue),
        "train_median": float(np.median(t)),
        "recent_median": float(np.median(r)),
    }


@dataclass(frozen=True)
class _Reference:
    """What drift needs of a champion's TRAIN rows: category counts, numbers."""

    key: tuple[str, str]  # (version, training snapshot)
    rows: int
    categorical: dict[str, dict[Any, int]]
    numeric: dict[str, np.ndarray]


# One reference per warehouse (weakly held: it goes with its app), rebuilt
# when the champion changes. Building it scans the training table; the
# dashboard asks for drift every 30 s and the monitor on every tick.
_references: weakref.WeakKeyDictionary[Any, _Reference] = weakref.WeakKeyDictionary()


def _reference(deps: Deps, meta: dict[str, Any]) -> _Reference:
    key = (str(meta["version"]), str(meta["training"].get("snapshot", "")))
    cached = _references.get(deps.warehouse)
    if cached is not None and cached.key == key:
        return cached
    # The rows the champion was fitted on: its snapshot's rows of the splits
    # it learned from (TRAIN, and VALIDATION when refitted), split as it was
    # (a time split's recorded cut-offs), the same sample when training read one.
    training = meta["training"]
    train = deps.warehouse.latest_rows(
        deps.names.training_table,
        ingestion_ids=training["ingestion_ids"],
        splits=training.get("fitted_on") or ["TRAIN"],
        per_split=training.get("max_rows_per_split") or deps.training_max_rows,
        split=recorded_split(deps.project, training.get("split")),
    )
    categorical, numeric = drift_columns(deps.project)
    parts = date_parts(deps.project)
    derived = derived_drift(deps.project)
    sample = _with_derived(deps, train, DERIVED_REFERENCE_ROWS)
    ref = _Reference(
        key,
        train.num_rows,
        {
            **{c: _counts(_drift_column(train, c, parts)) for c in (*categorical, *parts)},
            **{
                d: _counts(sample.column(d).combine_chunks().drop_null())
                for d, (kind, _) in derived.items()
                if kind == "categorical"
            },
        },
        {
            **{c: _numbers(train.column(c).combine_chunks()) for c in numeric},
            **{
                d: _numbers(sample.column(d).combine_chunks())
                for d, (kind, _) in derived.items()
                if kind == "numeric"
            },
        },
    )
    _references[deps.warehouse] = ref
    return ref


def drift(deps: Deps, registry: ModelRegistry, cfg: MonitorConfig) -> dict[str, Any]:
    """Each input's drift between the champion's TRAIN rows and recent requests."""
    pointer, _ = registry.champion()
    thresholds = {
        "psi_warn": cfg.psi_warn,
        "psi_drift": cfg.psi_drift,
        "min_importance": cfg.drift_min_importance,
        "noise_quantile": NULL_QUANTILE,
    }
    if pointer is None:
        return {"status": "no champion yet", "features": [], "thresholds": thresholds}
    since = deps.now() - timedelta(hours=cfg.drift_hours) if cfg.drift_hours else None
    recent = deps.warehouse.recent_predictions(
        deps.names.predictions_table, cfg.drift_window, since
    )
    window = {"rows": recent.num_rows, "limit": cfg.drift_window, "hours": cfg.drift_hours}
    if recent.num_rows < cfg.drift_min_rows:
        return {
            "status": f"not enough recent predictions ({recent.num_rows} < {cfg.drift_min_rows})",
            "features": [],
            "window": window,
            "thresholds": thresholds,
            "champion": pointer["version"],
        }
    ref = _reference(deps, registry.metadata(pointer["version"]))
    parts = date_parts(deps.project)
    derived = derived_drift(deps.project)
    recent = _with_derived(deps, recent)
    features = [
        _categorical(c, counts, _drift_column(recent, c, parts), cfg)
        for c, counts in ref.categorical.items()
        if c not in derived
    ]
    features += [
        _numeric(c, values, recent.column(c).combine_chunks(), cfg)
        for c, values in ref.numeric.items()
        if c not in derived
    ]
    features += [
        found
        for d, (kind, _) in derived.items()
        if (found := _derived_feature(d, kind, ref, recent.column(d).combine_chunks(), cfg))
    ]
    shares, measure = _importance(registry, pointer["version"])
    together = _together(deps.project)
    for f in features:
        name = f["feature"]
        if name in derived:  # its inputs' share: attributions go to the columns a person typed
            inputs = derived[name][1]
            group = tuple(sorted({c for i in inputs for c in together.get(i, (i,))}))
            f["derived_from"] = list(inputs)
            f["importance_of"] = ", ".join(inputs)
            if others := [c for c in group if c not in inputs]:
                f["importance_with"] = others
        else:
            column = parts[name][0] if name in parts else name
            group = together.get(column, (column,))
            if column != name:  # a date part: the share is the whole date's
                f["importance_of"] = column
            if len(group) > 1:
                f["importance_with"] = [c for c in group if c != column]
        share = sum(shares.get(c, 0.0) for c in group) if shares is not None else None
        f["importance_share"] = share
        # drift on a feature the model barely uses moves few predictions: shown, not acted on
        f["matters"] = None if shares is None else (share or 0.0) >= cfg.drift_min_importance
    ranked = [f for f in features if f.get("psi") is not None]
    # the report's status is the worst of the features the model relies on, as
    # the trigger judges them; one barely used is listed apart ("minor")
    relied = [f for f in ranked if f.get("matters") is not False]
    worst = next((s_ for s_ in ("drift", "warn") if any(f["status"] == s_ for f in relied)), "ok")
    return {
        "status": worst,
        "minor": [
            f["feature"] for f in ranked if f.get("matters") is False and f["status"] == "drift"
        ],
        "champion": pointer["version"],
        "window": window,
        "reference_rows": ref.rows,
        "features": features,
        "thresholds": thresholds,
        "importance": measure,
    }


def _together(project: Any) -> dict[str, tuple[str, ...]]:
    """Input columns judged together for importance: those that feed one
    derived feature. A derived feature's attribution is split equally among
    its inputs (how it depends on each is code we cannot see into), and
    permutation importance splits it by what the others cannot stand in for:
    Titanic's title comes from the name and, without one, from sex and age,
    so sex alone can look unimportant while a shift in it moves the title."""
    out: dict[str, set[str]] = {}
    for d in project.derived:
        for c in d.inputs:
            out.setdefault(c, {c}).update(d.inputs)
    return {c: tuple(sorted(g)) for c, g in out.items()}


def _importance(
    registry: ModelRegistry, version: str
) -> tuple[dict[str, float] | None, str | None]:
    """Each input column's share of how much the version uses it, and which
    measure gave it: None, None when the version recorded neither.

    Mean |attribution| on VALIDATION first: how far each input moves the
    model's output, which is what a drift in it does to predictions. Two
    inputs that carry the same information (a ticket's class and its fare)
    each keep their part of it. Permutation importance, the fallback for
    versions without attributions, asks how much the metric needs an input
    that the others cannot stand in for, so it credits neither of two such
    inputs: boosted trees of 1,500 generated passengers gave the class 4 %
    and the fare 0 % of their permutation importance (10 % and 17 % of their
    attributions), so a first-class, high-fare crowd looked like drift on
    features they barely used. Negative importance counts as none."""
    try:
        found = registry.evaluation(version) or {}
    except Exception:  # unreadable: drift is still reported, every feature counted
        return None, None
    attributions = found.get("attributions") or {}
    columns = attributions.get("columns") or []
    weight = {c["column"]: float(c.get("mean_abs") or 0.0) for c in columns}
    if sum(weight.values()) > 0:
        return _shares(weight), "mean |attribution| on VALIDATION"
    columns = (found.get("importance") or {}).get("columns") or []
    weight = {c["column"]: max(0.0, float(c.get("importance") or 0.0)) for c in columns}
    if sum(weight.values()) > 0:
        return _shares(weight), "permutation importance on VALIDATION"
    return None, None


def _shares(weight: dict[str, float]) -> dict[str, float]:
    total = sum(weight.values())
    return {c: w / total for c, w in weight.items()}


def snapshot_id(deps: Deps) -> str:
    """Which training data exists now: the loaded ingestion ids, hashed."""
    import hashlib

    ids = sorted(r["ingestion_id"] for r in deps.warehouse.ledger() if r["status"] == "loaded")
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def record_trigger(deps: Deps, event: RetrainRequested, kind: str, details: dict[str, Any]) -> None:
    """Keep a trigger and its reason in the triggers table."""
    _record(deps, event.event_id, kind, event.reason, details)


def _record(deps: Deps, trigger_id: str, kind: str, reason: str, details: dict[str, Any]) -> None:
    row = {
        "trigger_id": trigger_id,
        "kind": kind,
        "reason": reason,
        "requested_at": deps.now(),
        "details": json.dumps(details, default=str),
    }
    deps.warehouse.append(
        deps.names.triggers_table,
        pa.Table.from_pylist([row], schema=arrow_schema("retrain_triggers")),
    )


def triggers(deps: Deps, *, estimates: bool = False) -> list[dict[str, Any]]:
    """Recorded retraining triggers, newest first; with ``estimates``, the
    rows of estimate alerts too (which asked for no retraining). A trigger
    recorded again (the training it asked for found the champion had learnt
    from the rows already: ``train_model`` says so in a second row) is one:
    when and why it fired from its first row, what became of it
    (``retrained``, ``version``, ``snapshot``) from the newest."""
    table = deps.warehouse.read(deps.names.triggers_table)
    rows = [r for r in table.to_pylist() if estimates or r["kind"] != ESTIMATE]
    first: dict[str, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r["requested_at"]):
        r["details"] = json.loads(r["details"]) if r.get("details") else None
        seen = first.setdefault(r["trigger_id"], r)
        if seen is not r:
            seen["details"] = {**(seen["details"] or {}), **(r["details"] or {})}
    return sorted(first.values(), key=lambda r: r["requested_at"], reverse=True)


@dataclass(frozen=True)
class Checked:
    """What one run of the automatic triggers did.

    ``events``: the trainings asked for (to publish). ``not_retrained``: the
    reason of each trigger that fired without asking for a training (drift or
    a drop while the rows are those the champion learned from). ``quiet``: for
    each trigger that did not fire, why not (a check that fired nothing says so).
    """

    events: list[RetrainRequested]
    not_retrained: list[str]
    quiet: list[str]


def check(deps: Deps, registry: ModelRegistry, cfg: MonitorConfig) -> Checked:
    """Decide which automatic triggers fire now, record them, return what was done.

    Drift and accuracy each fire at most once per training-data snapshot:
    retraining on the same rows would not cure them, and firing again would
    train in a loop. The schedule fires when the newest model is old enough.
    """
    snapshot = snapshot_id(deps)
    fired: list[tuple[str, str, dict[str, Any]]] = []
    quiet: list[str] = []
    recorded = triggers(deps, estimates=True)
    earlier = {(t["kind"], (t["details"] or {}).get("snapshot")) for t in recorded}
    again = "already fired on these training rows (it fires again once new rows land)"
    report = drift(deps, registry, cfg)
    # a trigger only for drift on a feature that matters to the model (or any, when
    # the version recorded no importance)
    drifted = [
        f for f in report["features"] if f["status"] == "drift" and f.get("matters") is not False
    ]
    if drifted and ("drift", snapshot) not in earlier:
        names = ", ".join(f"{f['feature']} (PSI {f['psi']:.2f})" for f in drifted)
        fired.append(
            (
                "drift",
                f"drift over threshold {cfg.psi_drift} in {names} over the last "
                f"{report['window']['rows']} predictions",
                {"features": drifted},
            )
        )
    elif drifted:
        quiet.append(f"drift in {', '.join(f['feature'] for f in drifted)}: {again}")
    elif report["features"]:
        quiet.append(
            f"drift: no feature the model relies on over PSI {cfg.psi_drift} in the last "
            f"{report['window']['rows']} predictions"
        )
    else:
        quiet.append(f"drift: {report['status']}")
    pointer, _ = registry.champion()
    champ = next(
        (
            v
            for v in live_accuracy(deps, registry)
            if pointer and v["version"] == pointer["version"]
        ),
        None,
    )
    champ_meta = registry.metadata(pointer["version"]) if champ and pointer else None
    floor, floor_from = accuracy_floor(cfg, champ_meta)
    if (
        champ
        and champ["labelled"] >= cfg.min_labels
        and champ["live_accuracy"] is not None
        # the whole 95 % interval under the threshold: a few unlucky labels are no drop
        and floor is not None
        and (champ.get("interval_95") or [0.0, champ["live_accuracy"]])[1] < floor
        and ("accuracy", snapshot) not in earlier
    ):
        low, high = champ.get("interval_95") or [champ["live_accuracy"]] * 2
        fired.append(
            (
                "accuracy",
                f"live accuracy {champ['live_accuracy']:.3f} ({low:.3f}-{high:.3f}) of version "
                f"{champ['version']} on {champ['labelled']} labels is under "
                f"{floor:.3f} ({floor_from})",
                {"version": champ, "threshold": floor},
            )
        )
    _estimate_alert(deps, cfg, champ, snapshot, recorded, floor, floor_from)
    expected = None  # regression: the champion's VALIDATION RMSE
    if (
        champ
        and pointer
        and champ.get("live_rmse") is not None
        and champ["labelled"] >= cfg.min_labels
        and ("accuracy", snapshot) not in earlier
    ):
        expected = (champ_meta or registry.metadata(pointer["version"]))["metrics"][
            "validation"
        ].get("rmse")
        if expected and champ["live_rmse"] > cfg.error_ratio * expected:
            fired.append(
                (
                    "accuracy",
                    f"live RMSE {_figure(champ['live_rmse'])} of version "
                    f"{champ['version']} on {champ['labelled']} labels is over "
                    f"{cfg.error_ratio} x its VALIDATION RMSE {_figure(expected)}",
                    {"version": champ},
                )
            )
    if not any(kind == "accuracy" for kind, _, _ in fired):
        quiet.append(
            _accuracy_quiet(
                champ,
                cfg,
                ("accuracy", snapshot) in earlier,
                again,
                expected,
                (floor, floor_from),
                deps.project.task == "regression",
            )
        )
    if cfg.retrain_every and _due(deps, registry, cfg.retrain_every):
        fired.append(
            ("schedule", f"schedule: no model trained in the last {cfg.retrain_every:g} s", {})
        )
    elif cfg.retrain_every:
        quiet.append(f"schedule: a model was trained in the last {cfg.retrain_every:g} s")
    else:
        quiet.append("schedule: off (MINIMLOPS_RETRAIN_EVERY)")
    events: list[RetrainRequested] = []
    noted: list[str] = []
    # drift and a drop while the champion was trained on the rows as they are (none
    # landed since): a training would give the champion again and, promoted as not
    # worse than itself, leave the labels that showed the drop with the old one;
    # said, recorded, alerted, and nothing trained. A version trained on these rows
    # but kept out is trained again (judged with the labels since); a schedule
    # trains whatever it finds.
    serving = pointer["version"] if pointer else None
    same = (
        train.trained_on_current_rows(deps, registry)
        if serving and any(kind != "schedule" for kind, _, _ in fired)
        else None
    )
    for kind, reason, details in fired:
        event = RetrainRequested(reason=reason, trigger="" if kind == "schedule" else kind)
        retrain = kind == "schedule" or same is None or same != serving
        if not retrain:
            details = {**details, "retrained": False, "version": same}
        # the alert first: a trigger recorded fires no more, and its alert would be lost
        _alert(deps, kind, reason, details, snapshot, event if retrain else None)
        record_trigger(deps, event, kind, {**details, "snapshot": snapshot})
        if retrain:
            logger.warning("monitor: retraining requested: %s", reason)
            events.append(event)
        else:
            logger.warning(
                "monitor: %s; not retraining: no rows landed since the champion, version "
                "%s, learned from them, so a training would give it again (land new rows)",
                reason,
                same,
            )
            noted.append(
                f"{reason}; not retrained: no rows landed since the champion, version "
                f"{same}, learned from them"
            )
    return Checked(events, noted, quiet)


def check_answer(checked: Checked) -> dict[str, list[str]]:
    """A check as ``POST /monitoring/check`` (and the Cloud Scheduler target)
    answers it: ``triggered``, the trainings asked for; ``not_retrained``,
    triggers that fired on rows the champion already learned from; ``quiet``,
    why each other trigger did not fire."""
    return {
        "triggered": [e.reason for e in checked.events],
        "not_retrained": checked.not_retrained,
        "quiet": checked.quiet,
    }


def _accuracy_quiet(
    champ: dict[str, Any] | None,
    cfg: MonitorConfig,
    fired_before: bool,
    again: str,
    expected: float | None,
    floor: tuple[float | None, str],
    regression: bool,
) -> str:
    """Why the live-accuracy (or live-error) trigger did not fire (``expected``:
    a regression champion's VALIDATION RMSE, when it was read; ``floor``: a
    classifier's threshold, and how it was set)."""
    if champ is None:
        return "live accuracy: no champion yet"
    what = "live error" if regression else "live accuracy"
    if champ["labelled"] < cfg.min_labels:
        return (
            f"{what}: {champ['labelled']} of version {champ['version']}'s predictions "
            f"labelled, {cfg.min_labels} needed (MINIMLOPS_MIN_LABELS)"
        )
    if fired_before:
        return f"{what}: {again}"
    if regression:
        if champ.get("live_rmse") is None or not expected:
            return f"live error: version {champ['version']} has no live or VALIDATION RMSE"
        return (
            f"live error: RMSE {_figure(champ['live_rmse'])} on {champ['labelled']} labels is within "
            f"{cfg.error_ratio} x version {champ['version']}'s VALIDATION RMSE {_figure(expected)}"
        )
    if floor[0] is None:
        return f"live accuracy: no threshold: {floor[1]}"
    low, high = champ.get("interval_95") or [champ["live_accuracy"]] * 2
    return (
        f"live accuracy: {champ['live_accuracy']:.3f} ({low:.3f}-{high:.3f}) of version "
        f"{champ['version']} on {champ['labelled']} labels is not wholly under "
        f"{floor[0]:.3f} ({floor[1]})"
    )


def _estimate_alert(
    deps: Deps,
    cfg: MonitorConfig,
    champ: dict[str, Any] | None,
    snapshot: str,
    recorded: list[dict[str, Any]],
    floor: float | None,
    floor_from: str,
) -> None:
    """metric.dropped before labels arrive: the champion's estimated accuracy
    on enough recent predictions (``drift_min_rows``) under the threshold;
    once per version and training snapshot, recorded in the triggers table
    as an ``estimate`` (so a new process, or another function instance on
    Google Cloud, does not send it again). An alert, not a retraining: the
    rows to learn the change from have no labels yet."""
    est = (champ or {}).get("estimated")
    if not champ or not est or est["rows"] < cfg.drift_min_rows:
        return
    if not deps.alerts.on or not wanted("metric.dropped", deps.alerts.events):
        return  # nobody to tell: nothing to record
    if champ["labelled"] >= cfg.min_labels:  # the labels speak: live accuracy alerts
        return
    if floor is None or est["accuracy"] >= floor:
        return
    done = {
        (d.get("snapshot"), d.get("version"))
        for t in recorded
        if t["kind"] == ESTIMATE and (d := t["details"] or {})
    }
    if (snapshot, champ["version"]) in done:
        return
    from minimlops.services import alerts

    low, high = est["interval_95"]
    reason = (
        f"estimated accuracy {est['accuracy']:.3f} ({low:.3f}-{high:.3f}) of version "
        f"{champ['version']} on its {est['rows']} newest predictions is under "
        f"{floor:.3f} ({floor_from}; from the served probabilities, no labels yet)"
    )
    key = f"estimate/{snapshot}/{champ['version']}"
    sent = alerts.publish(
        deps,
        "metric.dropped",
        reason,
        {"version": champ["version"], "estimated": est, "threshold": floor},
        key=key,
    )
    if sent >= 0:  # published (or this occurrence was before): not again; failed: next tick
        _record(
            deps,
            alert_id("metric.dropped", key),
            ESTIMATE,
            f"alert only: {reason}",
            {"snapshot": snapshot, "version": champ["version"]},
        )


def _alert(
    deps: Deps,
    kind: str,
    reason: str,
    details: dict[str, Any],
    snapshot: str,
    event: RetrainRequested | None,
) -> None:
    """A trigger's alerts: what was seen (drift, a metric; once per training
    snapshot, all features in one), and that retraining was asked for (no
    ``event``: it was not, the rows being those of a version)."""
    from minimlops.services import alerts

    seen = {"drift": "drift.detected", "accuracy": "metric.dropped"}.get(kind)
    if seen == "drift.detected":
        features = [
            {
                k: f.get(k)
                for k in ("feature", "kind", "psi", "noise_psi", "effect", "importance_share")
            }
            for f in details.get("features", [])
        ]
        alerts.publish(
            deps, seen, reason, {"features": features, "snapshot": snapshot}, key=snapshot
        )
    elif seen == "metric.dropped":
        alerts.publish(deps, seen, reason, {**details, "snapshot": snapshot}, key=snapshot)
    if event is None:
        return
    alerts.publish(
        deps,
        "retraining.triggered",
        f"retraining requested ({kind}): {reason}",
        {"trigger": kind, "reason": reason, "snapshot": snapshot},
        key=event.event_id,
    )


def _due(deps: Deps, registry: ModelRegistry, every: float) -> bool:
    versions = registry.versions()
    if not versions:
        return False
    newest = datetime.fromisoformat(versions[-1]["created_at"])
    return (deps.now() - newest).total_seconds() >= every


def config_dict(cfg: MonitorConfig) -> dict[str, Any]:
    return asdict(cfg)


def _figure(x: float) -> str:
    """An error as the pages write it: 28,571 (not 2.857e+04), 2.019, 0.4036."""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"
