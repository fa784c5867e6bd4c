"""train_model: newest training rows -> model selection -> evaluation -> gate.

Safe to run twice on the same event: the version records the snapshot of data
it was trained on (the ingestion ids), and an event whose snapshot already has
a version only finishes what that version's run left undone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import platform
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from minimlops.domain import splits
from minimlops.domain.events import Event, IngestionComplete, ModelPromoted, RetrainRequested
from minimlops.domain.policy import MIN_EVAL_ROWS, decide_promotion, sanity_checks
from minimlops.domain.project import shape_changes
from minimlops.domain.schema import SPLITS
from minimlops.domain.splits import Split
from minimlops.errors import ArtifactIntegrityError, ModelNotFoundError
from minimlops.services import alerts
from minimlops.services.deps import ByName, Deps
from minimlops.services.registry import ModelRegistry

logger = logging.getLogger(__name__)
# scikit-learn and the rest: imported in the training process only
FIT_AND_SCORE = ByName("minimlops.ml.job", "fit_and_score")
# TEST rows the served model is scored on, at most (a sample by key): 150,000
# of a million-row table took ~3 s of a 30 s training; 20,000 give an accuracy
# within about +-0.007 (95 %)
TEST_ROWS = 20_000


def snapshot_of(ingestion_ids: list[str]) -> str:
    """The training rows a version learned from, named by the ingestions of the
    newest row per key."""
    return hashlib.sha256("\n".join(ingestion_ids).encode()).hexdigest()[:16]


def _trained_on(deps: Deps, versions: list[dict[str, Any]], snapshot: str) -> list[dict[str, Any]]:
    """Versions trained on these rows with the project's model as it is now."""
    shape = deps.project.model_shape()
    return [
        m
        for m in versions
        if m["training"]["snapshot"] == snapshot
        and not shape_changes(m.get("project") or {}, shape)
    ]


def trained_on_current_rows(deps: Deps, registry: ModelRegistry) -> str | None:
    """The newest version trained on the training rows as they are now (none
    landed since), or None: a training now would give it again."""
    summary = deps.warehouse.latest_summary(deps.names.training_table)
    if summary.rows == 0:
        return None
    done = _trained_on(deps, registry.versions(), snapshot_of(list(summary.ingestion_ids)))
    return str(done[-1]["version"]) if done else None


def _champion_version(registry: ModelRegistry) -> str | None:
    pointer, _ = registry.champion()
    return str(pointer["version"]) if pointer else None


def registry_of(deps: Deps) -> ModelRegistry:
    """The model registry the handlers and the server share."""
    return ModelRegistry(deps.store, deps.names.model_bucket, deps.names.model_name, deps.derive)


