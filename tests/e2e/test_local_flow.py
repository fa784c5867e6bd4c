"""The whole local flow as a user runs it: ``minimlops up``, curl, ``ingest``, ``query``."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from minimlops.config import Settings
from minimlops.generate import write_csv
from minimlops.ml.selection import BUDGET_MAX_S
from tests.conftest import example_csv
from tests.e2e.harness import EXERCISE_REQUEST, MODEL_FIELDS_ONLY, Server, cli

LAND = "buckets/my-data-landing-zone"


def need_example_data() -> Path:
    path = example_csv()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must set MINIMLOPS_EXAMPLE_DATA to the Titanic file")
        pytest.skip("MINIMLOPS_EXAMPLE_DATA is not set")
    return path


pytestmark = pytest.mark.smoke  # the README's flow: in the default tier


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    need_example_data()
    home = tmp_path_factory.mktemp("e2e") / "home"
    # the flow as users get it: the training budget unset (an empty value unsets it)
    assert Settings.model_fields["training_budget"].default is None
    # and a settling time no test waits out: the example that lands on first
    # start and every `minimlops ingest` below are announced by their writer
    srv = Server(home, MINIMLOPS_TRAINING_BUDGET="", MINIMLOPS_SETTLE_SECONDS="3600")
    srv.wait_healthy()
    yield srv
    code = srv.stop()  # Ctrl-C: uvicorn re-raises SIGINT after a clean shutdown (130)
    assert code in (0, 130) and "stopped" in srv.output(), srv.output()


def ledger(server: Server) -> list[dict]:
    out = cli(
        server.home,
        "query",
        "SELECT * FROM ingestion_ledger ORDER BY ingested_at",
        "--format",
        "json",
    )
    return json.loads(out.stdout)


def test_first_start_serves_the_exercise_request(server: Server) -> None:
    for body in (EXERCISE_REQUEST, MODEL_FIELDS_ONLY):
        r = server.http.post("/predict", json=body)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert set(answer) == {"prediction", "probability", "uuid", "model_version"}
        assert answer["prediction"] == 0 and 0 <= answer["probability"] < 0.5
        assert answer["model_version"] == "1"
    (row,) = ledger(server)[:1]
    assert row["status"] == "loaded" and row["rows_loaded"] == 891
    models = server.http.get("/models").json()
    v1 = models["versions"][0]
    assert (
        models["champion"] == "1"
        and v1["metrics"]["accuracy"] > v1["baseline"]["gender_only_accuracy"]
    )


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc (Linux)")
def test_the_server_that_trained_never_loaded_scikit_learn(server: Server) -> None:
    """Training runs in its own process: the server that sent it version 1's
    job holds no scikit-learn (~70 MB of its memory when it did). Nothing in
    this module asks for an explanation, which loads the native model."""
    assert server.http.get("/healthz").json()["model_version"] == "1"
    maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
    assert "/sklearn/" not in maps and "/lightgbm/" not in maps


def _readme_block(marker: str) -> str:
    """The first ```bash block after ``marker`` in the README."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    after = text[text.index(marker) :]
    start = after.index("```bash\n") + len("```bash\n")
    return after[start : after.index("```", start)]


