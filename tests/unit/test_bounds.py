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


def test_a_linear_model_of_a_years_rows_keeps_its_trend_into_january() -> None:
    """A year of daily sales with a trend: the day of the year rises with the
    days since 1970, and a ridge model split the trend between them, so in
    January (day 1 again) it answered below zero. Linear candidates give a
    date's calendar parts no weight: the trend carries on."""
    import datetime as dt

    from minimlops.ml import features
    from minimlops.ml.candidates import candidates
    from minimlops.ml.training import calendar_columns

    p = parse(
        {
            "name": "daily",
            "key": "id",
            "target": "units",
            "task": "regression",
            "columns": [
                {"name": "id", "type": "integer", "required": True, "min": 0, "max": 10**6},
                {"name": "day", "type": "date", "required": True},
                {"name": "promo", "type": "boolean", "required": True},
                {"name": "units", "type": "float", "required": True},
            ],
        }
    )
    rng = np.random.default_rng(3)
    start = dt.date(2024, 1, 1)

    def rows(first: int, n: int) -> list[dict]:
        out = []
        for i in range(first, first + n):
            promo = bool(rng.random() < 0.3)
            out.append(
                {
                    "id": i,
                    "day": start + dt.timedelta(days=i),
                    "promo": promo,
                    "units": 50 + 0.1 * i + 20 * promo + float(rng.normal(0, 3)),
                }
            )
        return out

    year, january = rows(0, 366), rows(366, 31)
    spec = features.fit_spec(iter(year), p, {})
    names = features.FeatureSet(spec, {}).names
    ignored = calendar_columns(spec, {})
    assert [names[i] for i in ignored] == ["day_year", "day_month", "day_day", "day_day_of_year"]
    fs = features.FeatureSet(spec, {})
    X, y = fs.matrix(year), np.array([r["units"] for r in year])
    Xj, yj = fs.matrix(january), np.array([r["units"] for r in january])
    (linear,) = [
        c for c in candidates("regression", 0, 366, linear_ignores=ignored) if c.family == "linear"
    ]
    fitted = linear.make().fit(X, y)
    assert type(fitted).__name__ == "Pipeline"  # served and stored as any linear model
    assert np.all(fitted[-1].coef_[list(ignored)] == 0)
    error = np.sqrt(np.mean((fitted.predict(Xj) - yj) ** 2))
    (plain,) = [c for c in candidates("regression", 0, 366) if c.family == "linear"]
    before = np.sqrt(np.mean((plain.make().fit(X, y).predict(Xj) - yj) ** 2))
    assert error < 10 < before, (error, before)


def test_the_refitted_linear_model_ignores_the_calendar_columns_of_its_own_features() -> None:
    """The served model is refitted on TRAIN and VALIDATION, whose features may
    have more one-hot slots before the date (a store TRAIN never had): the
    calendar columns it ignores are its own features', not selection's."""
    import datetime as dt

    from minimlops.ml import training
    from minimlops.ml.training import calendar_columns

    p = parse(
        {
            "name": "stores",
            "key": "id",
            "target": "units",
            "task": "regression",
            "columns": [
                {"name": "id", "type": "integer", "required": True, "min": 0, "max": 10**6},
                {"name": "store", "type": "string", "required": True},
                {"name": "day", "type": "date", "required": True},
                {"name": "units", "type": "float", "required": True},
            ],
        }
    )
    rng = np.random.default_rng(5)
    start = dt.date(2024, 1, 1)
    effect = {"a": 0.0, "b": 5.0, "c": 9.0}

    def rows(stores: str, days: range) -> list[dict]:
        return [
            {
                "id": 10 * d + i,
                "store": s,
                "day": start + dt.timedelta(days=d),
                "units": 10 + 0.1 * d + effect[s] + float(rng.normal(0, 0.2)),
            }
            for d in days
            for i, s in enumerate(stores)
        ]

    train = rows("ab", range(0, 300))
    model = training.select_and_fit(train, p, {}, folds=3, ensembles=False)
    assert model.algorithm == "ridge_regression", model.algorithm
    served = training.refit(model, train + rows("abc", range(300, 360)), p)
    names = served.features.names
    ignored = calendar_columns(served.spec, {})
    assert [names[i] for i in ignored] == ["day_year", "day_month", "day_day", "day_day_of_year"]
    assert ignored != calendar_columns(model.spec, {})  # a slot for store c came before them
    coef = served.estimator[-1].coef_
    assert np.all(coef[list(ignored)] == 0)
    assert coef[names.index("day_days_since_1970")] != 0 and coef[names.index("store=c")] != 0
