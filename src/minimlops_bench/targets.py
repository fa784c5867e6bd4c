"""The performance targets, as data.

``docs/performance.md``'s table of targets is generated from these and the
latest figures (``scripts/reference.py``), so whether a figure meets its target
is computed from ``bench/results/latest.json``, never written by hand (a remark
written by hand goes stale as soon as the figures move).

The absolute targets (rows per second, seconds) are set for the benchmark
machine at its usual speed; the ratios hold on any machine, as they are
measured against a baseline in the same run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RSS = re.compile(r"peak RSS (\d+(?:\.\d+)?) MB")
MODEL = re.compile(r"model: (\w+)")


@dataclass(frozen=True)
class Check:
    """One figure of a results row against a bound."""

    row: str  # the row's name in bench/results/latest.json
    read: str = "value"  # "value", "ratio" or "peak_rss_mb" (from the row's note)
    least: float | None = None  # met at this figure or above
    under: float | None = None  # met strictly below this figure
    label: str = ""  # shown after the figure (what a ratio compares); {model}: the row's model

    def figure(self, row: Mapping[str, Any]) -> float | None:
        if self.read == "peak_rss_mb":
            found = RSS.search(row.get("note") or "")
            return float(found.group(1)) if found else None
        value = row.get(self.read)
        return None if value is None else float(value)

    def show(self, row: Mapping[str, Any], figure: float) -> str:
        if self.read == "ratio":
            shown = f"{figure:.2f}×"
        elif self.read == "peak_rss_mb":
            shown = f"peak {figure:,.0f} MB"
        else:
            shown = figure_text(figure, row.get("unit", ""))
        if not self.label:
            return shown
        found = MODEL.search(row.get("note") or "")
        return f"{shown} {self.label.format(model=found.group(1) if found else 'a model')}"

    def met(self, figure: float) -> bool:
        return (self.least is None or figure >= self.least) and (
            self.under is None or figure < self.under
        )


def figure_text(value: float, unit: str) -> str:
    """A results row's value as the docs write it: whole from 100, else two decimals."""
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:,.2f} {unit}"


@dataclass(frozen=True)
class Target:
    measurement: str
    target: str
    checks: tuple[Check, ...] = ()
    elsewhere: str = ""  # not measured by `make bench`: what checks it
    peers: bool = False  # measured only by `make bench-peers`


ONE = "minimlops /predict, 1 passenger, 32 connections"
EXERCISE = ONE + ", the exercise's file"
TARGETS = (
    Target(
        "one passenger at 32 connections, any champion (ensembles included)",
        "0.50× the floor",
        (
            Check(ONE, "ratio", least=0.5, label="(generated passengers, {model})"),
            Check(EXERCISE, "ratio", least=0.5, label="(the exercise's file, {model})"),
        ),
    ),
    Target(
        "one wide (churn) row at 32 connections",
        "0.35× the floor",
        (Check("minimlops /predict, wide project, 1 row, 32 connections", "ratio", least=0.35),),
    ),
    Target(
        "p99 at one connection",
        "under 3× the floor's",
        (Check("minimlops /predict, 1 connection, p99", "ratio", under=3.0),),
    ),
    Target(
        "batches of 1,000 passengers",
        "130,000 rows/s",
        (Check("minimlops /predict, batches of 1,000, 4 connections", least=130_000),),
    ),
    Target(
        "batches of 1,000 wide rows",
        "100,000 rows/s",
        (
            Check(
                "minimlops /predict, wide project, batches of 1,000, 4 connections", least=100_000
            ),
        ),
    ),
    Target(
        "one row's explanation (`POST /explain`) at one connection",
        "p99 under 5 ms",
        (Check("minimlops /explain, 1 passenger, 1 connection, p99", under=5),),
    ),
    Target(
        "against `mlflow models serve`, one passenger at 32 connections",
        "50× its requests per second",
        (Check("mlflow models serve, 1 passenger, 32 connections", "ratio", least=50),),
        peers=True,
    ),
    Target(
        "cold start",
        "under 2 s",
        (Check("cold start: `minimlops up` on an existing home to first prediction", under=2),),
    ),
    Target(
        "end to end, 891 rows landing to the first prediction",
        "under 5 s",
        (Check("end to end: a file landing (891 rows) to its model's first prediction", under=5),),
    ),
    Target(
        "ingestion of 1,000,000 rows",
        "under 5 s, 10× pandas, peak memory under 1 GiB",
        (
            Check("minimlops ingest_data, 1,000,000 rows", under=5),
            Check("minimlops ingest_data, 1,000,000 rows", "ratio", least=10, label="pandas"),
            Check("minimlops ingest_data, 1,000,000 rows", "peak_rss_mb", under=1024),
        ),
    ),
    Target(
        "training on 1,000,000 rows",
        "under 60 s, memory bounded: the peak on 3,000,000 rows under 1.25× this one's",
        (
            Check("minimlops train_model, 1,000,000 rows", under=60),
            Check(
                "minimlops train_model, 3,000,000 rows",
                "ratio",
                under=1.25,
                label="the peak on 3,000,000 rows against this one's",
            ),
        ),
    ),
    Target(
        "a 2 GB file",
        "every row loaded, peak memory under 1.5 GB",
        elsewhere="`make test-slow` (a test that fails when it is not met)",
    ),
    Target(
        "10 minutes of mixed traffic",
        "no error, resident memory growing under 10 %",
        elsewhere="`make soak` ([Operations](operations.md#soak))",
    ),
)


