"""Your own data set, as a new user meets it: `init` a CSV, `up --project`,
predictions, a second file, feedback; the built-in multiclass, regression and
wide examples through the real server; one home, one project."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.csv as pacsv
import pytest

from minimlops import projects
from minimlops.generate import write_project_csv
from tests import projects as shapes
from tests.e2e.harness import Server, cli, env_for

LAND = "buckets/my-data-landing-zone"


@pytest.mark.parametrize("name", ["wine", "diabetes", "churn"])
def test_an_example_project_serves_learns_from_feedback_and_retrains(tmp_path: Path, name) -> None:
    p = shapes.load(name)
    home = tmp_path / "home"
    srv = Server(home, MINIMLOPS_PROJECT=name, MINIMLOPS_MONITOR_EVERY="3600")
    try:
        srv.wait_healthy(120)  # the example's file lands on first start, version 1 serves
        rows = shapes.rows(p, 60, seed=9, start=100_000).to_pylist()
        requests = [shapes.request_of(p, r) for r in rows]
        one = srv.http.post("/predict", json=requests[0])
        assert one.status_code == 200, one.text
        answer = one.json()
        keys = {
            "binary": {"prediction", "probability", "uuid", "model_version"},
            "multiclass": {"prediction", "probability", "probabilities", "uuid", "model_version"},
            "regression": {"prediction", "uuid", "model_version"},
        }[p.task]
        # the generated rows span the project's rules, the example's real data
        # does not: a value far outside what it learnt from is answered and said
        assert set(answer) - {"warnings"} == keys, answer
        assert all(" is far " in w["message"] for w in answer.get("warnings", [])), answer
        if p.classes:
            assert answer["prediction"] in p.classes
        batch = srv.http.post("/predict", json=requests).json()["predictions"]
        labels = [
            {"uuid": a["uuid"], p.target: r[p.target]} for a, r in zip(batch, rows, strict=True)
        ]
        fb = srv.http.post("/feedback", json=labels)
        assert fb.status_code == 200 and fb.json()["accepted"] == 60, fb.text
        wrong = srv.http.post("/feedback", json={"uuid": batch[0]["uuid"], p.target: "??"})
        assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == p.target
        versions = srv.http.get("/monitoring").json()["versions"]
        live = next(v for v in versions if v["version"] == answer["model_version"])
        assert live["labelled"] == 60
        assert (live["live_mae"] if p.task == "regression" else live["live_accuracy"]) is not None
        # a second file, landed with the CLI while the server runs: a new version, gated
        more = tmp_path / "more.csv"
        write_project_csv(p, more, 300, seed=4, start_id=200_000)
        cli(home, "ingest", str(more))
        srv.wait_for(
            lambda: len(srv.http.get("/models").json()["versions"]) >= 2, 120, "a second version"
        )
        v2 = srv.http.get("/models").json()["versions"][-1]
        assert v2["decision"]["metric"] == p.primary_metric
        page = srv.http.get("/project").json()
        assert page["task"] == p.task and page["target"] == p.target
        spec = srv.http.get("/openapi.json").json()
        assert (
            "Row" in spec["components"]["schemas"] and "Feedback" in spec["components"]["schemas"]
        )
        listing = cli(home, "models", "list", COLUMNS="80")
        assert max(len(line) for line in listing.stdout.splitlines()) <= 80, listing.stdout
        header = next(line for line in listing.stdout.splitlines() if "decision" in line)
        for column in ("ver", "rows", p.primary_metric, "baseline", "algorithm"):
            assert column in header, listing.stdout  # every column visible, none squeezed out
        shown = cli(home, "models", "show", "2")
        assert "decision:" in shown.stdout and p.primary_metric in shown.stdout
    finally:
        srv.stop()


def test_from_a_csv_to_a_served_model_with_init(tmp_path: Path) -> None:
    """The README's worked example, on an export with no id column (init
    generates the key): init, up, ingest, predict, a second file, feedback."""
    p = shapes.load("churn")
    full, more = tmp_path / "full.csv", tmp_path / "more.csv"
    write_project_csv(p, full, 1500, seed=1)
    write_project_csv(p, more, 500, seed=2, start_id=5000)
    data = tmp_path / "customers.csv"
    pacsv.write_csv(pacsv.read_csv(full).drop_columns([p.key]), data)
    pacsv.write_csv(pacsv.read_csv(more).drop_columns([p.key]), more)
    out = cli(tmp_path, "init", str(data), "--target", "churned", "-o", str(tmp_path / "proj"))
    assert "key: none of the columns is unique" in out.stdout and "task: binary" in out.stdout
    assert "positive class: 'Yes'" in out.stdout
    home = tmp_path / "home"
    srv = Server(home, MINIMLOPS_PROJECT=str(tmp_path / "proj"))
    try:
        srv.wait_for(lambda: _reachable(srv), 60, "the server")
        health = srv.http.get("/healthz")  # no example data: it waits for a file
        assert health.status_code == 503 and "no champion" in health.json()["reason"]
        # `up` says how to land a file, as a command that works pasted into
        # another shell, elsewhere, without MINIMLOPS_HOME: it names the home
        hint = srv.wait_for(
            lambda: next(
                (x for x in srv.output().splitlines() if x.startswith("minimlops ingest ")), None
            ),
            30,
            "the ingest command to paste",
        )
        assert shlex.split(hint)[2:] == ["FILE.csv", "--home", str(home.resolve())], hint
        elsewhere = tmp_path / "another-shell"
        elsewhere.mkdir()
        pasted = subprocess.run(
            [sys.executable, "-m", *shlex.split(hint.replace("FILE.csv", shlex.quote(str(data))))],
            cwd=elsewhere,
            capture_output=True,
            text=True,
            timeout=120,
            env={k: v for k, v in env_for(home).items() if k != "MINIMLOPS_HOME"},
        )
        assert pasted.returncode == 0, pasted.stderr
        assert list(elsewhere.iterdir()) == [], "no other home was made"
        srv.wait_healthy(120)
        row = shapes.request_of(p, pacsv.read_csv(data).slice(0, 1).to_pylist()[0])
        answer = srv.http.post("/predict", json=row).json()
        assert answer["prediction"] in ("Yes", "No") and 0 <= answer["probability"] <= 1
        # once the first model is served, `up` prints a curl to paste, in the
        # project's own columns, which the server answers
        line = srv.wait_for(
            lambda: next((x for x in srv.output().splitlines() if x.startswith("curl ")), None),
            30,
            "a curl to try",
        )
        assert "no model yet" in srv.output()
        words = shlex.split(line)
        assert words[-1] == f"{srv.url}/predict" and "plan" in json.loads(
            words[words.index("-d") + 1]
        )
        tried = srv.http.post(
            "/predict",
            content=words[words.index("-d") + 1],
            headers={"Content-Type": "application/json"},
        )
        assert tried.status_code == 200 and tried.json()["prediction"] in ("Yes", "No"), tried.text
        # the CLI uses the home's project without being told
        predicted = json.loads(cli(home, "predict", json.dumps(row)).stdout)
        assert (
            predicted["prediction"] in ("Yes", "No") and predicted["model_version"]
        )  # as /predict
        many = json.loads(cli(home, "predict", json.dumps([row, row])).stdout)
        assert len(many["predictions"]) == 2
        # the export's own rows as a CSV, answered as the file loaded: its
        # true/false cells are booleans (they were refused as text)
        few = tmp_path / "few.csv"
        few.write_text("\n".join(data.read_text().splitlines()[:6]) + "\n")
        assert ",true," in few.read_text() or ",false," in few.read_text()
        from_file = json.loads(cli(home, "predict", "--file", str(few)).stdout)
        assert len(from_file["predictions"]) == 5, from_file
        # a category the model never learnt: answered, and said, as /predict says it
        drafted = projects.load(str(tmp_path / "proj"))
        _assert_unseen_said(home, drafted, row)
        # a second export, landed as it is: its rows are new rows
        cli(home, "ingest", str(more))
        srv.wait_for(
            lambda: len(srv.http.get("/models").json()["versions"]) >= 2, 120, "a second version"
        )
        counted = srv.http.post(
            "/query",
            json={"sql": "SELECT count(*) AS n, count(DISTINCT row_id) AS k FROM training_data"},
            headers=srv.admin(),
        ).json()["rows"]
        assert counted == [{"n": 2000, "k": 2000}]
        fb = srv.http.post("/feedback", json={"uuid": answer["uuid"], "churned": "No"})
        assert fb.status_code == 200 and fb.json()["accepted"] == 1, fb.text
        # a training asked for from the command line: its answer, without the
        # HTTP client's own log lines ("INFO HTTP Request: POST ...")
        trained = cli(home, "train", "--reason", "the README's example")
        assert json.loads(trained.stdout)["reason"] == "the README's example"
        assert "HTTP Request" not in trained.stderr and "httpx" not in trained.stderr, (
            trained.stderr
        )
    finally:
        srv.stop()
    # with no server running, the command line predicts in its own process: said too
    _assert_unseen_said(home, drafted, row)


def _assert_unseen_said(home: Path, p, row: dict) -> None:
    """``minimlops predict`` of ``row`` with a value of a one-hot text category
    the model never learnt: its answer warns about that column."""
    name = next(
        c.name
        for c in p.columns
        if c.type == "string" and c.allowed is None and c.name in p.features
    )  # the drafted churn project's "plan": four values, one-hot
    said = json.loads(cli(home, "predict", json.dumps({**row, name: "no-such-value"})).stdout)
    (warning,) = said.get("warnings") or [None]
    assert warning and warning["field"] == name, said
    assert "'no-such-value' is not a category the model learnt" in warning["message"], said


def _reachable(srv: Server) -> bool:
    import httpx

    try:
        return srv.http.get("/status").status_code == 200
    except httpx.TransportError:
        return False


def test_one_home_holds_one_project_and_a_nullable_column_can_be_added(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proj = tmp_path / "proj"
    shutil.copytree(shapes.load("diabetes").directory, proj)
    srv = Server(home, MINIMLOPS_PROJECT=str(proj))
    srv.wait_healthy(120)
    srv.stop()
    # another project on this home is refused, and nothing is written
    before = sorted(p.name for p in home.iterdir())
    refused = cli(home, "status", "--project", "wine", check=False)
    assert refused.returncode != 0
    assert "holds data of project 'diabetes'" in refused.stderr + refused.stdout
    assert sorted(p.name for p in home.iterdir()) == before
    # and so is a file of it, before it lands
    wine = tmp_path / "wine.csv"
    wine.write_text("a,b\n1,2\n")
    landing = sorted((home / "buckets").rglob("*.csv"))
    refused = cli(home, "ingest", str(wine), "--project", "wine", check=False)
    assert refused.returncode != 0 and "landed" not in refused.stdout
    assert "holds data of project 'diabetes'" in refused.stderr + refused.stdout
    assert sorted((home / "buckets").rglob("*.csv")) == landing
    # retyping a column is refused with what to do
    text = (proj / "project.toml").read_text()
    (proj / "project.toml").write_text(
        text.replace('name = "s6"\ntype = "float"', 'name = "s6"\ntype = "integer"')
    )
    retyped = cli(home, "status", check=False)
    assert (
        retyped.returncode != 0
        and "column 's6' retyped from float to integer" in (retyped.stderr + retyped.stdout)
        and "new home" in retyped.stderr + retyped.stdout
    )
    # a new nullable column is applied in place: old rows read as null
    (proj / "project.toml").write_text(
        text + '\n[[columns]]\nname = "smoker"\ntype = "boolean"\ndescription = "smokes"\n'
    )
    srv = Server(home)
    try:
        srv.wait_healthy(120)
        rows = srv.http.post(
            "/query",
            json={"sql": "SELECT count(*) AS n, count(smoker) AS s FROM training_data"},
            headers=srv.admin(),
        ).json()["rows"]
        assert rows == [{"n": 442, "s": 0}]
        assert "smoker" in [c["name"] for c in srv.http.get("/project").json()["columns"]]
    finally:
        srv.stop()
