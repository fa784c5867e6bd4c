"""Drift verdicts that mean something: silent on the reference against itself
(whatever the column's shape and the window's size), loud on a real shift,
and acted on only for features the model uses."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from minimlops.generate import passengers
from minimlops.services import messagebus, monitor
from minimlops.services.deps import Deps
from minimlops.services.predict import Predictor
from minimlops.services.train import registry_of
from tests.unit.test_ingest import land
from tests.unit.test_services import _csv, _ingest_and_train

CFG = monitor.MonitorConfig()
rng = np.random.default_rng(0)
ZIPF = 1 / np.arange(1, 601) ** 1.1
CATEGORICAL = {  # name -> (values, probabilities)
    "two values": (np.array(["a", "b"]), np.array([0.8, 0.2])),
    "12 values": (np.arange(12).astype(str), np.full(12, 1 / 12)),
    "600 values, long tail": (np.arange(600).astype(str), ZIPF / ZIPF.sum()),
}
NUMERIC = {  # name -> a draw of n values
    "normal": lambda g, n: g.normal(30, 14, n),
    "counts with ties": lambda g, n: g.choice(
        [0, 1, 2, 3, 5, 8], n, p=[0.68, 0.2, 0.05, 0.04, 0.02, 0.01]
    ),
    "heavy tail": lambda g, n: np.exp(g.normal(2.5, 1.0, n)),
}


def _categorical(values, p, n, g, now=None):
    """The verdict on a window of ``n`` drawn with ``now`` (else ``p``) against
    20,000 reference rows drawn with ``p``."""
    counts = dict(zip(*np.unique(g.choice(values, 20_000, p=p), return_counts=True), strict=True))
    recent = pa.array(g.choice(values, n, p=p if now is None else now))
    return monitor._categorical("c", {str(k): int(v) for k, v in counts.items()}, recent, CFG)


@pytest.mark.parametrize("window", [100, 500, 2000])
def test_the_reference_against_itself_raises_no_drift(window) -> None:
    """Windows drawn from the training distribution itself: across shapes and
    window sizes, at most the 1 % the noise floor allows is flagged."""
    g = np.random.default_rng(window)
    flagged, trials = 0, 0
    for values, p in CATEGORICAL.values():
        for _ in range(10):
            flagged += _categorical(values, p, window, g)["status"] != "ok"
            trials += 1
    for draw in NUMERIC.values():
        reference = draw(g, 20_000).astype(float)
        for _ in range(10):
            found = monitor._numeric("x", reference, pa.array(draw(g, window)), CFG)
            flagged += found["status"] != "ok"
            trials += 1
    assert flagged <= 0.03 * trials, f"{flagged} of {trials} identical windows flagged"


def test_without_the_noise_floor_a_long_tail_would_always_drift() -> None:
    """Why the floor: PSI's bias on a 600-value column over 500 rows is over
    the 0.25 threshold on identical data."""
    values, p = CATEGORICAL["600 values, long tail"]
    found = _categorical(values, p, 500, np.random.default_rng(1))
    assert found["psi"] > CFG.psi_drift and found["noise_psi"] >= found["psi"]
    assert found["status"] == "ok"


def test_a_real_shift_still_drifts_with_its_effect_size() -> None:
    g = np.random.default_rng(2)
    values, p = CATEGORICAL["two values"]
    shifted = _categorical(values, p, 500, g, now=p[::-1])  # 80/20 became 20/80
    assert shifted["status"] == "drift" and shifted["effect"]["jensen_shannon"] > 0.3
    reference = NUMERIC["normal"](g, 20_000)
    moved = monitor._numeric("x", reference, pa.array(reference[:500] + 14), CFG)  # +1 SD
    assert moved["status"] == "drift" and moved["effect"]["wasserstein_iqr"] > 0.5
    same = monitor._numeric("x", reference, pa.array(reference[-500:]), CFG)
    assert same["effect"]["wasserstein_iqr"] < 0.15


def test_drift_on_a_feature_the_model_ignores_is_shown_but_not_acted_on(
    fake_deps: Deps,
) -> None:
    """The generated passengers' port of embarkation plays no part in who
    survives: all of them embarking at Q drifts, but asks for no retraining;
    all of them travelling first class does."""
    _ingest_and_train(fake_deps, "a.csv", passengers(3000, seed=1))
    registry, cfg = registry_of(fake_deps), monitor.MonitorConfig(drift_min_rows=50)
    predictor = Predictor(registry, fake_deps.now, fake_deps.project)
    predictor.refresh()

    def traffic(**change) -> None:
        fake_deps.warehouse.tables["predictions_data"].clear()  # type: ignore[attr-defined]
        rows = [{**r, **change} for r in passengers(400, seed=9).to_pylist()]
        fake_deps.warehouse.append(
            "predictions_data", pa.Table.from_pylist(predictor.predict(rows))
        )

    traffic(Embarked="Q")
    report = monitor.drift(fake_deps, registry, cfg)
    by = {f["feature"]: f for f in report["features"]}
    assert by["Embarked"]["status"] == "drift" and by["Embarked"]["matters"] is False
    # the report says drift only where the model relies on it, as the trigger does
    assert report["status"] != "drift" and "Embarked" in report["minor"]
    # sex reaches the model through the title too (judged with the name and age)
    assert by["Sex"]["importance_share"] > cfg.drift_min_importance
    assert "Name" in by["Sex"]["importance_with"]
    calm = monitor.check(fake_deps, registry, cfg)
    assert calm.events == [] and calm.not_retrained == []
    assert "drift: no feature the model relies on over PSI 0.25" in " ".join(calm.quiet)
    traffic(Pclass=1, Fare=80.0)
    # no rows landed since version 1 learned from them: a training would give it
    # again (promoted as not worse than itself): the drift is recorded and said,
    # and no training is asked for
    assert monitor.check(fake_deps, registry, cfg).events == []
    (seen,) = [t for t in monitor.triggers(fake_deps) if t["kind"] == "drift"]
    assert "Pclass" in seen["reason"] and "Embarked" not in seen["reason"]
    # new rows land (not trained on yet): the drift asks for a training
    land(fake_deps, "more.csv", _csv(passengers(300, seed=11, start_id=9000)))
    (fired,) = monitor.check(fake_deps, registry, cfg).events
    assert "Pclass" in fired.reason
    messagebus.handle(fired, fake_deps)
    assert len(registry.versions()) == 2


class _WithoutAttributions:
    """A registry whose versions recorded permutation importance only (as
    versions trained before attributions did)."""

    def __init__(self, registry) -> None:
        self._registry = registry

    def __getattr__(self, name):
        return getattr(self._registry, name)

    def evaluation(self, version):
        found = dict(self._registry.evaluation(version))
        found.pop("attributions", None)
        return found


def test_whether_drift_matters_is_read_from_the_models_attributions(fake_deps: Deps) -> None:
    """A feature's share is its share of the champion's mean |attribution|
    on VALIDATION (what the evaluation page shows); a version without
    attributions falls back to permutation importance, and the report says
    which it used."""
    _ingest_and_train(fake_deps, "a.csv", passengers(1500, seed=3))
    registry, cfg = registry_of(fake_deps), monitor.MonitorConfig(drift_min_rows=50)
    predictor = Predictor(registry, fake_deps.now, fake_deps.project)
    predictor.refresh()
    rows = [{**r, "Pclass": 1, "Fare": 80.0} for r in passengers(400, seed=9).to_pylist()]
    fake_deps.warehouse.append("predictions_data", pa.Table.from_pylist(predictor.predict(rows)))

    def shares(found, key):
        weight = {c["column"]: max(0.0, c[key]) for c in found["columns"]}
        return {c: w / sum(weight.values()) for c, w in weight.items()}

    evaluation = registry.evaluation("1")
    report = monitor.drift(fake_deps, registry, cfg)
    by = {f["feature"]: f for f in report["features"]}
    assert report["importance"] == "mean |attribution| on VALIDATION"
    # the ticket class feeds no derived feature: its share is its own
    expected = shares(evaluation["attributions"], "mean_abs")["Pclass"]
    assert by["Pclass"]["importance_share"] == pytest.approx(expected)
    assert by["Pclass"]["status"] == "drift" and by["Pclass"]["matters"] is True
    assert report["status"] == "drift"

    older = monitor.drift(fake_deps, _WithoutAttributions(registry), cfg)
    assert older["importance"] == "permutation importance on VALIDATION"
    expected = shares(evaluation["importance"], "importance")["Pclass"]
    by = {f["feature"]: f for f in older["features"]}
    assert by["Pclass"]["importance_share"] == pytest.approx(expected)


TICKETS = """
name = "tickets"
key = "ticket_id"
target = "priority"
task = "binary"
positive_class = "high"
features = ["tier", "severity"]
derived_module = "derived.py"

