"""Date and timestamp columns as features and in requests: the parts a date
becomes, the same at training (matrix) and serving (vector, linear, ONNX);
requests in ISO 8601 (timestamps to UTC), a bad one a 422 naming the column;
the prediction log's DATE/TIMESTAMP columns; drift by month, weekday and
hour; the prediction page's date inputs; derived features checked on a real row."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest

from minimlops import projects
from minimlops.domain.project import ProjectError
from minimlops.entrypoints.http.fastpath import predict_answerer
from minimlops.entrypoints.http.request_models import request_models
from minimlops.entrypoints.http.stats import ServingStats
from minimlops.ml import export, features
from minimlops.ml.serving import OnnxModel
from minimlops.ml.training import select_and_fit
from tests import projects as shapes

P = shapes.orders_dates()
PARTS = ("year", "month", "day", "day_of_week", "day_of_year", "days_since_1970")


def _request(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != P.target}


def _sparse(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in _request(row).items() if P.column(k).required and k != P.key}


def _iso(row: dict[str, Any]) -> dict[str, Any]:
    """The row as a client writes it (JSON: ISO 8601 text)."""
    return orjson.loads(orjson.dumps(row))


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return shapes.orders_dates_rows(900, seed=1)


@pytest.fixture(scope="module")
def trained(rows):
    """A model fitted on the TRAIN-like rows, and its served form from the
    spec as the registry keeps it (JSON)."""
    model = select_and_fit(rows[:700], P, {}, folds=3, budget_s=3.0)
    spec = json.loads(json.dumps(model.spec))  # the spec must survive the registry's JSON
    served = OnnxModel(
        export.to_onnx(model), spec, model.algorithm, {}, linear=export.linear_form(model)
    )
    return model, served


def test_a_date_becomes_its_parts_and_a_timestamp_also_its_hour(rows) -> None:
    spec = features.fit_spec(rows, P, {})
    fs = features.FeatureSet(spec, {})
    names = fs.names
    assert [f"order_date_{p}" for p in PARTS] == [n for n in names if n.startswith("order_date")]
    assert "shipped_at_hour" in names and "order_date_hour" not in names
    # the optional timestamp's parts each get a missing indicator; the required date's none
    assert "shipped_at_month_missing" in names and "order_date_month_missing" not in names
    row = {
        "amount": 10.0,
        "order_date": dt.date(2026, 6, 20),  # a Saturday, day 171
        "shipped_at": dt.datetime(2026, 6, 21, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2))),
    }
    v = dict(zip(names, fs.vector(row), strict=True))
    assert [v[f"order_date_{p}"] for p in PARTS] == [2026, 6, 20, 5, 171, 20624]
    # a timestamp's parts are read in UTC: 23:30 at -02:00 is 01:30 the next day
    assert (v["shipped_at_day"], v["shipped_at_hour"], v["shipped_at_day_of_week"]) == (22, 1, 0)
    assert v["shipped_at_hour_missing"] == 0.0
    gone = dict(zip(names, fs.vector({**row, "shipped_at": None}), strict=True))
    fills = {c["name"]: c["fill"] for c in spec["columns"] if c["kind"] == "numeric"}
    assert gone["shipped_at_hour"] == fills["shipped_at_hour"] and gone["shipped_at_hour_missing"]
    # the typical row is JSON: ISO 8601 text, read back as the same parts
    ref = spec["reference"]
    assert isinstance(ref["order_date"], str) and isinstance(ref["shipped_at"], str)
    as_objects = {
        "order_date": dt.date.fromisoformat(ref["order_date"]),
        "shipped_at": dt.datetime.fromisoformat(ref["shipped_at"]),
    }
    assert fs.vector({**ref}) == fs.vector({**ref, **as_objects})


def test_matrix_vector_linear_and_structs_agree_on_dates(rows) -> None:
    """Training's matrix and serving's vector (dicts and the request's
    structs), and a linear model's lookups, on full and sparse rows, with
    dates as objects (training) and as decoded from JSON (requests)."""
    spec = features.fit_spec(rows[:600], P, {})
    fs = features.FeatureSet(spec, {})
    requests = [_request(r) for r in rows]
    every = requests + [_sparse(r) for r in requests[:50]]
    m = fs.matrix(every)
    assert m.shape == (len(every), fs.width) and not np.isnan(m).any()
    assert np.array_equal(m, np.array([fs.vector(r) for r in every]))
    models = request_models(P)
    structs = models.fast.rows(orjson.dumps(every), True)
    assert structs is not None, "every row takes the fast path"
    assert np.array_equal(fs.matrix(structs), m)
    assert [fs.vector(s) for s in structs] == [fs.vector(r) for r in every]
    ones = [models.fast.rows(orjson.dumps(r), False)[0] for r in every]
    assert ones == [models.one.validate_json(orjson.dumps(r)) for r in every]
    assert np.array_equal(fs.matrix(ones), m)
    assert np.array_equal(fs.matrix([_iso(r) for r in every]), m)  # ISO text reads the same
    w = np.random.default_rng(0).normal(size=fs.width)
    score = fs.linear(list(w), 0.5)
    for row in [*every[:100], *structs[-50:]]:
        assert score(row) == pytest.approx(float(np.dot(fs.vector(row), w)) + 0.5, rel=1e-12)


def test_a_date_model_trains_exports_and_serves_what_training_computes(trained, rows) -> None:
    model, served = trained
    held = [_request(r) for r in rows[700:]]
    assert export.parity(model, served, held) <= export.TOLERANCE
    singles = np.array([served.values([r])[0] for r in held])
    assert np.allclose(singles, model.output(held), rtol=1e-5, atol=1e-5)


def _answerer(served: OnnxModel, logged: list[Any]) -> Any:
    class Log:
        async def log(self, rows: list[Any]) -> None:
            logged.extend(rows)

    class Predictor:
        task, version = "binary", "1"

        def unseen(self, rows: list[Any]) -> list[Any]:
            return []

        def predict(self, people: list[Any], owned: bool) -> list[Any]:
            out = []
            for p, value in zip(people, served.values(people), strict=True):
                row = dict(p)
                row.update(probability=value, prediction=value >= 0.5, uuid="u", model_version="1")
                out.append(row)
            return out

    return predict_answerer(
        Predictor(), Log(), ServingStats(), request_models(P), max_body=1 << 22, max_batch=1000
    )


def test_one_row_and_a_batch_through_the_fast_path_answer_as_training_scores(trained, rows) -> None:
    model, served = trained
    logged: list[Any] = []
    answer = _answerer(served, logged)
    held = [_request(r) for r in rows[700:800]]
    expected = served.output(held)  # from training's objects, through the feature matrix
    assert np.allclose(expected, model.output(held), rtol=1e-5, atol=1e-5)
    status, body = asyncio.run(answer(orjson.dumps(held[0]), "application/json"))
    assert status == 200, body
    assert orjson.loads(body)["probability"] == pytest.approx(float(expected[0]), abs=1e-6)
    status, body = asyncio.run(answer(orjson.dumps(held), "application/json"))
    assert status == 200, body
    got = [a["probability"] for a in orjson.loads(body)["predictions"]]
    assert np.allclose(got, expected, rtol=0, atol=1e-6)
    # what features and the log saw: a date, and an aware datetime in UTC
    assert logged[0]["order_date"] == held[0]["order_date"]
    assert all(r["shipped_at"] is None or r["shipped_at"].tzinfo is dt.UTC for r in logged[:50])
    # a timestamp with an offset, or none (UTC), and the page's datetime-local form
    first = next(r for r in held if r["shipped_at"] is not None)
    when = first["shipped_at"]
    forms = [
        when.isoformat(),
        when.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30))).isoformat(),
        when.replace(tzinfo=None).isoformat(),
        when.strftime("%Y-%m-%dT%H:%M:%S"),
    ]
    answers = set()
    for form in forms:
        status, body = asyncio.run(
            answer(orjson.dumps({**_iso(first), "shipped_at": form}), "application/json")
        )
        assert status == 200, body
        answers.add(orjson.loads(body)["probability"])
    assert len(answers) == 1


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("order_date", "20/06/2026", "ISO 8601 date"),
        ("order_date", 1781913600, "ISO 8601 date"),
        ("order_date", "2026-02-30", "ISO 8601 date"),
        ("shipped_at", "yesterday", "ISO 8601 timestamp"),
        ("shipped_at", "2026-06-20T25:00:00", "ISO 8601 timestamp"),
    ],
)
def test_a_bad_date_is_a_422_naming_the_column_and_the_form(
    trained, rows, field: str, value: Any, expected: str
) -> None:
    _, served = trained
    logged: list[Any] = []
    answer = _answerer(served, logged)
    good = _iso(_request(rows[0]))
    for body, batch in (({**good, field: value}, False), ([good, {**good, field: value}], True)):
        status, text = asyncio.run(answer(orjson.dumps(body), "application/json"))
        assert status == 422, text
        (error,) = orjson.loads(text)["errors"]
        assert error["field"] == field and expected in error["message"], error
        assert error.get("index") == (1 if batch else None)
    assert logged == []


def test_an_optional_timestamp_left_empty_is_missing(trained, rows) -> None:
    _, served = trained
    answer = _answerer(served, [])
    good = _iso(_request(rows[0]))
    out = set()
    for value in ("", None):
        status, body = asyncio.run(
            answer(orjson.dumps({**good, "shipped_at": value}), "application/json")
        )
        assert status == 200, body
        out.add(orjson.loads(body)["probability"])
    assert len(out) == 1


def test_the_openapi_schema_says_date_and_date_time() -> None:
    props = request_models(P).one.json_schema()["properties"]
    assert props["order_date"]["format"] == "date"
    assert {"type": "string", "format": "date-time"} in props["shipped_at"]["anyOf"]


def test_the_prediction_log_lands_dates_and_timestamps_as_such(
    tmp_path: Path, trained, rows
) -> None:
    """The journal's JSON lines (dates as 2026-06-20, timestamps with Z) are
    imported into predictions_data's DATE and TIMESTAMP columns."""
    from minimlops.adapters.duckdb_warehouse import DuckDBWarehouse
    from minimlops.adapters.journal import PredictionJournal, SegmentWriter, encode
    from tests.conftest import key_of, schemas_of

    _, served = trained
    logged: list[Any] = []
    answer = _answerer(served, logged)
    held = [_request(r) for r in rows[700:710]]
    status, _ = asyncio.run(answer(orjson.dumps(held), "application/json"))
    assert status == 200
    for r in logged:
        r["created_at"] = dt.datetime(2026, 6, 20, tzinfo=dt.UTC)
    wh = DuckDBWarehouse(
        tmp_path / "w.duckdb",
        schemas_of(P),
        "ingestion_ledger",
        key=key_of(P),
        readable=(tmp_path / "journal",),
    )
    wh.ensure_tables()
    writer = SegmentWriter(tmp_path / "journal")
    writer.append(encode(logged))
    assert PredictionJournal(tmp_path / "journal", wh, "predictions_data").import_pending() == 10
    writer.close()
    table = wh.query("SELECT order_date, shipped_at FROM predictions_data")
    assert pa.types.is_date32(table.schema.field("order_date").type)
    assert pa.types.is_timestamp(table.schema.field("shipped_at").type)
    back = table.to_pylist()
    assert [r["order_date"] for r in back] == [r["order_date"] for r in held]
    assert [r["shipped_at"] for r in back] == [r["shipped_at"] for r in held]
    wh.close()


