"""The compute of one training run, as one pure function: tables in, bytes and
numbers out. It may run in another process (see ``adapters.process_compute``), so
its arguments and result are plain data.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from minimlops.domain.policy import mcnemar
from minimlops.domain.project import Project
from minimlops.errors import DerivedFeatureError
from minimlops.ml import artifacts, calibration, export, leakage, metrics, outputs
from minimlops.ml.serving import OnnxModel

if TYPE_CHECKING:
    from minimlops.ml.model import TrainedModel

logger = logging.getLogger("minimlops.train")
CHUNK_ROWS = 50_000  # rows held as Python dicts at once
PARITY_ROWS = 20_000  # VALIDATION rows the ONNX form is checked on at most


def _log_progress(step: str, done: int, total: int) -> None:
    logger.info("train_model: %s (%d/%d)", step, done + 1, total)


def _chunks(table: pa.Table) -> Callable[[], Iterator[list[dict[str, Any]]]]:
    """A table's rows as dicts, a chunk at a time, each time it is called."""

    def read() -> Iterator[list[dict[str, Any]]]:
        for batch in table.to_batches(max_chunksize=CHUNK_ROWS):
            yield batch.to_pylist()

    return read


def fit_and_score(
    train: pa.Table,
    valid: pa.Table,
    labelled: pa.Table,
    project: Project,
    *,
    folds: int,
    seed: int,
    champion: bytes | None = None,
    champion_sha256: str | None = None,
    compare: np.ndarray | None = None,
    test: pa.Table | None = None,
    budget_s: float | None = None,
    imbalance_threshold: float | None = None,
    refit: bool = True,
    ensembles: bool = True,
) -> dict[str, Any]:
    """Select and fit a model on TRAIN rows; score it (and the champion, on the
    same rows: VALIDATION plus labelled predictions); convert it for serving.

    Rows are turned into dicts a chunk at a time, for fitting and scoring
    alike: memory grows with the tables given (the caller bounds them), not
    with their Python form.

    Returns:
        ``artifact`` (skops bytes), ``onnx`` (bytes or None), ``serving``,
        ``algorithm``, ``features``, ``cv_scores`` (the primary metric per
        candidate), ``cv_metric``, ``selection`` (the leaderboard, the round
        count, the class-weight decision), ``metrics`` (on the scored rows),
        ``validation`` (on VALIDATION), ``baseline`` (the task's, on
        VALIDATION), ``extra_baselines`` (the example's own), ``champion_metrics``
        and ``paired`` (None without a champion), ``rows_scored``,
        ``evaluation`` (the numbers of the version's evaluation page, on VALIDATION),
        ``calibration`` (whether a calibrator was kept, and why), ``warnings``
        (leakage), ``fitted_on`` (the splits and rows the served model learned
        from) and ``measured_artifact`` (the TRAIN-only fit, when the served one
        was refitted on TRAIN and VALIDATION; else None).

    ``test`` (TEST rows): ``test`` in the result holds the figures of the
    model that serves (the refit, when there is one) on them: rows no fit and
    no selection learned from.

    ``compare`` (a mask over VALIDATION's rows, then the labelled ones): the
    champion is compared on those rows only, and ``compared_metrics`` holds the
    challenger's figures on them (None: on every row, as ``metrics``).

    With ``refit`` (and VALIDATION rows), the served model is the chosen
    candidate fitted again, with the same settings, on TRAIN and VALIDATION;
    every figure above stays the TRAIN-only fit's, measured on rows it had not
    seen (but ``test``, the served fit's). ``champion`` is the fit of the
    champion the caller chose to score (``services.train._gate``).
    """
    from minimlops.ml import training  # scikit-learn: only where training runs
    from minimlops.projects import derived_functions

    derive = derived_functions(project)
    knobs = {
        k: v
        for k, v in (("budget_s", budget_s), ("imbalance_threshold", imbalance_threshold))
        if v is not None
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        model = training.select_and_fit(
            _chunks(train),
            project,
            derive,
            folds=folds,
            seed=seed,
            progress=_log_progress,
            ensembles=ensembles,
            **knobs,
        )
    target, classes, task = project.target, project.classes, project.task
    k, t = len(classes or ()), project.threshold  # t: a binary answer's threshold
    valid_y, valid_out = metrics.scores(model, _chunks(valid)(), target, classes)
    sel = model.selection
    calibrated = calibration.decide(
        task, sel.oof if sel else None, sel.oof_y if sel else None, valid_y, valid_out
    )
    if calibrated.get("kept"):  # part of the spec: both forms, and every score below, apply it
        model.spec["calibration"] = calibrated["params"]
        valid_out = outputs.calibrate(calibrated["params"], valid_out)
    feedback_y, feedback_out = metrics.scores(model, _chunks(labelled)(), target, classes)
    y, out = np.concatenate([valid_y, feedback_y]), np.concatenate([valid_out, feedback_out])
    onnx, serving = _fast_form(
        model,
        _chunks(_parity_rows(valid if valid.num_rows else train.slice(0, 1000), seed)),
        is_served=not (refit and valid.num_rows),
    )
    served = (
        OnnxModel(onnx, model.spec, model.algorithm, model.derive, linear=serving.get("linear"))
        if onnx
        else model
    )
    evaluated = _evaluation(served, project, valid, valid_y, valid_out, seed, model)
    train_y = outputs.labels(project, train.column(target).to_pylist())
    result: dict[str, Any] = {
        "artifact": artifacts.to_bytes(model),
        "onnx": onnx,
        "serving": serving,
        "algorithm": model.algorithm,
        "features": list(model.feature_names),
        "cv_scores": model.cv_scores,
        "cv_metric": project.primary_metric,
        "selection": _selection(model),
        "metrics": metrics.metrics(task, y, out, k, t),
        "validation": metrics.metrics(task, valid_y, valid_out, k, t),
        "rows_scored": len(y),
        "baseline": metrics.baseline(task, train_y, valid_y, k),
        "extra_baselines": _extra_baselines(project, valid),
        "champion_metrics": None,
        "paired": None,
        "evaluation": evaluated,
        "calibration": calibrated,
        "warnings": leakage.check(project, train, valid),
        "fitted_on": {"splits": ["TRAIN"], "rows": train.num_rows},
        "measured_artifact": None,
    }
    if champion is not None and champion_sha256 is not None:
        try:
            previous = artifacts.from_bytes(champion, champion_sha256, derive)
            old = np.concatenate(
                [
                    metrics.scores(previous, _chunks(t)(), target, classes)[1]
                    for t in (valid, labelled)
                ]
            )
        except (KeyError, DerivedFeatureError) as exc:
            # a derived feature the champion needs is gone from the project:
            # it cannot be scored (nor served) with this project's code
            result["champion_unscorable"] = (
                f"the champion needs derived feature {exc} that the project no longer declares"
                if isinstance(exc, KeyError)
                else str(exc)
            )
            logger.warning("train_model: %s; judged without it", result["champion_unscorable"])
        else:
            if compare is not None:  # the rows neither fit learned from
                if len(compare) != len(y):
                    raise ValueError(f"compare has {len(compare)} rows, not {len(y)}")
                y, old, out = y[compare], old[compare], out[compare]
                result["compared_metrics"] = metrics.metrics(task, y, out, k, t)
            # the champion answers at its own threshold, as it serves
            t_old = previous.spec.get("threshold", 0.5)
            result["champion_metrics"] = metrics.metrics(task, y, old, k, t_old)
            result["paired"] = paired_test(task, y, old, out, t, t_old)
    served_fit = model
    if refit and valid.num_rows:
        served_fit = _refit(result, model, train, valid, project, seed)
    if test is not None and test.num_rows:
        test_y, test_out = metrics.scores(served_fit, _chunks(test)(), target, classes)
        result["test"] = metrics.metrics(task, test_y, test_out, k, t)
    return result


def _refit(
    result: dict[str, Any],
    model: TrainedModel,
    train: pa.Table,
    valid: pa.Table,
    project: Project,
    seed: int,
) -> TrainedModel:
    """Serve the chosen candidate fitted on TRAIN and VALIDATION (measured:
    better on TEST on 5 of 6 benchmark data sets, and a time split's model
    reaches the newest rows); keep the TRAIN-only fit, which the next gate
    scores (by time, only when the served fit learned from too many of its
    rows). Returns the refitted model."""
    from minimlops.ml import training

    both = pa.concat_tables([train, valid.select(train.column_names).cast(train.schema)])
    logger.info(
        "train_model: refitting %s on %s TRAIN and VALIDATION rows",
        model.algorithm,
        f"{both.num_rows:,}",
    )
    final = training.refit(model, _chunks(both), project, seed=seed)
    onnx, serving = _fast_form(final, _chunks(_parity_rows(valid, seed)))
    result.update(
        artifact=artifacts.to_bytes(final),
        onnx=onnx,
        serving=serving,
        features=list(final.feature_names),
        fitted_on={"splits": ["TRAIN", "VALIDATION"], "rows": both.num_rows},
        measured_artifact=result["artifact"],
    )
    return final


def _evaluation(
    served: Any,
    project: Project,
    valid: pa.Table,
    y: np.ndarray,
    out: np.ndarray,
    seed: int,
    model: TrainedModel | None = None,
) -> dict[str, Any]:
    """Plots' numbers, intervals and permutation importance on VALIDATION
    (importance through ``served``, the form that serves: equal to 1e-5 and
    several times faster on trees); with ``model`` (the native estimator the
    served form was converted from), mean |attribution| per input column on
    the same rows: how much each moves the raw output, beside how much the
    metric needs it."""
    from minimlops.ml import evaluation

    result = evaluation.evaluate(
        project.task, y, out, project.classes, seed=seed, threshold=project.threshold
    )
    if not len(y):
        return result
    k, metric, direction = (
        len(project.classes or ()),
        project.primary_metric,
        project.metric_direction,
    )
    if valid.num_rows > evaluation.IMPORTANCE_ROWS:
        valid = valid.take(
            np.sort(
                np.random.default_rng(seed).choice(
                    valid.num_rows, evaluation.IMPORTANCE_ROWS, replace=False
                )
            )
        )
    rows = valid.to_pylist()
    labels = outputs.labels(project, [r[project.target] for r in rows])

    def score(o: np.ndarray) -> float:  # every primary metric is among the quick ones
        return evaluation.quick_metrics(
            project.task, labels, o, k, threshold=project.threshold
        ).get(metric, float("nan"))

    # the columns the model reads: its features' own and its derived features' inputs
    used = set(project.features) | {c for d in project.derived for c in d.inputs}
    columns = [c for c in project.input_columns if c != project.key and c in used]
    result["importance"] = {
        "metric": metric,
        "direction": direction,
        "rows": len(rows),
        "columns": evaluation.permutation_importance(
            served.output, rows, columns, score, direction, seed
        ),
    }
    if model is not None:
        # mean |attribution| per input column in the raw output's space
        # (multiclass: each row's predicted class), on 200 rows drawn at random:
        # a forest's TreeSHAP costs a row ~5 ms, an ensemble's its members' sum;
        # 200 settle the mean
        from minimlops.ml import attributions

        rng = np.random.default_rng(seed)
        some = [rows[i] for i in np.sort(rng.permutation(len(rows))[:200])]
        try:
            found = attributions.Attributor(model).explain(some)
        except Exception as exc:  # a display: never the reason a training fails
            logger.warning("train_model: no attributions for %s: %s", model.algorithm, exc)
            result["attributions"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        else:
            result["attributions"] = {
                "space": found.space,
                "method": found.method,
                "calibrated": bool(model.spec.get("calibration")),
                "rows": len(some),
                "columns": attributions.mean_abs(found),
            }
    return result


def _selection(model: TrainedModel) -> dict[str, Any]:
    """What selection compared and decided, for the version's metadata."""
    sel = model.selection
    if sel is None:
        return {}
    return {
        "metric": sel.metric,
        "direction": sel.direction,
        "chosen": sel.name,
        "settings": sel.describe(),
        "rounds": None if sel.ensemble else sel.rounds,
        "ensemble": [
            {"name": c.name, "weight": round(w, 4), "settings": c.describe(), "rounds": r}
            for c, r, w in sel.ensemble
        ],
        "folds": sel.folds,
        "repeats": sel.repeats,
        "folds_by": sel.folds_by,
        "budget_s": sel.budget_s,
        "budget_from": sel.budget_from,
        "seconds": sel.seconds,
        "rows": sel.rows,
        "class_weight": sel.class_weight,
        "simpler_than": sel.simpler_than,
        "leaderboard": sel.leaderboard,
    }


def paired_test(
    task: str,
    y: np.ndarray,
    old: np.ndarray,
    new: np.ndarray,
    threshold: float = 0.5,
    old_threshold: float | None = None,
) -> dict[str, Any]:
    """The gate's paired test of two models on the same rows: McNemar's exact
    test on correctness (classification: of each one's answers, at
    ``threshold`` and the champion's ``old_threshold``), the Wilcoxon
    signed-rank test on absolute errors (regression)."""
    from minimlops.ml.outputs import predicted

    if task != "regression":
        before = threshold if old_threshold is None else old_threshold
        return mcnemar(
            (predicted(task, old, before) == y).tolist(),
            (predicted(task, new, threshold) == y).tolist(),
        )
    from scipy.stats import wilcoxon

    a, b = np.abs(old - y), np.abs(new - y)
    better, worse = int(np.sum(b < a)), int(np.sum(b > a))
    p = 1.0 if better + worse == 0 else float(wilcoxon(a, b, zero_method="wilcox").pvalue)
    return {"test": "wilcoxon", "challenger_closer": better, "champion_closer": worse, "p_value": p}


def _extra_baselines(project: Project, valid: pa.Table) -> dict[str, float]:
    """The example's own baselines (Titanic: women survive, men do not)."""

    if project.extras.get("gender_baseline") and valid.num_rows:
        return {"gender_only_accuracy": metrics.gender_baseline(valid)}
    return {}


def _parity_rows(table: pa.Table, seed: int) -> pa.Table:
    """The rows the fast form is checked on: all, or ``PARITY_ROWS`` drawn at
    random: a converter's difference (float32 thresholds, a missing branch)
    shows on thousands of rows; all 150,000 VALIDATION rows of a
    1,000,000-row table cost ~8 s of its training, twice (fit and refit)."""
    if table.num_rows <= PARITY_ROWS:
        return table
    at = np.random.default_rng(seed).choice(table.num_rows, PARITY_ROWS, replace=False)
    return table.take(np.sort(at))


def _fast_form(
    model: TrainedModel,
    chunks: Callable[[], Iterator[list[dict[str, Any]]]],
    *,
    is_served: bool = True,
) -> tuple[bytes | None, dict[str, Any]]:
    """The ONNX form, if it reproduces the model's probabilities on the rows.
    ``is_served``: whether this fit is the one served (else it is the TRAIN-only
    fit that VALIDATION measures before the refit, and a log line says so)."""
    fallback = (
        "serving scikit-learn"
        if is_served
        else "the TRAIN-only fit is measured with scikit-learn (the refit is served)"
    )
    checked, diff = 0, 0.0
    try:
        blob = export.to_onnx(model)
        served = OnnxModel(blob, model.spec, model.algorithm, model.derive)
        for rows in chunks():
            diff, checked = max(diff, export.parity(model, served, rows)), checked + len(rows)
            if rows and checked == len(rows):  # one row and a few run other ways (OnnxModel.output)
                for few in ([rows[0]], rows[:7]):
                    diff = max(diff, export.parity(model, served, few))
    except Exception as exc:  # a converter gap must not stop training
        logger.warning("train_model: no fast path for %s: %s; %s", model.algorithm, exc, fallback)
        return None, {"runtime": "scikit-learn", "reason": f"conversion failed: {exc}"}
    if diff > export.TOLERANCE:
        logger.warning(
            "train_model: ONNX differs by %.2e > %.0e; %s", diff, export.TOLERANCE, fallback
        )
        return None, {"runtime": "scikit-learn", "max_abs_diff": diff, "checked_rows": checked}
    serving = {
        "runtime": "onnxruntime",
        "max_abs_diff": diff,
        "checked_rows": checked,
        "spec": model.spec,
    }
    if (linear := _linear_form(model, chunks)) is not None:
        serving["linear"] = linear
    return blob, serving


def _linear_form(
    model: TrainedModel, chunks: Callable[[], Iterator[list[dict[str, Any]]]]
) -> dict[str, Any] | None:
    """A linear model's weights for one-row serving (``export.linear_form``), if
    they reproduce its output on the rows (before calibration, which both
    forms apply the same way)."""
    linear = export.linear_form(model)
    if linear is None:
        return None
    diff = 0.0
    for rows in chunks():
        if not rows:
            continue
        X = model.features.matrix(rows)
        ours = outputs.linear_output(model.task, linear, X)
        theirs = (
            np.asarray(model.estimator.predict(X), dtype=np.float64)
            if model.task == "regression"
            else np.asarray(model.estimator.predict_proba(X), dtype=np.float64)[:, 1]
        )
        diff = max(diff, outputs.difference(model.task, theirs, ours))
    if diff > export.TOLERANCE:  # never seen: the fold is exact to a few ulps
        logger.warning(
            "train_model: the linear form differs by %.2e; one row goes through ONNX", diff
        )
        return None
    return {**linear, "max_abs_diff": diff}