def train_model(event: IngestionComplete | RetrainRequested, *, deps: Deps) -> list[Event]:
    """Train, evaluate and store a version; promote it if the gate allows."""
    registry = registry_of(deps)
    table_name, cap = deps.names.training_table, deps.training_max_rows
    summary = deps.warehouse.latest_summary(table_name)
    if summary.rows == 0:
        logger.warning("train_model: %s is empty; nothing to train on", table_name)
        return []
    ids = list(summary.ingestion_ids)
    snapshot = snapshot_of(ids)
    asked = isinstance(event, RetrainRequested)  # a person, a schedule or a monitor trigger
    versions = registry.versions()
    same_trigger = [
        m for m in versions if (m.get("trigger") or {}).get("event_id") == event.event_id
    ]
    done = same_trigger or _trained_on(deps, versions, snapshot)
    if done and (same_trigger or not asked):
        logger.info(
            "train_model: %s already handled by version %s", event.type, done[-1]["version"]
        )
        return _finish(registry, done[-1], deps)
    if (
        isinstance(event, RetrainRequested)
        and event.trigger
        and done
        and done[-1]["version"] == _champion_version(registry)
    ):
        # the trigger judged an older champion (a file's training was running):
        # the champion has learned from the rows since, so a training would give it again
        logger.warning(
            "train_model: not retraining for %s (%s): version %s, the champion, was "
            "trained on the rows as they are since the trigger fired",
            event.trigger,
            event.reason,
            done[-1]["version"],
        )
        from minimlops.services.monitor import (  # (monitor imports this module)
            record_trigger,
            snapshot_id,
        )

        # recorded as the monitor records a trigger it does not act on: the pages
        # say it, and it fires no more on these rows
        record_trigger(
            deps,
            event,
            event.trigger,
            {"retrained": False, "version": done[-1]["version"], "snapshot": snapshot_id(deps)},
        )
        return []
    split = project_split(deps, table_name, ids)
    if not split.stored:  # counted as this project splits them
        summary = deps.warehouse.latest_summary(table_name, split, ingestion_ids=ids)
    # Memory stays bounded however big the table grows: at most ``cap`` rows
    # of TRAIN and of VALIDATION are read (a sample by key, the same on every
    # backend), and as many labelled predictions, the newest. TEST only scores
    # the model that serves, once it is fitted (what it does on rows nothing
    # learned from): a sample of ``TEST_ROWS`` settles that figure.
    read = deps.warehouse.latest_rows(
        table_name, ingestion_ids=ids, splits=SPLITS[:2], per_split=cap, split=split
    )
    columns = list(deps.project.column_names)
    parts = {
        name: read.filter(pc.equal(read.column("split"), name)).select(columns)
        for name in SPLITS[:2]
    }
    parts["TEST"] = deps.warehouse.latest_rows(
        table_name, ingestion_ids=ids, splits=SPLITS[2:], per_split=min(cap, TEST_ROWS), split=split
    ).select(columns)
    del read
    labelled, landed = _feedback_rows(deps, cap)
    if landed:
        # a labelled prediction whose row landed is that row: learned from
        # (TRAIN), scored already (VALIDATION: counted twice) or held back (TEST)
        logger.info(
            "train_model: %s of %s labelled predictions are left out: their rows landed "
            "(a row of TRAIN is learned from, of VALIDATION scored as one, of TEST held back)",
            f"{landed:,}",
            f"{labelled.num_rows + landed:,}",
        )
    if split.cutoffs is not None and split.spec.column:
        # by time, rows dated before VALIDATION's start are TRAIN's: a labelled
        # prediction of one may be a row the challenger learned from
        recent = _at_or_after(labelled, split.spec.column, split.cutoffs[0])
        if not recent.all():
            logger.info(
                "train_model: %s of %s labelled predictions are left out: dated before "
                "VALIDATION's start (%s), or not dated",
                f"{int((~recent).sum()):,}",
                f"{labelled.num_rows:,}",
                splits.iso(split.cutoffs[0]),
            )
            labelled = labelled.filter(pa.array(recent))
    counts = {name: summary.splits.get(name, 0) for name in SPLITS}
    if counts["VALIDATION"] == 0:
        logger.warning(
            "train_model: the split (%s) leaves no VALIDATION rows among the %s rows: "
            "the version's figures are only those of cross-validation. Land more rows, "
            "or change [split] in the project file",
            split.spec.describe(),
            f"{summary.rows:,}",
        )
    logger.info(
        "train_model: split %s: %s rows (%s TRAIN, %s VALIDATION, %s TEST)%s "
        "and %s labelled predictions",
        split.spec.describe(),
        f"{summary.rows:,}",
        f"{counts['TRAIN']:,}",
        f"{counts['VALIDATION']:,}",
        f"{counts['TEST']:,}",
        _sampled(parts, counts),
        f"{labelled.num_rows:,}",
    )
    project = deps.project
    champ_meta = _champion_meta(registry)
    # Under another split the champion's fit has seen rows this VALIDATION
    # holds: scored on them it would look better than it is.
    recorded = ((champ_meta or {}).get("project") or {}).get("split") or {"strategy": "random"}
    not_compared, gate = None, Gate("measured")
    if champ_meta and recorded != project.split.to_dict():
        not_compared = (
            f"the split changed since version {champ_meta['version']} (it was "
            f"{splits.describe(recorded)}; it is {project.split.describe()}): its fit saw "
            "rows this VALIDATION holds"
        )
    elif champ_meta:
        gate = _gate(champ_meta, split, parts["VALIDATION"], labelled)
        not_compared = gate.not_compared
    champ_blob = None
    if champ_meta and not not_compared:
        champ_meta, champ_blob = _champion_artifact(registry, champ_meta, gate.fit)
    result = deps.compute(
        FIT_AND_SCORE,
        parts["TRAIN"],
        parts["VALIDATION"],
        labelled,
        project,
        folds=deps.cv_folds,
        seed=deps.seed,
        champion=champ_blob,
        champion_sha256=champ_meta and champ_meta["sha256"],
        compare=gate.rows,
        test=parts["TEST"],
        budget_s=deps.training_budget_s,
        imbalance_threshold=deps.imbalance_threshold,
        refit=deps.refit,
        ensembles=deps.ensembles,
    )
    metrics, champ_metrics = result["metrics"], result["champion_metrics"]
    judged = result.get("compared_metrics") or metrics  # on the rows both were scored on
    checks = sanity_checks(judged, champ_metrics)
    decision = decide_promotion(
        judged,
        champ_metrics,
        tolerance=deps.promotion_tolerance,
        failed_checks=checks,
        paired=result["paired"],
        metric=project.primary_metric,
        direction=project.metric_direction,
    )
    labelled_rows = int(result["rows_scored"]) - int(result["validation"].get("rows", 0))
    if gate.said and champ_metrics is not None:
        decision = dataclasses.replace(decision, reason=f"{decision.reason} ({gate.said})")
    elif labelled_rows > 0 and not result.get("compared_metrics"):
        # the gate's rows are VALIDATION's and labelled predictions': its figures
        # are not the version's VALIDATION figure, and the reason says so
        decision = dataclasses.replace(
            decision,
            reason=f"{decision.reason} (VALIDATION's "
            f"{int(result['validation'].get('rows', 0)):,} and {labelled_rows:,} labelled "
            f"prediction{'s' if labelled_rows != 1 else ''})",
        )
    not_compared = not_compared or result.get("champion_unscorable")
    if not_compared:
        decision = dataclasses.replace(
            decision,
            reason=f"{not_compared}, so it was not compared; "
            + decision.reason.replace("first model: no champion yet", "judged on its own"),
        )
    meta = registry.save_artifacts(
        result["artifact"],
        {
            "algorithm": result["algorithm"],
            "created_at": deps.now().isoformat(),
            "trigger": _trigger(event),
            "features": result["features"],
            "training": {
                "snapshot": snapshot,
                "ingestion_ids": ids,
                "rows": summary.rows,
                **{f"{k.lower()}_rows": v for k, v in counts.items()},
                "fit_rows": result["fitted_on"]["rows"],
                "fitted_on": result["fitted_on"]["splits"],
                "measured_rows": parts["TRAIN"].num_rows,
                "max_rows_per_split": cap,
                "split": {**split.to_dict(), **_split_facts(split, parts)},
            },
            "metrics": {
                "validation": result["validation"],
                "evaluation": metrics,
                # the model that serves, on TEST: rows neither fit learned from
                "test": result.get("test"),
                "evaluation_rows": {
                    "validation": parts["VALIDATION"].num_rows,
                    "feedback": labelled.num_rows,
                    "test": parts["TEST"].num_rows,
                },
                f"cv_{result['cv_metric']}": result["cv_scores"],
            },
            "selection": result["selection"],
            "calibration": result["calibration"],
            "baseline": {"task": result["baseline"], **result["extra_baselines"]},
            "project": {
                "name": project.name,
                "task": project.task,
                "target": project.target,
                "key": project.key,
                "classes": list(project.classes or []) or None,
                "positive_class": project.positive_class,
                "primary_metric": project.primary_metric,
                **project.model_shape(),
                "fingerprint": project.fingerprint(),
            },
            "champion_compared": {
                "version": champ_meta and champ_meta["version"],
                "evaluation": champ_metrics,
                # which of its fits was scored; on part of the rows: the challenger's there
                **({"fit": gate.fit} if champ_metrics is not None else {}),
                **(
                    {"challenger": result["compared_metrics"], "rows": gate.said}
                    if result.get("compared_metrics")
                    else {}
                ),
                **({"not_compared": not_compared} if not_compared else {}),
            },
            "warnings": result["warnings"],
            "decision": decision.to_dict(),
            "libraries": _libraries(),
            "serving": result["serving"],
        },
        result["onnx"],
        evaluation=result["evaluation"],
        measured=result["measured_artifact"],
    )
    for warning in result["warnings"]:
        logger.warning("train_model: %s", warning["message"])
    metric, valid = project.primary_metric, meta["metrics"]["validation"]
    extra = "".join(
        f"; {k.replace('_', ' ')} {v:.3f}" for k, v in result["extra_baselines"].items()
    )
    if (test := result.get("test")) and test.get(metric) is not None:
        extra += f"; served fit, {metric} {test[metric]:.4f} on {int(test['rows']):,} TEST rows"
    logger.info(
        "train_model: version %s (%s): %s %.4f on VALIDATION (baseline %.4f)%s; %s: %s",
        meta["version"],
        result["algorithm"],
        metric,
        valid.get(metric, float("nan")),
        result["baseline"].get(metric, float("nan")),
        extra,
        "PROMOTED" if decision.promote else "KEPT champion",
        decision.reason,
    )
    events = _finish(registry, meta, deps)
    try:  # the version is stored and the champion set: an alert must not undo that
        return events + _outcome_alerts(deps, meta, events, result["algorithm"], event.type)
    except Exception:
        logger.exception("train_model: no alert for version %s", meta["version"])
        return events