def test_the_readme_curl_is_answered_as_the_readme_shows(server: Server) -> None:
    """The README's first request, run with curl as a reader pastes it (only
    the port differs): the answer has the fields and values the README shows."""
    import re
    import subprocess

    block = _readme_block("<!-- example: exercise-curl")
    command = "\n".join(ln for ln in block.splitlines() if not ln.startswith("#"))
    shown = next(ln for ln in block.splitlines() if ln.startswith("# {"))
    assert "http://127.0.0.1:8080/predict" in command
    out = subprocess.run(
        ["bash", "-c", command.replace("http://127.0.0.1:8080", server.url)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    answer = json.loads(out)
    assert set(answer) == set(re.findall(r'"(\w+)":', shown))
    assert f'"prediction":{answer["prediction"]}' in shown
    assert f'"model_version":"{answer["model_version"]}"' in shown
    assert 0 <= answer["probability"] <= 1


def test_a_version_has_its_evaluation_in_the_api_the_page_and_the_cli(server: Server) -> None:
    """GET /models/1: metrics with intervals, the leaderboard, the plots'
    numbers and importance of the raw columns; HTML for a browser; 404 for
    an unknown version; `minimlops models show 1` prints the same."""
    r = server.http.get("/models/1")
    assert r.status_code == 200 and "Accept" in r.headers["vary"]
    v = r.json()
    sel, report = v["selection"], v["report"]
    assert sel["metric"] == "accuracy" and sel["chosen"] == v["algorithm"]
    assert {e["name"] for e in sel["leaderboard"]} >= {
        "logistic_regression",
        "lightgbm",
        "random_forest",
    }
    chosen = [e for e in sel["leaderboard"] if e.get("chosen")]
    assert len(chosen) == 1 and chosen[0]["name"] == v["algorithm"]
    # the time budget it had (unset: every candidate that fits in it), and what it took
    assert sel["budget_s"] == BUDGET_MAX_S and sel["budget_from"].startswith("unset")
    assert 0 < sel["seconds"] < BUDGET_MAX_S
    # none skipped (an ensemble that kept one member says so instead of scores)
    assert all(e["status"] == "scored" for e in sel["leaderboard"] if e["family"] != "ensemble")
    assert report["rows"] == v["metrics"]["rows"] and report["task"] == "binary"
    assert sum(map(sum, report["confusion"]["matrix"])) == report["rows"]
    low, high = report["intervals"]["accuracy"]
    assert low <= v["metrics"]["accuracy"] <= high
    columns = {c["column"] for c in report["importance"]["columns"]}
    assert columns == {
        "Pclass",
        "Name",
        "Sex",
        "Age",
        "SibSp",
        "Parch",
        "Fare",
        "Ticket",
        "Cabin",
        "Embarked",
    }  # the request's fields the model reads, not the one-hot columns
    top = report["importance"]["columns"][0]
    assert top["column"] in ("Sex", "Name") and top["importance"] > 0.02  # sex, or the title
    page = server.http.get("/models/1", headers={"Accept": "text/html,*/*"})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert server.http.get("/models/99").status_code == 404
    unknown = server.http.post("/feedback", json={"uuid": "no-such-id", "Survived": 1})
    assert unknown.status_code == 404 and "'no-such-id'" in unknown.json()["detail"]
    typo = server.http.post("/feedback", json=[{"uuid": "u", "Survivd": 1}])
    (said,) = typo.json()["errors"]
    assert typo.status_code == 422 and said["field"] == "Survived" and said["index"] == 0
    assert "'Survivd': misspelt?" in said["message"], said
    assert server.http.post("/feedback", json=[]).status_code == 422
    out = cli(server.home, "models", "show", "1").stdout
    assert "95% interval" in out and "selection" in out and "permutation importance" in out
    # the model that serves, on TEST, under the table
    assert (
        f"served fit (TRAIN and VALIDATION), on {int(v['test']['rows']):,} of its TEST rows: accuracy"
        in " ".join(out.split())
    )
    assert "chosen" in out and v["algorithm"] in out
    assert f"of a {BUDGET_MAX_S:g} s budget" in " ".join(out.split())


def test_every_answered_prediction_is_a_row_queryable_while_serving(server: Server) -> None:
    uuids = [server.http.post("/predict", json=MODEL_FIELDS_ONLY).json()["uuid"] for _ in range(5)]
    out = cli(
        server.home,
        "query",
        "SELECT uuid, Pclass, Sex, model_version FROM predictions_data",
        "--format",
        "csv",
    )
    lines = out.stdout.splitlines()
    assert lines[0] == "uuid,Pclass,Sex,model_version"
    logged = {line.split(",")[0] for line in lines[1:]}
    assert set(uuids) <= logged
    refused = cli(server.home, "query", "DELETE FROM predictions_data", check=False)
    assert refused.returncode != 0 and "read-only" in refused.stderr


def test_duplicate_file_loads_nothing(server: Server, tmp_path: Path) -> None:
    copy = tmp_path / "same-content.csv"
    shutil.copy(need_example_data(), copy)
    cli(server.home, "ingest", str(copy))
    row = server.wait_for(
        lambda: next(
            (r for r in ledger(server) if r["source_uri"].endswith("same-content.csv")), None
        ),
        what="the duplicate in the ledger",
    )
    assert row["status"] == "duplicate" and row["rows_loaded"] == 0
    status = json.loads(cli(server.home, "status", "--json").stdout)
    assert status["tables"]["training_data"] == 891


def test_a_file_copied_in_waits_for_its_settling_time_ingest_does_not(
    server: Server, tmp_path: Path
) -> None:
    """A file copied into the landing zone by other means may still be being
    written, so it waits until it has not changed for the settling time (an
    hour here); a file `minimlops ingest` lands is whole, and loads at once."""
    copied = server.home / LAND / "copied-in.csv"
    write_csv(copied, 50, seed=4, bad_rows=1)
    bad = tmp_path / "ingested.csv"
    write_csv(bad, 50, seed=5, bad_rows=1)
    cli(server.home, "ingest", str(bad))
    rejected = server.home / LAND / "rejected"
    server.wait_for((rejected / "ingested.csv.report.json").exists, what="the ingested file")
    # the watcher looked at the copied file many times meanwhile, and left it
    assert copied.exists() and not (rejected / "copied-in.csv.report.json").exists()
    assert not any(r["source_uri"].endswith("copied-in.csv") for r in ledger(server))
    copied.unlink()  # the later tests' landing zone as they expect it


def test_malformed_file_is_set_aside_and_serving_goes_on(server: Server, tmp_path: Path) -> None:
    bad = tmp_path / "broken.csv"
    write_csv(bad, 200, seed=9, bad_rows=5)
    cli(server.home, "ingest", str(bad))
    report = server.home / LAND / "rejected" / "broken.csv.report.json"
    server.wait_for(report.exists, what="the rejection report")
    body = json.loads(report.read_text())
    assert body["bad_rows"] == 5 and body["errors"][0]["row"] >= 1
    assert not (server.home / LAND / "broken.csv").exists()
    assert server.http.post("/predict", json=MODEL_FIELDS_ONLY).status_code == 200


def test_second_file_trains_and_the_gate_decides_without_restart(
    server: Server, tmp_path: Path
) -> None:
    more = tmp_path / "more.csv"
    write_csv(more, 3000, seed=21, start_id=10_001)
    cli(server.home, "ingest", str(more))

    def version2() -> dict | None:
        vs = server.http.get("/models").json()["versions"]
        return vs[1] if len(vs) > 1 else None

    v2 = server.wait_for(version2, what="model version 2")
    assert v2["training_rows"] == 891 + 3000
    assert v2["decision"]["reason"]
    expected = "2" if v2["decision"]["promote"] else "1"
    server.wait_for(
        lambda: server.http.get("/healthz").json()["model_version"] == expected,
        timeout=10,
        what=f"serving version {expected}",
    )
    assert server.http.post("/predict", json=EXERCISE_REQUEST).json()["model_version"] == expected


def test_bad_requests_get_specific_errors_never_500(server: Server) -> None:
    r = server.http.post("/predict", json={**MODEL_FIELDS_ONLY, "Age": -3, "Sex": "robot"})
    assert r.status_code == 422
    fields = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert set(fields) == {"Age", "Sex"} and "greater than or equal to 0" in fields["Age"]
    assert server.http.post("/predict", json={"Sex": "male"}).status_code == 422
    r = server.http.post(
        "/predict", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "invalid JSON" in r.json()["detail"]
    r = server.http.post("/predict", content=b"Pclass=3", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = server.http.post(
        "/predict", content=b'{"Pclass": NaN}', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    batch = server.http.post("/predict", json=[MODEL_FIELDS_ONLY] * 3)
    assert batch.status_code == 200 and len(batch.json()["predictions"]) == 3
    r = server.http.post("/predict", json=[MODEL_FIELDS_ONLY, {"Pclass": 9}])
    assert r.status_code == 422 and {e.get("index") for e in r.json()["errors"]} == {1}


def test_cors_preflight_and_openapi(server: Server) -> None:
    r = server.http.options(
        "/predict",
        headers={
            "Origin": "http://127.0.0.1:5500",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    spec = server.http.get("/openapi.json").json()
    assert "/predict" in spec["paths"] and "Passenger" in spec["components"]["schemas"]


def test_admin_endpoints_need_the_token(server: Server) -> None:
    assert server.http.post("/models/rollback").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert server.http.post("/train", headers=wrong).status_code == 401
    assert (
        server.http.post("/query", json={"sql": "SELECT 1"}, headers=server.admin()).status_code
        == 200
    )


def test_models_list_and_status_work_while_serving(server: Server) -> None:
    assert "model titanic" in cli(server.home, "models", "list").stdout
    listed = json.loads(cli(server.home, "models", "list", "--json").stdout)
    assert listed["champion"] in [v["version"] for v in listed["versions"]]
    status = json.loads(cli(server.home, "status", "--json").stdout)
    assert status["champion"]["version"] and status["serving"]
    assert {q["subscription"] for q in status["queues"]} >= {"ingest_data", "train_model"}


def test_predict_without_a_server_answers_and_logs_the_row(tmp_path: Path) -> None:
    """`minimlops predict` on a home no server holds scores in-process and
    logs the row like the server would (it used to wait forever)."""
    home = tmp_path / "home"
    data = tmp_path / "passengers.csv"
    write_csv(data, 300, seed=21)
    cli(home, "ingest", str(data))
    answer = json.loads(cli(home, "predict", json.dumps(MODEL_FIELDS_ONLY)).stdout)
    assert answer["prediction"] in (0, 1) and answer["model_version"] == "1"
    # a field the request has not is ignored, and the command says so
    misspelt = cli(home, "predict", json.dumps({**MODEL_FIELDS_ONLY, "Agee": 3}))
    said = "'Agee' is not a field of Passenger, so it was ignored (did you mean 'Age'?)"
    answered = json.loads(misspelt.stdout)
    assert answered["prediction"] in (0, 1)
    assert answered["warnings"] == [{"field": "Agee", "message": said}], answered  # as the API's
    assert f"warning: {said}" in misspelt.stderr.splitlines(), misspelt.stderr
    # a value of the wrong type: one line naming the field, as the API's 422 does
    wrong = cli(home, "predict", json.dumps({**MODEL_FIELDS_ONLY, "Age": "old"}), check=False)
    assert wrong.returncode == 1 and "validation error" not in wrong.stderr
    assert wrong.stderr.strip().splitlines()[-1].startswith("error: Age: "), wrong.stderr
    logged = cli(
        home,
        "query",
        f"SELECT uuid FROM predictions_data WHERE uuid = '{answer['uuid']}'",
        "--format",
        "json",
    ).stdout
    assert answer["uuid"] in logged


def test_a_mistyped_project_is_an_error_line_not_a_traceback(tmp_path: Path) -> None:
    for command in (("status",), ("up", "--port", "0")):
        proc = cli(
            tmp_path / "home", *command, "--project", str(tmp_path / "custmers"), check=False
        )
        assert proc.returncode == 1 and "error: no project.toml in" in proc.stderr
        assert "Traceback" not in proc.stderr