[[columns]]
name = "ticket_id"
type = "string"
required = true

[[columns]]
name = "subject"
type = "string"
kind = "text"

[[columns]]
name = "tier"
type = "string"
required = true

[[columns]]
name = "priority"
type = "string"
required = true
allowed = ["low", "high"]

[[derived]]
name = "severity"
type = "string"
kind = "categorical"
inputs = ["subject"]
"""


def test_a_derived_feature_of_free_text_is_compared_for_drift(tmp_path) -> None:
    """Free text is never compared itself, but a derived feature the model
    reads from it is: every request about an outage shifts the severity the
    model sees, and drift says so, naming the text it comes from (a trial's
    shift in a ticket's subject went unnoticed)."""
    from minimlops import projects
    from tests.conftest import fake_deps_for
    from tests.unit.test_projects import _land_and_train

    (tmp_path / "project.toml").write_text(TICKETS)
    (tmp_path / "derived.py").write_text(
        "def severity(row):\n"
        "    text = row['subject'] or ''\n"
        "    return 'high' if 'outage' in text else 'low'\n"
    )
    p = projects.load(tmp_path)
    deps = fake_deps_for(p, cv_folds=3)
    rng = np.random.default_rng(0)
    words = ["login", "billing", "refund", "slow page", "password", "outage"]
    subjects = [f"{rng.choice(words)} {rng.choice(words)} #{i}" for i in range(600)]
    rows = [
        {
            "ticket_id": f"T{i}",
            "subject": s,
            "tier": ["free", "pro"][i % 2],
            "priority": "high" if "outage" in s else "low",
        }
        for i, s in enumerate(subjects)
    ]
    _land_and_train(deps, "tickets.csv", pa.Table.from_pylist(rows))
    registry = registry_of(deps)
    predictor = Predictor(registry, deps.now, p)
    predictor.refresh()
    calm = [{"subject": r["subject"], "tier": r["tier"]} for r in rows[:200]]
    storm = [{"subject": f"outage #{i}", "tier": ["free", "pro"][i % 2]} for i in range(200)]
    cfg = monitor.MonitorConfig(drift_min_rows=100, drift_window=200)
    for requests, expected in ((calm, "ok"), (storm, "drift")):
        logged = predictor.predict(requests)
        deps.warehouse.append(deps.names.predictions_table, pa.Table.from_pylist(logged))
        by = {f["feature"]: f for f in monitor.drift(deps, registry, cfg)["features"]}
        assert by["severity"]["status"] == expected, by["severity"]
    assert by["tier"]["status"] == "ok" and "subject" not in by  # free text: not compared
    assert by["severity"]["derived_from"] == ["subject"]
    assert by["severity"]["importance_of"] == "subject"
    assert by["severity"]["importance_share"] > 0.5  # the model leans on it


def test_drift_compares_what_a_derived_feature_adds_and_nothing_twice() -> None:
    """Titanic: the title and the deck come from text drift does not compare
    (the name, the cabin); a log of the fare drifts when the fare does, so it
    is not compared again. A derived feature of hundreds of values (a surname)
    is not compared: new values are the norm; nor on requests without its
    input (the exercise's request has no name: its title says nothing)."""
    from minimlops import projects

    p = projects.load("titanic")
    assert set(monitor.derived_drift(p)) == {"title", "surname", "deck"}
    cfg = monitor.MonitorConfig(drift_min_rows=100)
    ref = monitor._Reference(
        ("1", "s"),
        600,
        {"surname": {f"s{i}": 1 for i in range(583)}, "title": {"Mr": 300, "Mrs": 300}},
        {},
    )
    surnames = pa.array([f"n{i}" for i in range(200)])
    assert monitor._derived_feature("surname", "categorical", ref, surnames, cfg) is None
    nameless = pa.array([None] * 150, pa.string())  # no Name sent: no title computed
    said = monitor._derived_feature("title", "categorical", ref, nameless, cfg)
    assert said == {"feature": "title", "kind": "categorical", "psi": None, "status": "no data"}
    titled = pa.array(["Mr"] * 150 + [None] * 50)
    assert monitor._derived_feature("title", "categorical", ref, titled, cfg)["status"] == "drift"


def test_a_trigger_that_fired_while_a_file_trained_does_not_train_the_same_rows_again(
    fake_deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trigger judged version 1 while the next file's training ran (the rows had
    changed since version 1 learned): by the time its request is handled, version
    2 has learned from the rows as they are, so it trains nothing, and records
    that it did not in a table its identity may append to on Google Cloud (the
    emulators check no IAM); a person's request still trains."""
    from minimlops.config import Settings
    from minimlops.domain.events import RetrainRequested
    from minimlops.entrypoints.gcp import permissions
    from minimlops.entrypoints.gcp import plan as plans

    _ingest_and_train(fake_deps, "a.csv", passengers(600, seed=1))
    appended: set[str] = set()
    append = fake_deps.warehouse.append

    def recorded(table: str, rows: pa.Table) -> None:
        appended.add(table)
        append(table, rows)

    registry = registry_of(fake_deps)
    (done,) = land(fake_deps, "b.csv", _csv(passengers(400, seed=2, start_id=601)))
    fired = RetrainRequested(reason="drift: Pclass", trigger="drift")  # v1 had not seen b.csv
    monitor.record_trigger(
        fake_deps,
        fired,
        "drift",
        {"features": ["Pclass"], "snapshot": monitor.snapshot_id(fake_deps)},
    )
    (first,) = [t for t in monitor.triggers(fake_deps) if t["trigger_id"] == fired.event_id]
    fired_at = first["requested_at"]
    monkeypatch.setattr(fake_deps.warehouse, "append", recorded)  # train_model's appends
    messagebus.handle(done, fake_deps)  # the file's training: version 2 on a and b
    assert [v["version"] for v in registry.versions()] == ["1", "2"]
    if registry.champion()[0]["version"] != "2":  # (kept out: it would be trained again)
        registry.set_champion("2", reason="test", at="2026-01-01T00:00:00+00:00")
    assert messagebus.handle(fired, fake_deps) == []
    assert len(registry.versions()) == 2
    # one trigger, as the training answered it: the pages say it trained nothing
    (said,) = [t for t in monitor.triggers(fake_deps) if t["trigger_id"] == fired.event_id]
    assert said["kind"] == "drift" and said["details"]["retrained"] is False
    assert said["details"]["version"] == "2"
    assert said["details"]["snapshot"] == monitor.snapshot_id(fake_deps)  # fires no more on them
    assert (
        said["details"]["features"] == ["Pclass"] and said["requested_at"] == fired_at
    )  # why, when
    plan = plans.build(Settings.from_env({"GOOGLE_CLOUD_PROJECT": "acme-ml"}, backend="gcp"))
    may = {
        c.resource.rsplit(".", 1)[1]
        for c in permissions.calls(plan)["mlops-train-model"]
        if c.permission == "bigquery.tables.updateData"
    }
    assert appended == {fake_deps.names.triggers_table} and appended <= may
    messagebus.handle(RetrainRequested(reason="requested by a person: check"), fake_deps)
    assert len(registry.versions()) == 3