def _outcome_alerts(
    deps: Deps, meta: dict[str, Any], events: list[Event], algorithm: str, trigger: str
) -> list[Event]:
    """training.finished, and model.promoted or model.kept (with the gate's
    reason): one alert each per version."""
    metric = deps.project.primary_metric
    version = meta["version"]
    figure = meta["metrics"]["validation"].get(metric)
    promoted = next((e for e in events if isinstance(e, ModelPromoted)), None)
    details = {
        "version": version,
        "algorithm": algorithm,
        "metric": metric,
        "validation": figure,
        "trigger": trigger,
        "decision": meta["decision"].get("reason"),
    }
    shown = f"{figure:.4f}" if isinstance(figure, float) else str(figure)
    found = alerts.raised(
        deps,
        "training.finished",
        f"version {version} ({algorithm}): {metric} {shown} on VALIDATION",
        details,
        key=f"{version}/{meta.get('sha256')}",
    )
    if promoted is not None:
        found += alerts.raised(
            deps,
            "model.promoted",
            f"version {version} ({algorithm}) serves: {meta['decision'].get('reason')}",
            {**details, "previous": promoted.previous},
            key=promoted.event_id,
        )
    else:
        reason = (
            meta["decision"].get("reason")
            if not meta["decision"]["promote"]
            # it passed the gate, but another version became champion while it
            # trained (or it was champion before): a person decides
            else "it passed the gate against a champion that no longer serves, or was "
            "champion before; promote it by hand after a look"
        )
        found += alerts.raised(
            deps,
            "model.kept",
            f"the champion stays; version {version} was not promoted: {reason}",
            {**details, "decision": reason},
            key=f"{version}/{meta.get('sha256')}",
        )
    return found