# The floor's requests/s at 32 connections on the benchmark machine at its
# usual speed (bench/results/history.jsonl: 25,400-36,900). Outside it the
# host itself was slow or fast, and the targets are not judged: absolute
# figures follow the host, and even the ratios moved with it (0.64x one day
# the floor ran at 5,700 requests/s, 0.39-0.42x on others at 8,000-10,000).
USUAL_FLOOR = (25_000.0, 40_000.0)
FLOOR = "bare ASGI floor, 32 connections"


def status(target: Target, rows: Mapping[str, Mapping[str, Any]], judged: bool = True) -> str:
    """What the latest figures say of a target: met or missed, with the
    figures; not ``judged`` (a run on a host at another speed), the figures."""
    if target.elsewhere:
        return f"checked by {target.elsewhere}"
    shown, missed = [], False
    for check in target.checks:
        row = rows.get(check.row)
        figure = None if row is None else check.figure(row)
        if row is None or figure is None:
            return "not measured: run `make bench-peers`" if target.peers else "not measured"
        shown.append(check.show(row, figure))
        missed = missed or not check.met(figure)
    if not judged:
        return "not judged (the host's speed was not its usual): " + ", ".join(shown)
    return ("**missed**: " if missed else "met: ") + ", ".join(shown)


def usual_speed(rows: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether the run's floor is within :data:`USUAL_FLOOR` (no floor: judged)."""
    floor = (rows.get(FLOOR) or {}).get("value")
    return not floor or USUAL_FLOOR[0] <= float(floor) <= USUAL_FLOOR[1]


def table(results: Sequence[Mapping[str, Any]], machine: Mapping[str, Any] | None = None) -> str:
    """The targets as a markdown table, each with what the results say of it,
    under the machine and date of the run (absolute figures depend on it)."""
    rows = {r["name"]: r for r in results}
    judged = usual_speed(rows)
    lines = []
    if machine:
        floor = rows.get(FLOOR)
        speed = (
            f"; the floor served {floor['value']:,.0f} requests/s at 32 connections"
            if floor and floor.get("value")
            else ""
        )
        lines += [
            f"{'Judged on the' if judged else 'The'} latest `make bench`: {machine.get('cpu')}, "
            f"{machine.get('cores')} cores, {str(machine.get('date', ''))[:10]}{speed}.",
            "",
        ]
        if not judged:
            lines[-1:] = [
                f"At the machine's usual speed the floor serves {USUAL_FLOOR[0]:,.0f}–"
                f"{USUAL_FLOOR[1]:,.0f} requests/s: this run's figures judge no target.",
                "",
            ]
    lines += ["| measurement | target | latest figures |", "| --- | --- | --- |"]
    lines += [f"| {t.measurement} | {t.target} | {status(t, rows, judged)} |" for t in TARGETS]
    return "\n".join(lines)
