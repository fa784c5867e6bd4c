"""A key made of other columns (``from``): a row is known by a date and a store.

The same row gets the same key in every file and in a prediction request, so a
corrected row replaces the old one, two rows with the same parts in one file are
refused by their row numbers, and labels landing in a later file label the
predictions made for their rows.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from minimlops.domain import keys
from minimlops.domain.events import ObjectFinalized
from minimlops.domain.project import ProjectError, parse
from minimlops.services import messagebus
from minimlops.services.content_keys import joined_keys
from minimlops.services.predict import Predictor
from minimlops.services.train import registry_of
from tests.conftest import fake_deps_for

LAND = "my-data-landing-zone"
SALES = {
    "name": "sales",
    "key": "sale_key",
    "target": "units",
    "task": "regression",
    "columns": [
        {"name": "sale_key", "type": "string", "required": True, "from": ["sold_on", "store"]},
        {"name": "sold_on", "type": "date", "required": True},
        {"name": "store", "type": "string", "required": True},
        {"name": "price", "type": "float", "required": True},
        {"name": "promo", "type": "boolean"},
        {"name": "units", "type": "float", "required": True},
    ],
}
STORES = [f"s{i}" for i in range(12)] + ["north|east", "back\\slash"]


def sales(days: int, start: dt.date = dt.date(2026, 1, 1), seed: int = 0) -> pa.Table:
    """Every store on every day: a price, a promotion, the units sold."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(days):
        for i, store in enumerate(STORES):
            price = float(rng.uniform(1, 10))
            promo = bool(rng.random() < 0.3)
            units = 50 - 3 * price + 10 * promo + i + float(rng.normal(0, 2))
            rows.append(
                {
                    "sold_on": start + dt.timedelta(days=d),
                    "store": store,
                    "price": price,
                    "promo": promo,
                    "units": units,
                }
            )
    return pa.Table.from_pylist(rows)


def csv(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink)
    return sink.getvalue().to_pybytes()


def land(deps, name: str, table: pa.Table) -> list:
    info = deps.store.write_bytes(LAND, name, csv(table))
    return messagebus.handle(
        ObjectFinalized(bucket=LAND, name=name, generation=info.generation, size=info.size), deps
    )


def test_a_file_without_the_key_gets_its_parts_joined_and_a_corrected_row_replaces_the_old():
    p = parse(SALES)
    deps = fake_deps_for(p)
    (done,) = land(deps, "jan.csv", sales(3))
    assert done.rows_loaded == 3 * len(STORES)
    rows = deps.warehouse.tables["training_data"]
    by_key = {r["sale_key"]: r for r in rows}
    assert len(by_key) == len(rows)
    assert by_key["2026-01-01|s0"]["store"] == "s0"
    # a separator or a backslash in a part is escaped: keys stay apart
    assert "2026-01-02|north\\|east" in by_key and "2026-01-02|back\\\\slash" in by_key
    # a corrected row for the same day and store, in a later file, replaces it
    fixed = sales(1, seed=9).slice(0, 1)
    fixed = fixed.set_column(fixed.schema.get_field_index("units"), "units", pa.array([999.0]))
    land(deps, "fix.csv", fixed)
    newest = deps.warehouse.latest_rows("training_data").to_pylist()
    assert [r["units"] for r in newest if r["sale_key"] == "2026-01-01|s0"] == [999.0]
    assert len(newest) == 3 * len(STORES)


def test_two_rows_with_the_same_parts_in_one_file_are_refused_by_their_rows():
    p = parse(SALES)
    deps = fake_deps_for(p)
    table = sales(2)
    doubled = pa.concat_tables([table, table.slice(5, 1)])
    assert land(deps, "twice.csv", doubled) == []
    assert deps.warehouse.counts()["training_data"] == 0
    (row,) = deps.warehouse.ledger()
    assert row["status"] == "rejected" and row["rows_loaded"] == 0
    assert "two rows have the same sold_on and store" in row["message"]
    assert f"rows 6 and {doubled.num_rows}" in row["message"]


def test_a_file_that_carries_the_key_gets_it_made_of_its_parts_all_the_same():
    """A key made of columns is always theirs: a file's own values of it (an id
    of another kind) would never meet the keys requests are logged with."""
    p = parse(SALES)
    deps = fake_deps_for(p)
    table = sales(1)
    own = pa.array([f"id-{i}" for i in range(table.num_rows)])
    land(deps, "own.csv", table.add_column(0, "sale_key", own))
    assert sorted(r["sale_key"] for r in deps.warehouse.tables["training_data"]) == sorted(
        joined_keys(table, ["sold_on", "store"]).to_pylist()
    )


