"""The compute of one training run, as one pure function: tables in, bytes and
numbers out. It may run in another process (see ``adapters.process_pool``), so
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
from minimlops.ml import artifacts, fast

if TYPE_CHECKING:
    from minimlops.ml import training

logger = logging.getLogger("minimlops.train")
CHUNK_ROWS = 50_000  # rows held as Python dicts at once


def _log_progress(step: str, done: int, total: int) -> None:
    logger.info("train_model: %s (%d/%d)", step, done + 1, total)


def _chunks(table: pa.Table) -> Callable[[], Iterator[list[dict[str, Any]]]]:
    """A table's rows as dicts, a chunk at a time, each time it is called."""

    def read() -> Iterator[list[dict[str, Any]]]:
        for batch in table.to_batches(max_chunksize=CHUNK_ROWS):
            yield batch.to_pylist()

    return read


def fit_and_score(
    train: pa.Table, valid: pa.Table, labelled: pa.Table, *, folds: int, seed: int,
    champion: bytes | None = None, champion_sha256: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Select and fit a model on TRAIN rows; score it (and the champion, on the
    same rows: VALIDATION plus labelled predictions); convert it for serving.

    Rows are turned into dicts a chunk at a time, for fitting and scoring
    alike: memory grows with the tables given (the caller bounds them), not
    with their Python form.

    Returns:
        ``artifact`` (skops bytes), ``onnx`` (bytes or None), ``serving``,
        ``algorithm``, ``features``, ``cv_log_loss``, ``metrics`` (on the
        scored rows), ``validation`` (on VALIDATION), ``gender_baseline``, ``champion_metrics`` and
        ``paired`` (None without a champion), ``rows_scored``.
    """
    from minimlops.ml import training  # scikit-learn: only where training runs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        model = training.select_and_fit(_chunks(train), folds=folds, seed=seed,
                                        progress=_log_progress)  # fmt: skip
    valid_y, valid_p = training.scores(model, _chunks(valid)())
    feedback_y, feedback_p = training.scores(model, _chunks(labelled)())
    y, p = np.concatenate([valid_y, feedback_y]), np.concatenate([valid_p, feedback_p])
    onnx, serving = _fast_form(model, _chunks(valid if valid.num_rows else train.slice(0, 1000)))
    out: dict[str, Any] = {
        "artifact": artifacts.to_bytes(model), "onnx": onnx, "serving": serving,
        "algorithm": model.algorithm, "features": list(model.feature_names),
        "cv_log_loss": model.cv_scores, "metrics": training.metrics(y, p),
        "validation": training.metrics(valid_y, valid_p), "rows_scored": len(y),
        "gender_baseline": training.gender_baseline(valid),
        "champion_metrics": None, "paired": None,
    }  # fmt: skip
    if champion is not None and champion_sha256 is not None:
        previous = artifacts.from_bytes(champion, champion_sha256)
        p_old = np.concatenate([training.scores(previous, _chunks(t)())[1] for t in (valid, labelled)])
        out["champion_metrics"] = training.metrics(y, p_old)
        out["paired"] = mcnemar(((p_old >= 0.5) == (y == 1)).tolist(), ((p >= 0.5) == (y == 1)).tolist())
    return out


def _fast_form(model: training.TrainedModel, chunks: Callable[[], Iterator[list[dict[str, Any]]]],
               ) -> tuple[bytes | None, dict[str, Any]]:  # fmt: skip
    """The ONNX form, if it reproduces the model's probabilities on the rows."""
    checked, diff = 0, 0.0
    try:
        blob = fast.to_onnx(model)
        served = fast.OnnxModel(blob, model.spec, model.algorithm)
        for rows in chunks():
            diff, checked = max(diff, fast.parity(model, served, rows)), checked + len(rows)
    except Exception as exc:  # a converter gap must not stop training
        logger.warning("train_model: no fast path for %s: %s", model.algorithm, exc)
        return None, {"runtime": "scikit-learn", "reason": f"conversion failed: {exc}"}
    if diff > fast.TOLERANCE:
        logger.warning("train_model: ONNX differs by %.2e > %.0e; serving scikit-learn",
                       diff, fast.TOLERANCE)  # fmt: skip
        return None, {"runtime": "scikit-learn", "max_abs_diff": diff, "checked_rows": checked}
    return blob, {"runtime": "onnxruntime", "max_abs_diff": diff, "checked_rows": checked,
                  "spec": model.spec}  # fmt: skip
