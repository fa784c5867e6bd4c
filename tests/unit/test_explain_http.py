"""POST /explain through the real app: one row, a batch, the limits, and
attributions that add up to the raw output the answer comes from."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from minimlops.bootstrap import build
from minimlops.config import Settings
from minimlops.entrypoints.http.app import create_app
from minimlops.entrypoints.runtime.consumers import Runtime
from minimlops.generate import passengers, write_csv
from minimlops.ml.outputs import calibrate
from minimlops.services.explain import MAX_ROWS
from tests.conftest import fresh_python
from tests.e2e.harness import MODEL_FIELDS_ONLY

with warnings.catch_warnings():  # starlette's word on httpx, said at import
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

LAND = "buckets/my-data-landing-zone"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("explain-app") / "home"
    (home / LAND).mkdir(parents=True)
    write_csv(home / LAND / "passengers.csv", 600, seed=5)
    app = build(Settings.from_env({}, home=Path(home), cv_folds=3, training_budget=3.0))
    Runtime(app).drain()
    app.predictor.refresh()
    yield app
    app.close()


@pytest.fixture(scope="module")
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(create_app(app)) as c:
        yield c


def _adds_up(e: dict[str, Any]) -> None:
    total = e["base_value"] + sum(a["attribution"] for a in e["attributions"])
    assert total == pytest.approx(e["raw_output"], abs=1e-6)
    features = e["base_value"] + sum(f["attribution"] for f in e["features"])
    assert features == pytest.approx(e["raw_output"], abs=1e-6)


def test_one_row_is_explained_in_log_odds_adding_up_to_the_answer(
    client: TestClient, app: Any
) -> None:
    r = client.post("/explain", json=MODEL_FIELDS_ONLY)
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["output_space"] == "log-odds" and e["model_version"] == "1"
    assert {"prediction", "probability", "base_value", "raw_output", "method"} <= set(e)
    _adds_up(e)
    # the answer is the raw output's probability, through the version's calibration
    p = 1 / (1 + math.exp(-e["raw_output"]))
    if e["calibration"] == "platt":
        spec = app.predictor.current[1].spec
        p = float(calibrate(spec["calibration"], np.asarray([p]))[0])
    assert e["probability"] == pytest.approx(p, abs=1e-4)  # ONNX serves float32 trees
    predicted = client.post("/predict", json=MODEL_FIELDS_ONLY).json()
    assert e["prediction"] == predicted["prediction"]
    assert e["probability"] == pytest.approx(predicted["probability"], abs=1e-9)
    # input columns, largest first; Name is read through derived features
    sizes = [abs(a["attribution"]) for a in e["attributions"]]
    assert sizes == sorted(sizes, reverse=True)
    inputs = {a["input"]: a for a in e["attributions"]}
    assert {"Pclass", "Sex", "Age"} <= set(inputs)
    assert inputs["Sex"]["value"] == MODEL_FIELDS_ONLY["Sex"]
    if "Name" in inputs:
        assert inputs["Name"]["label"].startswith("Name (via ")


def test_a_batch_gets_one_explanation_per_row(client: TestClient) -> None:
    rows = [
        {k: v for k, v in r.items() if k not in ("Survived", "PassengerId")}
        for r in passengers(5, seed=9).to_pylist()
    ]
    r = client.post("/explain", json=rows)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == "1" and len(body["explanations"]) == 5
    answers = client.post("/predict", json=rows).json()["predictions"]
    for e, a in zip(body["explanations"], answers, strict=True):
        _adds_up(e)
        assert e["prediction"] == a["prediction"]
    # one base value for every row
    assert len({round(e["base_value"], 9) for e in body["explanations"]}) == 1


def test_a_batch_over_the_limit_or_empty_or_invalid_is_refused(client: TestClient) -> None:
    too_many = client.post("/explain", json=[MODEL_FIELDS_ONLY] * (MAX_ROWS + 1))
    assert too_many.status_code == 413 and str(MAX_ROWS) in too_many.json()["detail"]
    assert client.post("/explain", json=[MODEL_FIELDS_ONLY] * MAX_ROWS).status_code == 200
    empty = client.post("/explain", json=[])
    assert empty.status_code == 422
    bad = client.post("/explain", json=[MODEL_FIELDS_ONLY, {**MODEL_FIELDS_ONLY, "Age": -5}])
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "Age" and bad.json()["errors"][0]["index"] == 1
    broken = client.post(
        "/explain", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400


def test_the_serving_modules_import_neither_scikit_learn_nor_shap() -> None:
    """The server process loads them on the first explanation, not at start."""
    probe = (
        "import sys\n"
        "import minimlops.entrypoints.http.routes.serving, minimlops.ml.attributions\n"
        "import minimlops.services.explain\n"
        "print(sorted(m for m in ('sklearn', 'shap', 'lightgbm', 'skops') if m in sys.modules))"
    )
    assert fresh_python(probe) == "[]"
