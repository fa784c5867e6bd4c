"""Pure decisions of the pipeline: whether a challenger becomes champion."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

PRIMARY_METRIC = "accuracy"  # the Titanic example's; a project names its own
MIN_EVAL_ROWS = 20


@dataclass(frozen=True)
class Decision:
    """Promote or keep, with the reason and the numbers it rests on."""

    promote: bool
    reason: str
    metric: str = PRIMARY_METRIC
    challenger: float | None = None
    champion: float | None = None
    tolerance: float = 0.0
    failed_checks: tuple[str, ...] = ()
    paired: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MAX_BRIER_LOSS = 0.05  # calibration "not broken": Brier score at most this much worse
MAX_ECE = 0.15  # and expected calibration error at most this
MIN_CALIBRATION_ROWS = 100


def sanity_checks(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
) -> tuple[str, ...]:
    """Reasons a challenger must not serve whatever its accuracy. (Features
    that differ from the champion's are none: both are scored on the same
    rows, each building its own features from them.)"""
    failed = []
    # ECE is noise on a few dozen rows: judge calibration on 100 rows or more.
    if challenger.get("rows", 0) >= MIN_CALIBRATION_ROWS and challenger.get("ece", 0.0) > MAX_ECE:
        failed.append(f"calibration broken: ECE {challenger['ece']:.3f} > {MAX_ECE}")
    if champion and challenger.get("brier", 0) > champion.get("brier", 1) + MAX_BRIER_LOSS:
        failed.append(
            f"calibration broken: Brier {challenger['brier']:.3f} vs champion "
            f"{champion['brier']:.3f}"
        )
    return tuple(failed)


CHANCE_P = 0.05  # a paired test's p-value from which a promotion's gain is said to be chance


def mcnemar(champion_right: list[bool], challenger_right: list[bool]) -> dict[str, Any]:
    """Exact McNemar test on paired correctness (same rows, two models)."""
    b = sum(1 for x, y in zip(champion_right, challenger_right, strict=True) if x and not y)
    c = sum(1 for x, y in zip(champion_right, challenger_right, strict=True) if y and not x)
    n, k = b + c, min(b, c)
    p = min(1.0, 2 * _half_binomial_cdf(k, n)) if n else 1.0
    return {"test": "mcnemar", "champion_only_right": b, "challenger_only_right": c, "p_value": p}


def _half_binomial_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), summed in log space: O(k) float
    steps. (Summing exact binomial coefficients took 4 minutes at n = 50,000.)"""
    log_term = -n * math.log(2)  # log P(X = 0)
    logs = [log_term]
    for i in range(k):
        log_term += math.log((n - i) / (i + 1))
        logs.append(log_term)
    top = max(logs)
    return math.exp(top) * math.fsum(math.exp(x - top) for x in logs)


def decide_promotion(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    tolerance: float = 0.0,
    failed_checks: tuple[str, ...] = (),
    paired: dict[str, Any] | None = None,
    metric: str = PRIMARY_METRIC,
    direction: str = "max",
) -> Decision:
    """Promote the challenger unless it is worse than the champion by more than
    ``tolerance`` on the primary metric, both scored on the same rows.

    Args:
        challenger: the challenger's metrics on the evaluation rows.
        champion: the champion's metrics on the SAME rows, or None if there is
            no champion yet.
        tolerance: how much worse (absolute) the challenger may be.
        metric: the project's primary metric.
        direction: "max" if higher is better (accuracy), "min" if lower is (log loss, RMSE).
    """
    new = challenger.get(metric)
    rows = int(challenger.get("rows", 0))
    common: dict[str, Any] = {"metric": metric, "tolerance": tolerance}
    if failed_checks:
        old = champion.get(metric) if champion else None
        versus = (
            f" ({metric} {new:.4f} vs champion's {old:.4f})"
            if (new is not None and old is not None)
            else ""
        )
        return Decision(
            False,
            "sanity checks failed: " + "; ".join(failed_checks) + versus,
            challenger=new,
            champion=old,
            failed_checks=failed_checks,
            paired=paired,
            **common,
        )
    first = champion is None or champion.get(metric) is None
    if new is None or rows < MIN_EVAL_ROWS:
        if (
            first
        ):  # a small first file: serving a model beats serving none; say how little judged it
            return Decision(
                True,
                f"first model: no champion yet; judged on only {rows:,} "
                f"evaluation rows (a challenger needs {MIN_EVAL_ROWS}): land more rows",
                challenger=new,
                **common,
            )
        return Decision(
            False, f"only {rows:,} evaluation rows (need {MIN_EVAL_ROWS})", challenger=new, **common
        )
    if first or champion is None:
        return Decision(True, "first model: no champion yet", challenger=new, **common)
    old = float(champion[metric])
    sign = 1.0 if direction == "max" else -1.0
    gain = sign * (new - old)  # > 0: the challenger is better
    if gain >= -tolerance:
        verdict = "better than" if gain > 0 else "not worse than"
        p = (paired or {}).get("p_value")
        chance = (  # promoted all the same: as good, and trained on newer rows
            f"; a difference within chance (paired {paired['test']} test, p = {p:.2g}): "
            "as good as the champion, and newer"
            if paired and p is not None and p >= CHANCE_P and gain > 0
            else ""
        )
        return Decision(
            True,
            f"{metric} {new:.4f} is {verdict} champion's "
            f"{old:.4f} on the same {rows:,} rows (tolerance {tolerance}){chance}",
            challenger=new,
            champion=old,
            paired=paired,
            **common,
        )
    return Decision(
        False,
        f"{metric} {new:.4f} is worse than champion's "
        f"{old:.4f} on the same {rows:,} rows by more than {tolerance}",
        challenger=new,
        champion=old,
        paired=paired,
        **common,
    )
