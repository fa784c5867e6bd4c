"""train_model: newest training rows -> model selection -> evaluation -> gate.

Safe to run twice on the same event: the version records the snapshot of data
it was trained on (the ingestion ids), and an event whose snapshot already has
a version only finishes what that version's run left undone.
"""

from __future__ import annotations

import hashlib
import logging
import platform
from typing import Any

import numpy as np
import pyarrow.compute as pc
import sklearn
import skops

from minimlops.domain.events import Event, IngestionComplete, ModelPromoted, RetrainRequested
from minimlops.domain.policy import decide_promotion, mcnemar, sanity_checks
from minimlops.domain.schema import DATA_COLUMNS
from minimlops.errors import ArtifactIntegrityError, ModelNotFoundError
from minimlops.ml import fast, features, training
from minimlops.services.deps import Deps
from minimlops.services.registry import ModelRegistry

logger = logging.getLogger(__name__)


def registry_of(deps: Deps) -> ModelRegistry:
    """The model registry the handlers and the server share."""
    return ModelRegistry(deps.store, deps.names.model_bucket, deps.names.model_name)


def train_model(event: IngestionComplete | RetrainRequested, *, deps: Deps) -> list[Event]:
    """Train, evaluate and store a version; promote it if the gate allows."""
    registry = registry_of(deps)
    table = deps.warehouse.latest_rows(deps.names.training_table)
    if table.num_rows == 0:
        logger.warning("train_model: %s is empty; nothing to train on",
                       deps.names.training_table)  # fmt: skip
        return []
    ids = sorted(pc.unique(table.column("ingestion_id")).to_pylist())
    snapshot = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
    forced = isinstance(event, RetrainRequested) and event.force
    versions = registry.versions()
    same_trigger = [m for m in versions if (m.get("trigger") or {}).get("event_id") == event.event_id]
    done = same_trigger or [m for m in versions if m["training"]["snapshot"] == snapshot]
    if done and (same_trigger or not forced):
        logger.info("train_model: %s already handled by version %s", event.type,
                    done[-1]["version"])  # fmt: skip
        return _finish(registry, done[-1], deps)
    rows = table.select([*DATA_COLUMNS, "split"]).to_pylist()
    by_split: dict[str, list[dict[str, Any]]] = {"TRAIN": [], "VALIDATION": [], "TEST": []}
    for row in rows:
        by_split[row["split"]].append(row)
    train, valid = by_split["TRAIN"], by_split["VALIDATION"]
    logger.info("train_model: %s rows (%s TRAIN, %s VALIDATION, %s TEST)",
                f"{len(rows):,}", f"{len(train):,}", f"{len(valid):,}",
                f"{len(by_split['TEST']):,}")  # fmt: skip
    model = training.select_and_fit(train, folds=deps.cv_folds, seed=deps.seed,
                                    progress=deps.progress)  # fmt: skip
    labelled = _feedback_rows(deps)
    scored = valid + labelled  # champion and challenger are scored on these same rows
    metrics = training.evaluate(model, scored)
    onnx_bytes, serving = _fast_form(model, valid or train[:1000])
    champ_meta, champ_metrics, paired = _champion_on(registry, model, scored)
    missing = [f for f in features.FEATURE_NAMES if f not in model.feature_names]
    checks = sanity_checks(metrics, champ_metrics, missing)
    decision = decide_promotion(metrics, champ_metrics, tolerance=deps.promotion_tolerance,
                                failed_checks=checks, paired=paired)  # fmt: skip
    meta = registry.save(model, {
        "algorithm": model.algorithm, "created_at": deps.now().isoformat(),
        "trigger": _trigger(event), "features": list(model.feature_names),
        "training": {"snapshot": snapshot, "ingestion_ids": ids, "rows": len(rows),
                     **{f"{k.lower()}_rows": len(v) for k, v in by_split.items()}},
        "metrics": {"validation": training.evaluate(model, valid), "evaluation": metrics,
                    "evaluation_rows": {"validation": len(valid), "feedback": len(labelled)},
                    "cv_log_loss": model.cv_scores},
        "baseline": {"gender_only_accuracy": training.gender_baseline(valid)},
        "champion_compared": {"version": champ_meta and champ_meta["version"],
                              "evaluation": champ_metrics},
        "decision": decision.to_dict(), "libraries": _libraries(), "serving": serving,
    }, onnx_bytes)  # fmt: skip
    metrics = meta["metrics"]["validation"]
    logger.info("train_model: version %s (%s): accuracy %.3f, ROC AUC %.3f on "
                "VALIDATION; gender-only baseline %.3f; %s: %s", meta["version"],
                model.algorithm, metrics.get("accuracy", float("nan")),
                metrics.get("roc_auc", float("nan")),
                meta["baseline"]["gender_only_accuracy"],
                "PROMOTED" if decision.promote else "KEPT champion", decision.reason)  # fmt: skip
    return _finish(registry, meta, deps)


