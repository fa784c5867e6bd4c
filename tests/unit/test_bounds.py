"""A regression target's declared min and max bound every answer: a linear
model that extrapolates (a shop's sales along a date trend) is never answered
below 0 units, in /predict (one row, a batch) or in the version's figures."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pyarrow as pa

from minimlops.domain.project import parse
from minimlops.services import messagebus
from minimlops.services.predict import Predictor
from minimlops.services.train import registry_of
from tests.conftest import fake_deps_for
from tests.unit.test_composite_keys import land

PROJECT = {
    "name": "units",
    "key": "id",
    "target": "units",
    "task": "regression",
    "columns": [
        {"name": "id", "type": "integer", "required": True, "min": 0, "max": 100000},
        {"name": "price", "type": "float", "required": True},
        {"name": "units", "type": "float", "required": True, "min": 0.0},
    ],
}


def test_an_answer_past_the_targets_min_is_the_min_in_every_path() -> None:
    from minimlops.entrypoints.http.fastpath import predict_answerer
    from minimlops.entrypoints.http.request_models import request_models
    from minimlops.entrypoints.http.stats import ServingStats

    p = parse(PROJECT)
    deps = fake_deps_for(p, cv_folds=3)
    rng = np.random.default_rng(0)
    price = rng.uniform(0, 40, 800)
    table = pa.table(
        {
            "id": pa.array(np.arange(800), pa.int64()),
            "price": price,
            "units": 100 - 2 * price + rng.normal(0, 0.01, 800),
        }
    )
    for e in land(deps, "a.csv", table):
        messagebus.handle(e, deps)
    registry = registry_of(deps)
    version = registry.versions()[-1]["version"]
    model = registry.load(version)
    assert model.spec["bounds"] == [0.0, None]
    far = [{"price": 80.0}, {"price": 10.0}]
    raw = np.asarray(model.estimator.predict(model.features.matrix(far)), dtype=np.float64)
    assert raw[0] < 0, f"{model.algorithm} does not extrapolate below 0 here: {raw}"
    assert model.output(far)[0] == 0.0 and model.output(far)[1] == raw[1]
    predictor = Predictor(registry, deps.now, p)
    assert predictor.refresh()

    class Log:
        async def log(self, rows):
            return None

    answer = predict_answerer(
        predictor, Log(), ServingStats(), request_models(p), max_body=1 << 20, max_batch=100
    )
    status, one = asyncio.run(answer(orjson.dumps(far[0]), "application/json"))
    assert status == 200 and orjson.loads(one)["prediction"] == 0.0
    status, many = asyncio.run(answer(orjson.dumps(far), "application/json"))
    answers = [a["prediction"] for a in orjson.loads(many)["predictions"]]
    assert answers[0] == 0.0 and abs(answers[1] - raw[1]) < 1e-3 * abs(raw[1])


def test_a_target_without_min_or_max_has_no_bounds() -> None:
    from minimlops.ml.features import _bounds

    target = {k: v for k, v in PROJECT["columns"][2].items() if k != "min"}
    assert _bounds(parse({**PROJECT, "columns": [*PROJECT["columns"][:2], target]})) is None
    assert _bounds(parse(PROJECT)) == [0.0, None]