def test_drift_compares_a_dates_weekday_and_hour_not_the_calendar() -> None:
    from minimlops.services import monitor

    assert monitor.date_parts(P) == {
        "order_date_day_of_week": ("order_date", "day_of_week"),
        "shipped_at_day_of_week": ("shipped_at", "day_of_week"),
        "shipped_at_hour": ("shipped_at", "hour"),
    }
    paris = dt.timezone(dt.timedelta(hours=2))
    table = pa.table(
        {
            "order_date": pa.array([dt.date(2026, 6, 20), None]),
            "shipped_at": pa.array(
                [dt.datetime(2026, 6, 21, 1, tzinfo=paris), None], pa.timestamp("us", tz="+02:00")
            ),
        }
    )
    parts = monitor.date_parts(P)
    read = {n: monitor._drift_column(table, n, parts).to_pylist() for n in parts}
    assert read["order_date_day_of_week"] == [5, None]
    assert read["shipped_at_hour"] == [23, None] and read["shipped_at_day_of_week"] == [5, None]
    # a year later, the same months, weekdays and hours: no drift
    train = {n: monitor._counts(pa.array([6, 6, 7])) for n in ("m",)}["m"]
    later = monitor._categorical(
        "order_date_month", train, pa.array([6, 7, 6]), monitor.MonitorConfig()
    )
    assert later["status"] == "ok"