def _fast_form(model: training.TrainedModel,
               rows: list[dict[str, Any]]) -> tuple[bytes | None, dict[str, Any]]:  # fmt: skip
    """The ONNX form, if it reproduces the model's probabilities on rows."""
    try:
        blob = fast.to_onnx(model)
        diff = fast.parity(model, fast.OnnxModel(blob, model.spec, model.algorithm), rows)
    except Exception as exc:  # a converter gap must not stop training
        logger.warning("train_model: no fast path for %s: %s", model.algorithm, exc)
        return None, {"runtime": "scikit-learn", "reason": f"conversion failed: {exc}"}
    if diff > fast.TOLERANCE:
        logger.warning("train_model: ONNX differs by %.2e > %.0e; serving scikit-learn",
                       diff, fast.TOLERANCE)  # fmt: skip
        return None, {"runtime": "scikit-learn", "max_abs_diff": diff, "checked_rows": len(rows)}
    return blob, {"runtime": "onnxruntime", "max_abs_diff": diff, "checked_rows": len(rows),
                  "spec": model.spec}  # fmt: skip


def _finish(registry: ModelRegistry, meta: dict[str, Any], deps: Deps) -> list[Event]:
    """Promote a version whose decision says so, unless it was champion already
    (a rollback since then must stand)."""
    if not meta["decision"]["promote"]:
        return []
    pointer, _ = registry.champion()
    if pointer and any(h["version"] == meta["version"] for h in pointer.get("history", [])):
        return []
    new = registry.set_champion(meta["version"], reason=meta["decision"]["reason"],
                                at=deps.now().isoformat())  # fmt: skip
    return [ModelPromoted(model=registry.name, version=meta["version"],
                          previous=new["previous"], reason=new["reason"])]  # fmt: skip


def _champion_on(
    registry: ModelRegistry, challenger: training.TrainedModel, rows: list[dict[str, Any]]
) -> tuple[dict[str, Any] | None, dict[str, float] | None, dict[str, Any] | None]:
    """The champion's metrics on the challenger's evaluation rows, and the
    paired (McNemar) comparison of the two on those rows."""
    pointer, _ = registry.champion()
    if pointer is None:
        return None, None, None
    try:
        champion = registry.load(pointer["version"])
    except (ArtifactIntegrityError, ModelNotFoundError) as exc:
        logger.error("train_model: champion %s cannot be loaded (%s); comparing "
                     "against no champion", pointer["version"], exc)  # fmt: skip
        return None, None, None
    paired = mcnemar(training.correct(champion, rows), training.correct(challenger, rows))
    return registry.metadata(pointer["version"]), training.evaluate(champion, rows), paired


def _feedback_rows(deps: Deps) -> list[dict[str, Any]]:
    """Labelled predictions as evaluation rows: the request's inputs, the true label."""
    n = deps.names
    table = deps.warehouse.labelled_predictions(n.predictions_table, n.feedback_table)
    if table.num_rows == 0:
        return []
    rows = table.select([c for c in DATA_COLUMNS if c != "Survived"] + ["label"]).to_pylist()
    for r in rows:
        r["Survived"] = r.pop("label")
    return rows


def _trigger(event: Event) -> dict[str, Any]:
    if isinstance(event, IngestionComplete):
        return {"type": event.type, "reason": "new data ingested", "event_id": event.event_id,
                "ingestion_id": event.ingestion_id, "source_uri": event.source_uri}  # fmt: skip
    reason = event.reason if isinstance(event, RetrainRequested) else event.type
    return {"type": event.type, "reason": reason, "event_id": event.event_id}


def _libraries() -> dict[str, str]:
    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
            "skops": skops.__version__, "numpy": np.__version__}  # fmt: skip
