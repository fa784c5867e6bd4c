"""docs/performance.md says whether each target is met, computed from the
figures: a figure on the wrong side of its bound reads "missed"."""

from __future__ import annotations

from minimlops_bench.targets import EXERCISE, ONE, TARGETS, status, table

COLD = "cold start: `minimlops up` on an existing home to first prediction"


def _target(measurement_starts: str):  # type: ignore[no-untyped-def]
    return next(t for t in TARGETS if t.measurement.startswith(measurement_starts))


def test_a_ratio_under_its_target_is_missed_and_at_it_met() -> None:
    target = _target("one passenger at 32 connections")
    exercise = {EXERCISE: {"name": EXERCISE, "ratio": 0.6, "note": "model: random_forest_deep"}}
    missed = status(
        target, {ONE: {"name": ONE, "ratio": 0.49, "note": "model: ensemble"}, **exercise}
    )
    assert missed == (
        "**missed**: 0.49× (generated passengers, ensemble), "
        "0.60× (the exercise's file, random_forest_deep)"
    )
    met = status(target, {ONE: {"name": ONE, "ratio": 0.5}, **exercise})
    assert met.startswith("met: 0.50× (generated passengers, a model)")
    assert status(_target("cold start"), {COLD: {"value": 2.0, "unit": "s"}}).startswith("**missed")


def test_every_figure_of_a_target_counts_peak_memory_read_from_the_note() -> None:
    target = _target("ingestion of 1,000,000 rows")
    name = "minimlops ingest_data, 1,000,000 rows"
    fast = {"name": name, "value": 1.4, "unit": "s", "ratio": 15.0, "note": "peak RSS 507 MB"}
    assert status(target, {name: fast}) == "met: 1.40 s, 15.00× pandas, peak 507 MB"
    heavy = {**fast, "note": "peak RSS 1900 MB"}
    assert status(target, {name: heavy}).startswith("**missed**")


def test_a_target_without_its_figure_says_so() -> None:
    assert status(_target("cold start"), {}) == "not measured"
    assert "make bench-peers" in status(_target("against `mlflow models serve`"), {})
    assert "make soak" in status(_target("10 minutes"), {})
    assert table([]).count("\n") == len(TARGETS) + 1  # a header, its rule, a line a target


def test_a_run_on_a_host_at_another_speed_judges_no_target() -> None:
    """The floor outside its usual range: the figures are shown, never "met"."""
    from minimlops_bench.targets import FLOOR

    slow = [
        {"name": FLOOR, "value": 14_903.0, "ratio": 1.0},
        {"name": ONE, "value": 8_800.0, "ratio": 0.57, "note": "model: random_forest"},
        {"name": COLD, "value": 1.5, "unit": "s"},
    ]
    text = table(slow, {"cpu": "x", "cores": 2, "date": "2026-12-07"})
    assert "met:" not in text and "**missed**" not in text
    assert "not judged (the host's speed was not its usual): 1.50 s" in text
    usual = [{**slow[0], "value": 31_000.0}, *slow[1:]]
    assert "met: 1.50 s" in table(usual, {"cpu": "x", "cores": 2, "date": "2026-12-07"})
