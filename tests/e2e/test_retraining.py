"""The retraining cycle through the public HTTP API and the command line."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from minimlops.bootstrap import build
from minimlops.config import Settings
from minimlops.domain.events import RetrainRequested
from minimlops.entrypoints.runtime.consumers import Runtime
from minimlops.generate import passengers, write_csv
from minimlops.services import messagebus
from tests.e2e.harness import Server, cli

LAND = "buckets/my-data-landing-zone"
INPUTS = ("Pclass", "Sex", "Age", "SibSp", "Parch", "Fare", "Embarked")


def shifted(n: int, seed: int) -> list[dict]:
    """First-class passengers with high fares; every other input as in training."""
    rng = np.random.default_rng(seed)
    out = []
    for p in passengers(n, seed=seed).to_pylist():
        row = {k: p[k] for k in INPUTS}
        row["Embarked"] = row["Embarked"] or None
        row.update(Pclass=1, Fare=float(rng.uniform(150, 300)))
        out.append(row)
    return out


def wrong_labels(answers: list[dict]) -> list[dict]:
    return [{"uuid": a["uuid"], "Survived": 1 - a["prediction"]} for a in answers]


@pytest.fixture
def server(tmp_path: Path):
    home = tmp_path / "home"
    (home / LAND).mkdir(parents=True)
    write_csv(home / LAND / "passengers.csv", 1500, seed=3)
    srv = Server(
        home,
        MINIMLOPS_MONITOR_EVERY="3600",
        MINIMLOPS_DRIFT_WINDOW="300",
        MINIMLOPS_MIN_LABELS="30",
        MINIMLOPS_ACCURACY_THRESHOLD="0.7",
    )
    srv.wait_healthy()
    yield srv
    srv.stop()


def said(server: Server) -> str:
    """The server's log as one line (the console wraps long lines)."""
    return " ".join(server.output().split())


def versions(server: Server) -> list[dict]:
    return server.http.get("/models").json()["versions"]


def test_drift_accuracy_triggers_decisions_and_rollback(server: Server) -> None:
    # 1. Shifted traffic: drift is flagged for the shifted inputs only.
    answers = server.http.post("/predict", json=shifted(300, seed=5)).json()["predictions"]
    drift = server.http.get("/monitoring").json()["drift"]
    status = {f["feature"]: f["status"] for f in drift["features"]}
    assert status["Pclass"] == "drift" and status["Fare"] == "drift", drift
    assert all(status[f] != "drift" for f in ("Sex", "Age", "SibSp", "Parch", "Embarked")), drift
    fare = next(f for f in drift["features"] if f["feature"] == "Fare")
    assert fare["ks_statistic"] > 0.5 and drift["thresholds"]["psi_drift"] == 0.25

    # 2. The monitor fires the drift trigger once, with its reason. No rows landed
    # since version 1 learned from them: a training would give version 1 again,
    # so none is asked for, and the answer says so.
    checked = server.http.post("/monitoring/check", headers=server.admin()).json()
    assert checked["triggered"] == []
    (seen,) = checked["not_retrained"]
    assert seen.startswith("drift over threshold")
    assert "no rows landed since the champion, version 1, learned from them" in seen
    assert "not retraining: no rows landed since the champion, version 1" in said(server)
    again = server.http.post("/monitoring/check", headers=server.admin()).json()
    assert again["triggered"] == [] and again["not_retrained"] == []  # once per snapshot
    assert any(q.startswith("drift in") and "Pclass" in q for q in again["quiet"]), again
    shown = cli(server.home, "monitor", "--check", COLUMNS="220").stdout  # and the command line
    assert "checked now: no trigger fired" in shown and "already fired on these" in shown, shown
    assert len(versions(server)) == 1
    # new rows land: a version learns from them
    write_csv(server.home / LAND / "more.csv", 600, seed=4, start_id=5000)
    v2 = server.wait_for(lambda: versions(server)[1:], what="a training of the new rows")[0]
    assert v2["trigger"]["reason"] == "new data ingested"
    settled = "2" if v2["decision"]["promote"] else "1"
    server.wait_for(
        lambda: server.http.get("/healthz").json()["model_version"] == settled,
        timeout=10,
        what="the decision applied",
    )

    # 3. Labels that contradict the champion's answers: live accuracy falls; the
    # trigger fires once. It trains nothing if the champion learned from these
    # rows; if version 2 learned from them and was kept out, it trains again,
    # judged with the labels since.
    champion = server.http.get("/healthz").json()["model_version"]
    answers = server.http.post("/predict", json=shifted(60, seed=6)).json()["predictions"]
    assert {a["model_version"] for a in answers} == {champion}
    stored = server.http.post("/feedback", json=wrong_labels(answers)).json()
    assert stored == {"accepted": 60, "unknown": [], "replaced": []}
    live = {v["version"]: v for v in server.http.get("/monitoring").json()["versions"]}
    assert live[champion]["labelled"] == 60 and live[champion]["live_accuracy"] == 0.0
    assert live[champion]["interval_95"][1] < 0.1

    checked = server.http.post("/monitoring/check", headers=server.admin()).json()
    # (and drift again: the traffic still drifts from the new rows too, once for them)
    fired = [
        f for f in checked["triggered"] + checked["not_retrained"] if not f.startswith("drift")
    ]
    assert len(fired) == 1 and fired[0].startswith("live accuracy 0.000")
    if champion == "2":
        assert checked["triggered"] == [] and len(versions(server)) == 2
    else:
        assert checked["not_retrained"] == []
        server.wait_for(lambda: len(versions(server)) == 3, what="a training of version 2's rows")
    triggers = server.http.get("/monitoring").json()["triggers"]
    assert [t["kind"] for t in triggers].count("accuracy") == 1
    # a person may still ask: a training of the same rows, judged on the labels too
    before = len(versions(server))
    r = server.http.post("/train", headers=server.admin(), json={"reason": "a look"})
    assert r.status_code == 202, r.text
    newest = server.wait_for(lambda: versions(server)[before:], what="the training asked for")[0]
    assert newest["decision"]["reason"] and newest["evaluation"]["rows"] > newest["metrics"]["rows"]

    # 4. Roll back from the command line; the previous champion serves.
    if server.http.get("/models").json()["champion"] == "1":  # (whatever the gates decided)
        r = server.http.post(
            f"/models/{newest['version']}/promote", headers=server.admin(), json={"reason": "t"}
        )
        assert r.status_code == 200, r.text
    before = server.http.get("/models").json()["champion"]
    out = cli(server.home, "models", "rollback").stdout
    now, was = re.search(r"champion is now version (\d+) \(was (\d+)\)", out).groups()
    assert was == before and now != before
    pointer = server.http.get("/models").json()["champion"]
    assert pointer == now
    server.wait_for(
        lambda: server.http.get("/healthz").json()["model_version"] == pointer,
        timeout=10,
        what="serving the rolled-back version",
    )