def _finish(registry: ModelRegistry, meta: dict[str, Any], deps: Deps) -> list[Event]:
    """Promote a version whose decision says so, unless it was champion already
    (a rollback since then must stand)."""
    if not meta["decision"]["promote"]:
        return []
    pointer, _ = registry.champion()
    if pointer and any(h["version"] == meta["version"] for h in pointer.get("history", [])):
        return []
    compared = (meta.get("champion_compared") or {}).get("version")
    if pointer and pointer["version"] != compared:
        # Another version became champion while this one trained: the decision
        # was made against a champion that no longer serves, so it does not stand.
        logger.warning(
            "train_model: version %s was compared with %s, but %s is champion now; "
            "not promoted (promote it by hand after a look)",
            meta["version"],
            compared or "no champion",
            pointer["version"],
        )
        return []
    new = registry.set_champion(
        meta["version"], reason=meta["decision"]["reason"], at=deps.now().isoformat()
    )
    return [
        ModelPromoted(
            model=registry.name,
            version=meta["version"],
            previous=new["previous"],
            reason=new["reason"],
        )
    ]


@dataclasses.dataclass(frozen=True)
class Gate:
    """How the champion is scored against the challenger: through which of its
    fits (``served``: the one that serves; ``measured``: its TRAIN-only fit),
    on which evaluation rows (``rows``: a mask over VALIDATION then the
    labelled predictions; None: all), said in words (``said``), or not at all
    (``not_compared``: why)."""

    fit: str
    rows: np.ndarray | None = None
    said: str | None = None
    not_compared: str | None = None


