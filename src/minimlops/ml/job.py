"""The compute of one training run, as one pure function: tables in, bytes and
numbers out. It may run in another process (see ``adapters.process_pool``), so
its arguments and result are plain data.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from minimlops.domain.policy import mcnemar
from minimlops.ml import artifacts, fast

if TYPE_CHECKING:
    from minimlops.ml import training

logger = logging.getLogger("minimlops.train")
CHUNK_ROWS = 50_000  # TRAIN rows held as Python dicts at once


def _log_progress(step: str, done: int, total: int) -> None:
    logger.info("train_model: %s (%d/%d)", step, done + 1, total)


def fit_and_score(
    train: pa.Table, valid: pa.Table, labelled: pa.Table, *, folds: int, seed: int,
    champion: bytes | None = None, champion_sha256: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Select and fit a model on TRAIN rows; score it (and the champion, on the
    same rows: VALIDATION plus labelled predictions); convert it for serving.

    Returns:
        ``artifact`` (skops bytes), ``onnx`` (bytes or None), ``serving``,
        ``algorithm``, ``features``, ``cv_log_loss``, ``metrics`` (on the
        scored rows), ``validation`` (on VALIDATION), ``gender_baseline``, ``champion_metrics`` and
        ``paired`` (None without a champion), ``rows_scored``.
    """
    from minimlops.ml import training  # scikit-learn: only where training runs

    def train_rows() -> Iterator[list[dict[str, Any]]]:  # as dicts a chunk at a time
        for batch in train.to_batches(max_chunksize=CHUNK_ROWS):
            yield batch.to_pylist()

    valid_rows = valid.to_pylist()
    scored = valid_rows + labelled.to_pylist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        model = training.select_and_fit(train_rows, folds=folds, seed=seed, progress=_log_progress)
    metrics = training.evaluate(model, scored)
    onnx, serving = _fast_form(model, valid_rows or train.slice(0, 1000).to_pylist())
    out: dict[str, Any] = {
        "artifact": artifacts.to_bytes(model), "onnx": onnx, "serving": serving,
        "algorithm": model.algorithm, "features": list(model.feature_names),
        "cv_log_loss": model.cv_scores, "metrics": metrics,
        "validation": training.evaluate(model, valid_rows), "rows_scored": len(scored),
        "gender_baseline": training.gender_baseline(valid_rows),
        "champion_metrics": None, "paired": None,
    }  # fmt: skip
    if champion is not None and champion_sha256 is not None:
        previous = artifacts.from_bytes(champion, champion_sha256)
        out["champion_metrics"] = training.evaluate(previous, scored)
        out["paired"] = mcnemar(training.correct(previous, scored), training.correct(model, scored))
    return out


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