def test_a_date_parts_drift_names_whose_importance_it_shows(rows) -> None:
    """The drift table compares a date's weekday, but the importance share
    beside it is the whole date's (its trend and season parts too): said so."""
    from minimlops.services import monitor
    from minimlops.services.predict import Predictor
    from minimlops.services.tables import arrow_schema
    from minimlops.services.train import registry_of
    from tests.conftest import fake_deps_for
    from tests.unit.test_projects import _land_and_train

    deps = fake_deps_for(P, cv_folds=3)
    _land_and_train(deps, "orders.csv", pa.Table.from_pylist(rows))
    registry = registry_of(deps)
    predictor = Predictor(registry, deps.now, P)
    predictor.refresh()
    logged = predictor.predict([_request(r) for r in rows[:200]])
    schema = arrow_schema("predictions_data", P)
    deps.warehouse.append(deps.names.predictions_table, pa.Table.from_pylist(logged, schema=schema))
    report = monitor.drift(deps, registry, monitor.MonitorConfig(drift_min_rows=100))
    by = {f["feature"]: f for f in report["features"]}
    assert by["order_date_day_of_week"]["importance_of"] == "order_date"
    assert by["shipped_at_hour"]["importance_of"] == "shipped_at"
    assert all("importance_of" not in f for n, f in by.items() if n in P.column_names)