def test_a_prediction_gets_the_key_its_row_has_when_it_lands_and_its_label_counts():
    """Requests without the key (one row, a batch of structs, a batch pydantic
    reads) are logged with the key ingestion gives the same row; when the row
    lands with its label, the prediction is labelled and known as landed."""
    from minimlops.entrypoints.http.fastpath import predict_answerer
    from minimlops.entrypoints.http.request_models import request_models
    from minimlops.entrypoints.http.stats import ServingStats

    p = parse(SALES)
    deps = fake_deps_for(p, cv_folds=3)
    for e in land(deps, "history.csv", sales(40)):
        messagebus.handle(e, deps)
    predictor = Predictor(registry_of(deps), deps.now, p)
    assert predictor.refresh()
    logged: list = []

    class Log:
        async def log(self, rows):
            logged.extend(dict(r) for r in rows)

    answer = predict_answerer(
        predictor, Log(), ServingStats(), request_models(p), max_body=1 << 20, max_batch=100
    )
    later = sales(1, start=dt.date(2026, 3, 1), seed=5)
    asks = [{k: v for k, v in r.items() if k != "units"} for r in later.to_pylist()]
    bodies = [{**a, "sold_on": a["sold_on"].isoformat()} for a in asks]
    assert asyncio.run(answer(orjson.dumps(bodies[0]), "application/json"))[0] == 200
    assert asyncio.run(answer(orjson.dumps(bodies[1:4]), "application/json"))[0] == 200
    # an unknown field in a batch sends it through pydantic's dicts
    assert asyncio.run(answer(orjson.dumps([{**bodies[4], "x": 1}]), "application/json"))[0] == 200
    expected = joined_keys(later, ["sold_on", "store"]).to_pylist()[:5]
    assert (
        [r["sale_key"] for r in logged]
        == expected
        == [keys.of_row(a, ["sold_on", "store"]) for a in asks[:5]]
    )
    # a key the request gives is the parts' too
    made = keys.of_row(asks[5], ["sold_on", "store"])
    assert predictor.predict([{**asks[5], "sale_key": "mine"}])[0]["sale_key"] == made
    deps.warehouse.append("predictions_data", pa.Table.from_pylist(logged))
    land(deps, "march.csv", later)
    labelled = deps.warehouse.labelled_predictions(
        "predictions_data", "feedback", landed_in="training_data"
    ).to_pylist()
    assert sorted(r["sale_key"] for r in labelled) == sorted(expected)
    assert all(r["landed"] for r in labelled)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"from": ["sold_on"]}, "two or more columns"),
        ({"from": ["sold_on", "price"]}, "'price' is a float column"),
        ({"from": ["sold_on", "stor"]}, "did you mean 'store'"),
        ({"from": ["sold_on", "units"]}, "'units' is the target itself"),
        ({"from": ["sold_on", "promo"]}, "'promo' is optional"),
        ({"from": ["sold_on", "sold_on"]}, "names 'sold_on' twice"),
        ({"generated": False}, "drop generated = false"),
        ({"type": "integer", "min": 0, "max": 10}, "a key made from other columns is a string"),
    ],
)
def test_a_wrong_key_made_of_columns_is_refused_naming_what_is_wrong(change, message):
    data = {**SALES, "columns": [{**SALES["columns"][0], **change}, *SALES["columns"][1:]]}
    with pytest.raises(ProjectError, match=message):
        parse(data)


def test_only_the_key_is_made_of_columns_and_the_project_file_says_from():
    data = {
        **SALES,
        "columns": [
            *SALES["columns"][:3],
            {**SALES["columns"][3], "from": ["a", "b"]},
            *SALES["columns"][4:],
        ],
    }
    with pytest.raises(ProjectError, match="'price'.from: only the key column"):
        parse(data)
    written = parse(SALES).to_dict()["columns"][0]
    assert written["from"] == ["sold_on", "store"] and "parts" not in written
    assert parse(parse(SALES).to_dict()).key_parts == ("sold_on", "store")


@pytest.mark.parametrize(
    ("values", "arrow"),
    [
        (["a|b", "c"], [pa.string(), pa.string()]),
        (["a", "b|c"], [pa.string(), pa.string()]),
        (["x\\", "|y"], [pa.string(), pa.string()]),
        ([-12, True], [pa.int64(), pa.bool_()]),
        ([dt.date(1999, 12, 31), 2**62], [pa.date32(), pa.int64()]),
        (
            [dt.datetime(2026, 6, 20, 14, 5, tzinfo=dt.UTC), "é"],
            [pa.timestamp("us", tz="UTC"), pa.string()],
        ),
        (
            [dt.datetime(999, 5, 5, 1, 2, 3, tzinfo=dt.UTC), dt.date(999, 5, 5)],
            [pa.timestamp("us", tz="UTC"), pa.date32()],
        ),
        (
            [dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC), False],
            [pa.timestamp("us", tz="UTC"), pa.bool_()],
        ),
        (
            [
                dt.datetime(
                    2026, 6, 20, 16, 5, 0, 120000, tzinfo=dt.timezone(dt.timedelta(hours=2))
                ),
                1,
            ],
            [pa.timestamp("us", tz="UTC"), pa.int64()],
        ),
    ],
)
def test_a_files_keys_and_a_requests_are_written_alike(values, arrow):
    names = ["a", "b"]
    table = pa.table({n: pa.array([v], t) for n, v, t in zip(names, values, arrow, strict=True)})
    (made,) = joined_keys(table, names).to_pylist()
    assert made == keys.joined(values)
    assert keys.joined([values[0], None]) is None


def test_parts_that_differ_only_by_the_separator_get_different_keys():
    assert keys.joined(["a|b", "c"]) != keys.joined(["a", "b|c"])
    assert keys.joined(["a\\", "|b"]) != keys.joined(["a\\|", "b"])


def test_a_home_whose_rows_were_keyed_another_way_refuses_the_new_key():
    """Rows landed under a hash of their values keep those keys: keying them by
    their parts from now on would load each of them again beside the old."""
    from minimlops.domain.project import compatible

    hashed = {**SALES, "columns": [{**SALES["columns"][0], "from": None}, *SALES["columns"][1:]]}
    hashed["columns"][0] = {k: v for k, v in hashed["columns"][0].items() if k != "from"} | {
        "generated": True
    }
    (problem,) = compatible(parse(hashed), parse(SALES))
    assert problem.startswith("key 'sale_key' is made another way (a hash of each row's values")
    assert "sold_on and store joined now" in problem
    assert compatible(parse(SALES), parse(SALES)) == []
