"""Property-based fuzzing: every endpoint from the OpenAPI document
(schemathesis) and the request models (hypothesis). No 500, ever."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minimlops.bootstrap import build
from minimlops.config import Settings
from minimlops.entrypoints.http import create_app
from minimlops.entrypoints.runtime import Runtime
from minimlops.generate import write_csv
from tests.e2e.harness import Server

LAND = "buckets/my-data-landing-zone"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("fuzz") / "home"
    (home / LAND).mkdir(parents=True)
    write_csv(home / LAND / "passengers.csv", 900, seed=3)
    srv = Server(home, MINIMLOPS_MAX_BATCH="50")
    srv.wait_healthy()
    yield srv
    assert "Traceback" not in srv.output(), srv.output()[-4000:]
    srv.stop()


def test_no_endpoint_answers_500(server: Server) -> None:
    """Every operation in /openapi.json, fuzzed from its schema, with the admin
    token so admin endpoints are fuzzed past the auth check."""
    api = schemathesis.openapi.from_url(server.url + "/openapi.json")
    headers = {"Authorization": f"Bearer {server.token}"}
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @given(operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)  # fmt: skip
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call(base_url=server.url, headers=headers)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}")

        fuzz()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)  # fmt: skip
FIELDS = st.fixed_dictionaries({}, optional={
    "Pclass": JSON | st.integers(-5, 5), "Sex": JSON | st.sampled_from(["male", "female", "MALE", ""]),
    "Age": JSON | st.floats(), "SibSp": JSON, "Parch": JSON, "Fare": JSON | st.floats(),
    "Embarked": JSON | st.sampled_from(["S", "C", "Q", "", "s"]), "Name": JSON, "Cabin": JSON,
})  # fmt: skip


@pytest.fixture(scope="module")
def answer(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    home = tmp_path_factory.mktemp("fuzz-app") / "home"
    (home / LAND).mkdir(parents=True)
    write_csv(home / LAND / "passengers.csv", 600, seed=5)
    app = build(Settings.from_env({}, home=Path(home), cv_folds=3))
    Runtime(app).drain()
    app.predictor.refresh()

    async def nolog(rows: list) -> None:
        return None

    app.log.log = nolog  # type: ignore[method-assign]
    yield create_app(app).state.answer_predict
    app.close()


@given(st.one_of(FIELDS, st.lists(FIELDS, max_size=3), JSON))
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_json_gets_200_or_a_4xx_with_a_message(answer, body) -> None:  # type: ignore[no-untyped-def]
    import json

    status, payload = asyncio.run(answer(json.dumps(body).encode(), "application/json"))
    assert status in (200, 400, 413, 422), (status, payload)
    if status != 200:
        assert json.loads(payload)["detail"]


@given(st.binary(max_size=300))
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_bytes_get_200_or_a_4xx(answer, body: bytes) -> None:  # type: ignore[no-untyped-def]
    status, _ = asyncio.run(answer(body, "application/json"))
    assert status in (200, 400, 413, 422)
