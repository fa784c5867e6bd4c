"""Serving statistics of a serving process: per-minute counts and latency percentiles.

Fixed log-spaced latency buckets per minute (the last 60 minutes), so that
recording costs a bisect and two increments, and percentiles are read from
the histogram. Also rendered as a Prometheus histogram at ``/metrics``.
"""

from __future__ import annotations

import bisect
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

BOUNDS_MS = (
    0.1,
    0.2,
    0.3,
    0.5,
    0.75,
    1,
    1.5,
    2,
    3,
    5,
    7.5,
    10,
    15,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    10000,
)
KEEP_MINUTES = 60


class ServingStats:
    """Requests, rows and latency histograms, per minute and in total."""

    def __init__(self) -> None:
        self.minutes: OrderedDict[int, list[int]] = OrderedDict()
        self.total = [0] * (len(BOUNDS_MS) + 1)
        self.rows = self.requests = self.errors = 0
        self.seconds = 0.0

    def record(self, seconds: float, rows: int, ok: bool) -> None:
        """One answered /predict request."""
        minute = int(time.time() // 60)
        buckets = self.minutes.get(minute)
        if buckets is None:
            buckets = self.minutes[minute] = [0] * (len(BOUNDS_MS) + 2)
            while len(self.minutes) > KEEP_MINUTES:
                self.minutes.popitem(last=False)
        i = bisect.bisect_left(BOUNDS_MS, seconds * 1000)
        buckets[i] += 1
        buckets[-1] += rows
        self.total[i] += 1
        self.requests += 1
        self.rows += rows
        self.seconds += seconds
        self.errors += 0 if ok else 1

    def snapshot(self) -> dict[str, Any]:
        """Everything recorded, as plain data (sent by each serving process)."""
        return {
            "minutes": [[m, list(b)] for m, b in self.minutes.items()],
            "total": list(self.total),
            "rows": self.rows,
            "requests": self.requests,
            "errors": self.errors,
            "seconds": self.seconds,
        }

    def merged(self, snapshots: Iterable[dict[str, Any]]) -> ServingStats:
        """This process's statistics plus other processes' snapshots. Exact,
        percentiles included: every process counts into the same buckets."""
        out = ServingStats()
        for part in [self.snapshot(), *snapshots]:
            for minute, buckets in part["minutes"]:
                mine = out.minutes.setdefault(minute, [0] * (len(BOUNDS_MS) + 2))
                mine[:] = [a + b for a, b in zip(mine, buckets, strict=True)]
            out.total = [a + b for a, b in zip(out.total, part["total"], strict=True)]
            out.rows += part["rows"]
            out.requests += part["requests"]
            out.errors += part["errors"]
            out.seconds += part["seconds"]
        out.minutes = OrderedDict(sorted(out.minutes.items())[-KEEP_MINUTES:])
        return out

    def series(self) -> list[dict[str, Any]]:
        """Per minute: requests, predictions, p50 and p99 latency (ms)."""
        return [
            {
                "minute": m * 60,
                "requests": sum(b[:-1]),
                "predictions": b[-1],
                "p50_ms": _percentile(b[:-1], 0.50),
                "p99_ms": _percentile(b[:-1], 0.99),
            }
            for m, b in self.minutes.items()
        ]

    def prometheus(self) -> list[str]:
        lines = ["# TYPE minimlops_predict_request_seconds histogram"]
        cumulative = 0
        for bound, count in zip(BOUNDS_MS, self.total, strict=False):
            cumulative += count
            lines.append(
                f'minimlops_predict_request_seconds_bucket{{le="{bound / 1000}"}} {cumulative}'
            )
        lines += [
            f'minimlops_predict_request_seconds_bucket{{le="+Inf"}} {self.requests}',
            f"minimlops_predict_request_seconds_sum {self.seconds:.6f}",
            f"minimlops_predict_request_seconds_count {self.requests}",
            "# TYPE minimlops_predictions_total counter",
            f"minimlops_predictions_total {self.rows}",
            "# TYPE minimlops_predict_errors_total counter",
            f"minimlops_predict_errors_total {self.errors}",
        ]
        return lines


def _percentile(counts: list[int], q: float) -> float | None:
    total = sum(counts)
    if total == 0:
        return None
    rank, seen = q * total, 0
    for i, c in enumerate(counts):
        seen += c
        if seen >= rank:
            return float(BOUNDS_MS[i]) if i < len(BOUNDS_MS) else float(BOUNDS_MS[-1])
    return float(BOUNDS_MS[-1])