def _gate(champ_meta: dict[str, Any], split: Split, valid: pa.Table, labelled: pa.Table) -> Gate:
    """Score the champion on rows none of its fit learned from.

    Under a random, group or column split, VALIDATION rows stay VALIDATION, so
    the champion's TRAIN-only fit never saw them (decision 0028). Under a time
    split the windows move with the data (decision 0032): the fit that serves
    learned from every row before its TEST cut-off, the TRAIN-only fit from
    every row before its VALIDATION cut-off. The gate scores the fit that
    serves (what the challenger must beat is what serves), on the evaluation
    rows dated at or after its cut-off, when those are at least half of them;
    else the TRAIN-only fit on the rows at or after its own cut-off; with
    fewer than ``MIN_EVAL_ROWS`` of those, not at all.
    """
    column, kind = split.spec.column, split.column_type
    if split.cutoffs is None or kind is None or not column:
        return Gate("measured")
    version, start = champ_meta["version"], split.cutoffs[0]
    facts = (champ_meta.get("training") or {}).get("split") or {}
    refitted = "VALIDATION" in ((champ_meta.get("training") or {}).get("fitted_on") or [])
    measured_from = facts.get("validation_from")
    if not measured_from:
        return Gate("measured")
    total = valid.num_rows + labelled.num_rows
    fits = [("served", facts.get("test_from")), ("measured", measured_from)]
    if not refitted:  # the fit that serves is the TRAIN-only fit
        fits = [("served", measured_from)]
    n = 0
    for fit, cut in fits:
        if not cut:
            continue
        since = splits.parse_time(cut, kind)
        if since <= start:
            return Gate(fit)  # every evaluation row is after what it learned from
        mask = np.concatenate(
            [_at_or_after(valid, column, since), _at_or_after(labelled, column, since)]
        )
        n = int(mask.sum())
        # the fit that serves, when its rows are half or more; else the TRAIN-only one
        enough = 2 * n >= total if fit == "served" and refitted else True
        if n >= MIN_EVAL_ROWS and enough:
            return Gate(
                fit,
                rows=mask,
                said=f"compared on the {n:,} evaluation rows dated from {cut} on: version "
                f"{version}'s {'served' if refitted and fit == 'served' else 'TRAIN-only'} "
                "fit learned from the rows before",
            )
    return Gate(
        "measured",
        not_compared=f"VALIDATION now starts at {splits.iso(start)}, before version "
        f"{version}'s ({measured_from}): its fit learned from rows in between, and only "
        f"{n} evaluation rows are dated after them (a comparison needs {MIN_EVAL_ROWS})",
    )