def test_typical_row_gives_dates_and_a_derived_feature_is_checked_on_a_real_row(
    tmp_path: Path,
) -> None:
    """The issue: `int(row["order_date"][5:7])` on a string column was refused
    at start, as the typical row fed it "x"; given a real row it is not."""
    typical = projects.typical_row(P)
    assert type(typical["order_date"]) is dt.date
    assert isinstance(typical["shipped_at"], dt.datetime) and typical["shipped_at"].tzinfo is dt.UTC
    (tmp_path / "derived.py").write_text(
        textwrap.dedent(
            """
            def month(row):
                return int(row["order_text"][5:7])

            def weekend(row):
                return row["order_date"].weekday() >= 5
            """
        )
    )
    data = {
        **shapes.ORDERS_DATES,
        "name": "orders_text",
        "columns": [
            *shapes.ORDERS_DATES["columns"],
            {"name": "order_text", "type": "string", "required": True},
        ],
        "derived": [
            {"name": "month", "type": "integer", "inputs": ["order_text"]},
            {"name": "weekend", "type": "boolean", "inputs": ["order_date"]},
        ],
        "derived_module": "derived.py",
    }
    p = projects.from_dict(data, str(tmp_path))
    with pytest.raises(ProjectError, match="'month' raises"):
        projects.check_derived(p)
    # a champion's typical row, as its spec keeps it (JSON: dates as text)
    reference = {"amount": 50.0, "order_date": "2026-06-20", "order_text": "2026-06-20"}
    projects.check_derived(p, rows=[reference])
    # load passes the rows on (the caller that has a champion gives its typical row)
    (tmp_path / "project.toml").write_text(_toml(data))
    with pytest.raises(ProjectError, match="'month' raises"):
        projects.load(tmp_path)
    assert projects.load(tmp_path, rows=[reference]).name == "orders_text"


