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


def test_the_readme_shows_the_newest_run_at_the_machines_usual_speed(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A run on a host slowed to a third is the latest (performance.md shows
    it, judging no target), but the README's figures are the newest run at
    the usual speed, named by its commit; none: the latest's."""
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "reference", Path(__file__).parents[2] / "scripts" / "reference.py"
    )
    assert spec is not None and spec.loader is not None
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    monkeypatch.setattr(reference, "RESULTS", tmp_path)
    machine = {"cores": 2, "cpu": "AMD EPYC"}

    def figures(floor: float, ours: float) -> dict[str, dict[str, float | str]]:
        out: dict[str, dict[str, float | str]] = {
            name: {"value": 1.0, "unit": "s", "ratio": 2.0} for _, name, _ in reference.HEADLINE
        }
        out["bare ASGI floor, 32 connections"] = {"value": floor, "unit": "req/s", "ratio": 1.0}
        out[ONE] = {"value": ours, "unit": "req/s", "ratio": ours / floor}
        return out

    def run(date: str, commit: str, floor: float, ours: float) -> dict[str, object]:
        machine_then = {**machine, "date": f"{date} 10:00 UTC"}
        return {
            "date": date,
            "commit": commit,
            "machine": machine_then,
            "figures": figures(floor, ours),
        }

    usual, slow = (
        run("2026-12-06", "abc1234", 32_000, 13_000),
        run("2026-12-08", "def5678", 10_000, 3_400),
    )
    older = run("2026-12-01", "0000000", 31_000, 9_000)
    (tmp_path / "history.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in (older, usual, slow))
    )

    def latest(r: dict[str, object]) -> None:
        rows = [{"name": n, **f} for n, f in r["figures"].items()]  # type: ignore[attr-defined]
        (tmp_path / "latest.json").write_text(
            json.dumps({"machine": r["machine"], "results": rows})
        )

    latest(slow)
    shown = reference.headline_block()
    assert "13,000 req/s, 0.41×" in shown and "(32,000 req/s)" in shown, shown
    assert "2026-12-06 on abc1234, the newest run at the machine's usual speed" in shown
    latest(usual)  # the latest at the usual speed: it, as always
    assert "2026-12-06;" in reference.headline_block()
    (tmp_path / "history.jsonl").write_text(json.dumps(slow) + "\n")
    latest(slow)  # no run at the usual speed: the latest's figures
    assert "3,400 req/s, 0.34×" in reference.headline_block()