def test_duplicate_and_simultaneous_triggers_start_one_training(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / LAND).mkdir(parents=True)
    write_csv(home / LAND / "passengers.csv", 600, seed=8)
    app = build(Settings.from_env({}, home=home, cv_folds=3))
    runtime = Runtime(app)
    runtime.drain()
    assert [m["version"] for m in app.registry.versions()] == ["1"]
    a, b = RetrainRequested(reason="a person"), RetrainRequested(reason="the schedule")
    for event in (a, a, b):  # the same message twice, and another at once
        messagebus.publish(event, app.deps)
    runtime.drain(scan=False)
    assert [m["version"] for m in app.registry.versions()] == ["1", "2"]
    messagebus.publish(a, app.deps)  # redelivered after it was handled
    runtime.drain(scan=False)
    assert len(app.registry.versions()) == 2
    app.close()


def _labelled_traffic(n: int, seed: int, first_class: bool) -> tuple[list[dict], list[int]]:
    """Requests and their true labels from the generator's own rule; with
    ``first_class`` every passenger travels first (covariate drift: the rule
    that makes the label is the one the model learned)."""
    from minimlops.generate import survival_probability

    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for p in passengers(n, seed=seed).to_pylist():
        row = {k: p[k] for k in INPUTS}
        row["Embarked"] = row["Embarked"] or None
        if first_class:
            row.update(Pclass=1, Fare=float(rng.uniform(40, 120)))
        prob = survival_probability(
            np.array([row["Sex"] == "female"]),
            np.array([row["Pclass"]]),
            np.array([np.nan if row["Age"] is None else row["Age"]], dtype=float),
            np.array([row["SibSp"] + row["Parch"] + 1]),
        )[0]
        rows.append(row)
        labels.append(int(rng.random() < prob))
    return rows, labels


def test_the_estimate_tracks_realized_accuracy_before_labels_arrive(server: Server) -> None:
    """The accuracy estimated from the served probabilities of the newest
    predictions follows what their labels later say, as traffic drifts; label
    coverage and delay are counted per version."""
    realized, estimates = [], []
    for seed, first_class in ((21, False), (22, True)):
        rows, labels = _labelled_traffic(1000, seed, first_class)
        answers = server.http.post("/predict", json=rows).json()["predictions"]
        realized.append(
            float(np.mean([a["prediction"] == y for a, y in zip(answers, labels, strict=True)]))
        )
        (champ,) = [v for v in versions_live(server) if v["served"]]
        estimates.append(champ["estimated"])
        assert champ["labelled"] == 0 and champ["label_delay_s"] is None
    for est, real in zip(estimates, realized, strict=True):
        assert est["rows"] == 1000 and abs(est["accuracy"] - real) < 0.05, (estimates, realized)
        low, high = est["interval_95"]
        assert low < est["accuracy"] < high and high - low < 0.06
    assert abs(realized[0] - realized[1]) > 0.03, realized  # the drift moved accuracy
    assert (estimates[1]["accuracy"] - estimates[0]["accuracy"]) * (realized[1] - realized[0]) > 0
    # the labels arrive: coverage and delay
    feedback = [{"uuid": a["uuid"], "Survived": y} for a, y in zip(answers, labels, strict=True)]
    assert server.http.post("/feedback", json=feedback[:500]).status_code == 200
    (champ,) = [v for v in versions_live(server) if v["served"]]
    assert champ["labelled"] == 500 and champ["label_coverage"] == 500 / 2000
    assert 0 <= champ["label_delay_s"]["p50"] <= champ["label_delay_s"]["p90"] < 600
    shown = cli(server.home, "monitor", COLUMNS="220").stdout  # the command line says the same
    assert "estimated (95%)" in shown and "500 (25%)" in shown, shown


def versions_live(server: Server) -> list[dict]:
    return server.http.get("/monitoring").json()["versions"]