def _at_or_after(table: pa.Table, column: str, since: Any) -> np.ndarray:
    """Which rows have a time at or after ``since`` (none without one)."""
    if table.num_rows == 0 or column not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool)
    values = table.column(column)
    if pa.types.is_null(values.type):
        return np.zeros(table.num_rows, dtype=bool)
    found = pc.greater_equal(values, pa.scalar(since, values.type))
    return np.asarray(found.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _champion_meta(registry: ModelRegistry) -> dict[str, Any] | None:
    """The champion's metadata (read once: the gate and the fit it scores are
    of this version, whatever is promoted meanwhile)."""
    pointer, _ = registry.champion()
    if pointer is None:
        return None
    try:
        return registry.metadata(pointer["version"])
    except (ArtifactIntegrityError, ModelNotFoundError) as exc:
        logger.error(
            "train_model: champion %s cannot be read (%s); comparing against no champion",
            pointer["version"],
            exc,
        )
        return None


def _champion_artifact(
    registry: ModelRegistry, meta: dict[str, Any], fit: str
) -> tuple[dict[str, Any] | None, bytes | None]:
    """That version's metadata (its hash: of the fit scored) and skops bytes,
    of the fit that serves or of its TRAIN-only fit, to score it on the same rows."""
    version = meta["version"]
    try:
        if fit == "served":
            blob, digest = registry.artifact(version), meta["sha256"]
        else:
            blob, digest = registry.measured(version)
        return {**meta, "sha256": digest}, blob
    except (ArtifactIntegrityError, ModelNotFoundError) as exc:
        logger.error(
            "train_model: champion %s cannot be read (%s); comparing against no champion",
            version,
            exc,
        )
        return None, None


def project_split(deps: Deps, table: str, ids: list[str] | None = None) -> Split:
    """The project's split, resolved over the newest rows of these ingestions
    (a time split's cut-offs, when given as fractions, come from them)."""
    spec = deps.project.split
    column_type = deps.project.column(spec.column).type if spec.column else None
    return splits.resolve(
        spec,
        column_type,
        lambda column, marks: deps.warehouse.time_cutoffs(table, column, marks, ingestion_ids=ids),
    )


def _split_facts(split: Split, parts: dict[str, pa.Table]) -> dict[str, Any]:
    """What the evaluation page shows next to the figures: each split's date
    range (time) or number of groups (group), of the rows read."""
    column = split.spec.column
    if split.spec.strategy not in ("time", "group") or not column:
        return {}
    out: dict[str, Any] = {}
    for name, table in parts.items():
        if column not in table.column_names or table.num_rows == 0:
            continue
        values = table.column(column)
        if split.spec.strategy == "time":
            lo, hi = pc.min(values).as_py(), pc.max(values).as_py()
            out[name.lower()] = {
                "from": splits.iso(lo) if lo is not None else None,
                "to": splits.iso(hi) if hi is not None else None,
                "without_time": values.null_count,
            }
        else:
            out[name.lower()] = {
                "groups": len(pc.unique(values.drop_null())),
                "without_group": values.null_count,
            }
    return out


def _sampled(parts: dict[str, pa.Table], counts: dict[str, int]) -> str:
    """For the log: which splits were read as a sample, and how big."""
    cut = [
        f"{t.num_rows:,} of {counts[k]:,} {k}" for k, t in parts.items() if t.num_rows < counts[k]
    ]
    return f" (read as a sample: {', '.join(cut)})" if cut else ""


def _feedback_rows(deps: Deps, limit: int) -> tuple[pa.Table, int]:
    """The newest labelled predictions as evaluation rows (the request's
    inputs, the true label), but those whose key is a row of the training
    table; and how many those were."""
    n, target = deps.names, deps.project.target
    table = deps.warehouse.labelled_predictions(
        n.predictions_table, n.feedback_table, limit, landed_in=n.training_table
    )
    inputs = list(deps.project.input_columns)
    if table.num_rows == 0:
        return pa.table({c: pa.array([], pa.null()) for c in [*inputs, target]}), 0
    landed = pc.fill_null(table.column("landed"), False)
    kept = table.filter(pc.invert(landed))
    return (
        kept.select([*inputs, "label"]).rename_columns([*inputs, target]),
        table.num_rows - kept.num_rows,
    )


def _trigger(event: Event) -> dict[str, Any]:
    if isinstance(event, IngestionComplete):
        return {
            "type": event.type,
            "reason": "new data ingested",
            "event_id": event.event_id,
            "ingestion_id": event.ingestion_id,
            "source_uri": event.source_uri,
        }
    reason = event.reason if isinstance(event, RetrainRequested) else event.type
    return {"type": event.type, "reason": reason, "event_id": event.event_id}


def _libraries() -> dict[str, str]:
    from importlib.metadata import version

    return {
        "python": platform.python_version(),
        "scikit-learn": version("scikit-learn"),
        "skops": version("skops"),
        "numpy": np.__version__,
    }
