"""Property-based fuzzing: every endpoint from the OpenAPI document
(schemathesis) and the request models (hypothesis). No 500, ever."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minimlops.bootstrap import build
from minimlops.config import Settings
from minimlops.entrypoints.http.app import create_app
from minimlops.entrypoints.runtime.consumers import Runtime
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
        @settings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call(base_url=server.url, headers=headers)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
            )

        fuzz()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "Pclass": JSON | st.integers(-5, 5),
        "Sex": JSON | st.sampled_from(["male", "female", "MALE", ""]),
        "Age": JSON | st.floats(),
        "SibSp": JSON,
        "Parch": JSON,
        "Fare": JSON | st.floats(),
        "Embarked": JSON | st.sampled_from(["S", "C", "Q", "", "s"]),
        "Name": JSON,
        "Cabin": JSON,
    },
)


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


ODD = st.sampled_from(
    [
        None,
        "",
        " ",
        "  x",
        "x ",
        "x",
        "3",
        "3.5",
        "true",
        3,
        3.0,
        3.5,
        -1,
        0,
        1,
        True,
        False,
        2**63,
        -(2**63) - 1,
        1e308,
        -1e308,
        10**400,
        [],
        {},
        "male",
        "Yes",
        "basic",
        "\u00a0basic",
        "S",
        "x" * 300,
        "NA",
        "?",
    ]
)
ODD_TEXT = ["1e400", "-1e400", "NaN", "Infinity", "1.0e2", "-0.0", "00", "1E+2"]


def _mutated(draw, base: dict, names: list[str]) -> str:
    """A row's JSON with some fields changed, dropped, doubled or added, and
    some values written as raw JSON tokens (1e400, NaN, ...)."""
    import json

    row, raw = dict(base), {}
    for name in draw(st.lists(st.sampled_from(names), max_size=4, unique=True)):
        how = draw(st.sampled_from(["value", "drop", "raw"]))
        if how == "drop":
            row.pop(name, None)
        elif how == "raw":
            raw[name] = draw(st.sampled_from(ODD_TEXT))
            row.pop(name, None)
        else:
            row[name] = draw(ODD)
    if draw(st.booleans()):
        row["not_a_column"] = draw(ODD)
    text = json.dumps(row)[:-1]
    extra = "".join(f", {json.dumps(k)}: {v}" for k, v in raw.items())
    if draw(st.integers(0, 9)) == 0 and names:  # a key twice: the last one counts
        extra += f", {json.dumps(names[0])}: {json.dumps(draw(ODD))}"
    return ("{" + text[1:] + extra + "}") if text != "{" else "{" + extra.lstrip(", ") + "}"


@pytest.mark.parametrize("name", ["titanic", "wine", "diabetes", "churn", "churn-missing-words"])
def test_the_fast_request_check_accepts_only_what_pydantic_accepts_and_gives_the_same_rows(
    name: str,
) -> None:
    """msgspec checks /predict bodies on the common path; pydantic has the last
    word. Whatever msgspec accepts, pydantic must accept, giving rows that are
    equal value for value and type for type (else a fast path could change an
    answer); what msgspec refuses goes to pydantic anyway."""
    import dataclasses

    from minimlops import projects
    from minimlops.entrypoints.http.request_models import request_models
    from tests import projects as shapes

    project = projects.load(name.removesuffix("-missing-words"))
    if name.endswith("-missing-words"):  # "NA" and "?" mean no value, in every column
        project = dataclasses.replace(project, missing_values=("NA", "?"))
    models = request_models(project)
    assert models.fast is not None, "every example takes the fast path"
    rows = [
        {k: v for k, v in r.items() if k != project.target}
        for r in shapes.rows(project, 30, seed=4).to_pylist()
    ]
    names = [c.name for c in project.columns if c.name != project.target]
    assert models.fast.rows(orjson.dumps(rows), True) is not None, "good rows take the fast path"
    assert all(models.fast.rows(orjson.dumps(r), False) is not None for r in rows)
    fast_taken = []

    @given(st.data())
    @settings(
        max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def check(data: st.DataObject) -> None:
        body = _mutated(data.draw, data.draw(st.sampled_from(rows)), names)
        if data.draw(st.booleans()):
            body = "[" + body + ", " + _mutated(data.draw, rows[0], names) + "]"
        batch = body.startswith("[")
        fast = models.fast.rows(body.encode(), batch)
        if fast is None:
            return
        fast_taken.append(body)
        slow = models.many.validate_json(body) if batch else [models.one.validate_json(body)]

        # a batch gives structs, where an absent field and a null read the same
        # (None), as the features and the log read them; pydantic gives dicts
        def typed(rows: list[Any]) -> list[list[tuple[str, str, Any]]]:
            return [
                sorted((k, type(v).__name__, v) for k, v in dict(r).items() if v is not None)
                for r in rows
            ]

        assert typed(fast) == typed(slow), body

    check()
    assert len(fast_taken) > 20, "the mutated bodies msgspec takes were compared"
