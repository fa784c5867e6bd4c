"""Pure decisions of the pipeline: whether a challenger becomes champion."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

PRIMARY_METRIC = "accuracy"
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide_promotion(
    challenger: Mapping[str, float], champion: Mapping[str, float] | None,
    *, tolerance: float = 0.0,
) -> Decision:  # fmt: skip
    """Promote the challenger unless it is worse than the champion by more than
    ``tolerance`` on the primary metric, both scored on the same rows.

    Args:
        challenger: the challenger's metrics on the evaluation rows.
        champion: the champion's metrics on the SAME rows, or None if there is
            no champion yet.
        tolerance: how much worse (absolute) the challenger may be.
    """
    new = challenger.get(PRIMARY_METRIC)
    rows = int(challenger.get("rows", 0))
    if new is None or rows < MIN_EVAL_ROWS:
        return Decision(False, f"only {rows} evaluation rows (need {MIN_EVAL_ROWS})",
                        challenger=new, tolerance=tolerance)  # fmt: skip
    if champion is None or champion.get(PRIMARY_METRIC) is None:
        return Decision(True, "first model: no champion yet", challenger=new,
                        tolerance=tolerance)  # fmt: skip
    old = float(champion[PRIMARY_METRIC])
    if new >= old - tolerance:
        verdict = "better than" if new > old else "not worse than"
        return Decision(True, f"{PRIMARY_METRIC} {new:.4f} is {verdict} champion's "
                        f"{old:.4f} (tolerance {tolerance})", challenger=new,
                        champion=old, tolerance=tolerance)  # fmt: skip
    return Decision(False, f"{PRIMARY_METRIC} {new:.4f} is worse than champion's "
                    f"{old:.4f} by more than {tolerance}", challenger=new,
                    champion=old, tolerance=tolerance)  # fmt: skip