def _toml(data: dict[str, Any]) -> str:
    """A project file of plain data (strings, numbers, booleans, lists, tables)."""
    value = json.dumps  # JSON's strings, numbers and lists are TOML's
    lines = [
        f"{k} = {value(v)}"
        for k, v in data.items()
        if not isinstance(v, list) or not v or not isinstance(v[0], dict)
    ]
    for table in ("columns", "derived"):
        for item in data.get(table, []):
            lines.append(f"[[{table}]]")
            lines += [f"{k} = {value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_prediction_page_shows_date_and_datetime_local_inputs(tmp_path: Path) -> None:
    """The page's field() for a date and a timestamp column, run in node with
    a minimal document: a date input with the typical day, a datetime-local
    one with the typical time in UTC."""
    page = Path(projects.__file__).parent / "web" / "predict.js"
    script = tmp_path / "run.js"
    script.write_text(
        textwrap.dedent(
            """
            const made = [];
            function node(tag) {
              const n = { tag, attrs: {}, children: [], dataset: {},
                setAttribute(k, v) { this.attrs[k] = String(v); },
                append(...c) { this.children.push(...c); },
                addEventListener() {} };
              made.push(n);
              return n;
            }
            global.document = { createElement: node, getElementById: () => node("x") };
            global.call = () => new Promise(() => {});
            require("vm").runInThisContext(require("fs").readFileSync(process.argv[2], "utf8"));
            const inputs = (col) => field(col).children.filter(c => c.tag === "input")
              .map(c => c.attrs);
            console.log(JSON.stringify([
              inputs({ name: "order_date", type: "date", required: true, default: "2026-06-20" }),
              inputs({ name: "shipped_at", type: "timestamp", required: false,
                       default: "2026-06-21T01:30:00+02:00" }),
            ]));
            """
        )
    )
    out = subprocess.run(
        ["node", str(script), str(page)], capture_output=True, text=True, check=True, timeout=60
    )
    (date_input,), (time_input,) = json.loads(out.stdout.strip().splitlines()[-1])
    assert date_input["type"] == "date" and date_input["value"] == "2026-06-20"
    assert time_input["type"] == "datetime-local" and time_input["value"] == "2026-06-20T23:30:00"


def test_a_date_far_past_the_fitted_ones_is_answered_and_said(trained, rows) -> None:
    """A date more than the fitted dates' whole span after the latest (or
    before the earliest) is said, as dates, with the span the model learnt
    from, far before and far after apart; a row at a time and in a batch's
    feature matrix alike, whether the date came as a date, as ISO text or in
    a request's struct, and a timestamp by its day. One half a span past the
    last fitted day (the next rows of a time-ordered table) is not."""
    from minimlops.services.predict import Predictor

    _, served = trained
    fs = served.features
    (ranged,) = [r for r in fs.ranges if r[0] == "order_date"]
    (stamped,) = [r for r in fs.ranges if r[0] == "shipped_at"]
    lo, hi = (dt.date(1970, 1, 1) + dt.timedelta(days=int(d)) for d in ranged[2:4])
    assert (lo, hi) == (
        min(r["order_date"] for r in rows[:700]),
        max(r["order_date"] for r in rows[:700]),
    )
    span = dt.timedelta(days=(hi - lo).days)
    later, near, earlier = hi + span * 1.25, hi + span / 2, lo - span * 1.25
    shipped = dt.datetime.combine(hi + span * 3, dt.time(5), dt.UTC)
    held = [_request(r) for r in rows[700:800]]  # more rows than a batch reads one by one
    batch = [dict(r) for r in held]
    batch[3]["order_date"] = batch[40]["order_date"] = later
    batch[5]["order_date"] = earlier
    batch[7]["order_date"] = batch[60]["order_date"] = near
    batch[9]["shipped_at"] = shipped
    expected = [
        ("order_date", earlier, 5, 1, ranged[2], ranged[3], False),
        ("order_date", later, 3, 2, ranged[2], ranged[3], True),
        ("shipped_at", shipped, 9, 1, stamped[2], stamped[3], True),
    ]
    assert fs.far(batch) == expected
    fs.matrix(batch)
    assert fs.far_found(len(batch)) == expected and fs.far_found(len(batch)) is None  # taken
    structs = request_models(P).fast.rows(orjson.dumps(batch), True)
    assert fs.far(structs) == expected == (fs.matrix(structs), fs.far_found(len(structs)))[1]
    iso = fs.far([_iso(r) for r in batch])  # as a client writes them: ISO text
    assert [(f[0], f[2], f[3], f[6]) for f in iso] == [(f[0], f[2], f[3], f[6]) for f in expected]
    # the answer's words: dates, through the predictor; far before and after apart
    predictor = Predictor(None, lambda: dt.datetime.now(dt.UTC), P)  # type: ignore[arg-type]
    predictor.current = ("1", served)
    trained_on = f"the model was trained on ({lo.isoformat()} to {hi.isoformat()})"
    for people in (batch, batch[:10]):  # the batch's matrix, and row by row
        said = predictor.unseen(predictor.predict([dict(r) for r in people], owned=True))
        assert said[:2] == [
            {
                "field": "order_date",
                "message": f"order_date {earlier.isoformat()} is far before the dates "
                f"{trained_on}: its answer there is an extrapolation",
                "index": 5,
                "rows": 1,
            },
            {
                "field": "order_date",
                "message": f"order_date {later.isoformat()} is far after the dates "
                f"{trained_on}: its answer there is an extrapolation",
                "index": 3,
                "rows": 2 if len(people) > 40 else 1,
            },
        ]
        (stamp,) = said[2:]
        assert stamp["message"].startswith(f"shipped_at {shipped.isoformat()} is far after the")
    assert predictor.unseen(predictor.predict([{**held[0], "order_date": near}])) == []
