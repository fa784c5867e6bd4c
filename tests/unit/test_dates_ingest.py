"""Date and timestamp columns through ingestion: ISO 8601 (with or without an
offset), a declared strptime format, blanks, the project's missing-value words
and bad values, landed into DuckDB as DATE and TIMESTAMPTZ."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from minimlops.adapters.duckdb_warehouse import DuckDBWarehouse
from minimlops.domain.project import parse
from minimlops.services.deps import Deps
from minimlops.services.validate import parse_times
from tests import projects as shapes
from tests.conftest import fake_deps_for, key_of, schemas_of
from tests.unit.test_ingest import land, report_of

HEADER = "event_id,converted,day,signed_on,seen_at,amount"


@pytest.fixture
def duck_deps(tmp_path: Path):
    """Deps on the fakes, but the warehouse is DuckDB's, for the events project."""
    p = shapes.events()
    wh = DuckDBWarehouse(tmp_path / "w.duckdb", schemas_of(p), "ingestion_ledger", key=key_of(p))
    wh.ensure_tables()
    yield Deps(**{**fake_deps_for(p).__dict__, "warehouse": wh})
    wh.close()


def csv(*lines: str) -> bytes:
    return ("\n".join([HEADER, *lines]) + "\n").encode()


def test_dates_and_timestamps_load_into_duckdb_as_dates_and_instants(duck_deps: Deps) -> None:
    lines = [
        "1,true,2026-06-20,20/06/2026,2026-06-20T14:05:00,1.5",
        "2,false,2026-06-21,1/2/2024,2026-06-20 14:05:00.250Z,2",
        "3,true, 2024-02-29 ,29/02/2024,2026-06-20T14:05:00+02:00,3",
        "4,false,2026-06-22 00:00:00,,2026-06-20T23:30:00-05:30,4",
        "5,true,2026-06-23,,,5",
    ]
    (event,) = land(duck_deps, "e.csv", csv(*lines))
    assert event.rows_loaded == 5
    types = duck_deps.warehouse.query(
        "SELECT typeof(day) AS d, typeof(signed_on) AS s, typeof(seen_at) AS t "
        "FROM training_data LIMIT 1"
    ).to_pylist()
    assert types == [{"d": "DATE", "s": "DATE", "t": "TIMESTAMP WITH TIME ZONE"}]
    rows = duck_deps.warehouse.read("training_data").sort_by("event_id").to_pylist()
    assert [r["day"] for r in rows] == [
        date(2026, 6, 20),
        date(2026, 6, 21),
        date(2024, 2, 29),
        date(2026, 6, 22),
        date(2026, 6, 23),
    ]
    assert [r["signed_on"] for r in rows] == [
        date(2026, 6, 20),
        date(2024, 2, 1),
        date(2024, 2, 29),
        None,
        None,
    ]
    utc = [r["seen_at"] for r in rows]
    assert utc == [
        datetime(2026, 6, 20, 14, 5, tzinfo=UTC),  # no offset: read as UTC
        datetime(2026, 6, 20, 14, 5, 0, 250000, tzinfo=UTC),
        datetime(2026, 6, 20, 12, 5, tzinfo=UTC),  # +02:00, converted
        datetime(2026, 6, 21, 5, 0, tzinfo=UTC),  # -05:30, converted
        None,
    ]


def test_bad_dates_and_timestamps_are_bad_rows_named_by_row_column_value_and_reason(
    duck_deps: Deps,
) -> None:
    lines = [
        "1,true,2026-06-20,20/06/2026,2026-06-20T14:05:00,1",
        "2,true,2026-02-30,,,1",  # no such day
        "3,true,20/06/2026,,,1",  # not ISO
        "4,true,2026-06-20,2026-06-20,,1",  # not in the declared format
        "5,true,2026-06-20,31/04/2026,,1",  # no 31 April, never 1 May
        "6,true,2026-06-20,,yesterday,1",
        "7,true,2026-06-20,,2026-06-20T25:00:00,1",
        "8,true,,,,1",  # required, blank
        "9,true,2026-06-20T10:30:00,,,1",  # a date with a time that is not midnight
        "10,true,0000-01-01,,,1",  # before BigQuery's first year
    ]
    assert land(duck_deps, "bad.csv", csv(*lines)) == []
    report = report_of(duck_deps, "bad.csv")
    found = {(e["row"], e["column"], e["value"], e["reason"]) for e in report["errors"]}
    ts = (
        "not a timestamp (expected YYYY-MM-DD HH:MM[:SS[.ffffff]], "
        "optionally ending in Z or an offset such as +02:00)"
    )
    day = (  # and how to read another form
        "not a date (expected YYYY-MM-DD; a file that writes dates otherwise declares "
        'the column\'s format, as format = "%d/%m/%Y")'
    )
    assert found == {
        (2, "day", "2026-02-30", day),
        (3, "day", "20/06/2026", day),
        (4, "signed_on", "2026-06-20", "not a date in the format %d/%m/%Y"),
        (5, "signed_on", "31/04/2026", "not a date in the format %d/%m/%Y"),
        (6, "seen_at", "yesterday", ts),
        (7, "seen_at", "2026-06-20T25:00:00", ts),
        (8, "day", None, "required value is missing"),
        (9, "day", "2026-06-20T10:30:00", day),
        (10, "day", "0000-01-01", "outside the years 0001 to 9999"),
    }
    assert report["bad_rows"] == 9 and report["rows"] == 10
    assert (
        "first: data row 2 (the header not counted), column day value '2026-02-30': not a date (expected YYYY-MM-DD;"
        in report["summary"]
    )


def test_missing_value_words_are_null_in_date_columns() -> None:
    p = parse({**shapes.EVENTS, "missing_values": ["NA", "?"]})
    deps = fake_deps_for(p)
    (event,) = land(deps, "na.csv", csv("1,true,2026-06-20,NA,?,1", "2,false,2026-06-21,?,NA,2"))
    assert event.rows_loaded == 2
    rows = deps.warehouse.tables["training_data"]
    assert [(r["signed_on"], r["seen_at"]) for r in rows] == [(None, None), (None, None)]
    bad = land(deps, "na-day.csv", csv("3,true,NA,,,1"))
    assert bad == []
    (error,) = report_of(deps, "na-day.csv")["errors"]
    assert (error["column"], error["reason"]) == ("day", "required value is missing")


def test_a_generated_file_of_the_project_loads_every_row_and_its_bad_ones_are_counted(
    duck_deps: Deps, tmp_path: Path
) -> None:
    from minimlops.generate import write_project_csv

    p = duck_deps.project
    path = tmp_path / "g.csv"
    write_project_csv(p, path, 2_000, seed=5)
    text = path.read_text()  # the declared format, and ISO 8601
    assert re.search(r',"?\d{2}/\d{2}/\d{4}"?,', text)
    assert re.search(r',"?\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z"?,', text)
    (event,) = land(duck_deps, "g.csv", path.read_bytes())
    assert event.rows_loaded == 2_000
    expected = shapes.rows(p, 2_000, seed=5)
    got = duck_deps.warehouse.read("training_data").sort_by("event_id")
    for column in ("day", "signed_on", "seen_at"):  # timestamps are written in whole seconds
        assert got.column(column).to_pylist() == expected.column(column).to_pylist(), column
    bad = tmp_path / "b.csv"
    planted = write_project_csv(p, bad, 500, seed=6, bad_rows=40, start_id=10_000)
    assert land(duck_deps, "b.csv", bad.read_bytes()) == []
    assert report_of(duck_deps, "b.csv")["bad_rows"] == planted == 40


PLUS2 = timezone(timedelta(hours=2))


@pytest.mark.parametrize(
    ("values", "bq_type", "fmt", "expected"),
    [
        (
            ["2026-06-20", "2024-02-29", None],
            "DATE",
            None,
            [date(2026, 6, 20), date(2024, 2, 29), None],
        ),
        (
            ["2026-06-20", "2026-06-20 00:00", "2026-06-20T00:00:00.000"],
            "DATE",
            None,
            [date(2026, 6, 20)] * 3,
        ),
        (["2026-02-29", "2026-6-2", "2026-06-20T00:00Z"], "DATE", None, [None, None, None]),
        (
            ["2026-06-20T14:05", "2026-06-20T14:05:00.123456789", "2026-06-20T14"],
            "TIMESTAMP",
            None,
            [
                datetime(2026, 6, 20, 14, 5, tzinfo=UTC),
                datetime(2026, 6, 20, 14, 5, 0, 123456, tzinfo=UTC),
                datetime(2026, 6, 20, 14, tzinfo=UTC),
            ],
        ),
        (
            ["2026-06-20T14:05:00+02", "2026-06-20T14:05:00+0200", "2026-06-20 14:05:00+02:00"],
            "TIMESTAMP",
            None,
            [datetime(2026, 6, 20, 14, 5, tzinfo=PLUS2)] * 3,
        ),
        (
            ["2026-06-20", "2026-06-20T14:05:00Z"],
            "TIMESTAMP",
            None,
            [datetime(2026, 6, 20, tzinfo=UTC), datetime(2026, 6, 20, 14, 5, tzinfo=UTC)],
        ),
        (
            ["2026-06-20Z", "2026-06-20T14:05:00+24:00", "2026-06-20t14:05"],
            "TIMESTAMP",
            None,
            [None] * 3,
        ),
        (
            ["20 Jun 2026", "30 June 2026", "31 Jun 2026"],
            "DATE",
            "%d %b %Y",
            [date(2026, 6, 20), date(2026, 6, 30), None],
        ),
        (
            ["20/06/26", "29/02/00", "29/02/99"],
            "DATE",
            "%d/%m/%y",
            [date(2026, 6, 20), date(2000, 2, 29), None],
        ),
        (
            ["20/06/2026 14:05 +0200", "20/06/2026 14:05 Z", "20/06/2026 14:05"],
            "TIMESTAMP",
            "%d/%m/%Y %H:%M %z",
            [
                datetime(2026, 6, 20, 14, 5, tzinfo=PLUS2),
                datetime(2026, 6, 20, 14, 5, tzinfo=UTC),
                None,
            ],
        ),
        (
            ["06/20/2026 02:05 PM"],
            "TIMESTAMP",
            "%m/%d/%Y %I:%M %p",
            [datetime(2026, 6, 20, 14, 5, tzinfo=UTC)],
        ),
    ],
)
def test_parse_times(values, bq_type, fmt, expected) -> None:
    typed, unread, outside = parse_times(pa.array(values, pa.string()), bq_type, fmt)
    assert typed.to_pylist() == expected
    assert unread.to_pylist() == [
        v is not None and e is None for v, e in zip(values, expected, strict=True)
    ]
    assert not any(outside.to_pylist())


def test_slices_read_alone_agree_with_the_whole(monkeypatch) -> None:
    """ISO values are cast a slice at a time; a slice with a bad value, or
    with offsets on some values only, is read value by value: the same result."""
    from minimlops.services import validate

    values = [
        "2026-06-20T14:05:00",
        "2026-06-20T14:05:00+02:00",
        None,
        "bad",
        "2026-06-20 14:05:00.5Z",
        "2026-06-21",
        "2026-02-30T00:00",
        "2026-06-20T14:05:00.1234567",
        "2026-06-22T01:00:00-01:00",
    ] * 3
    whole = parse_times(pa.array(values), "TIMESTAMP")
    monkeypatch.setattr(validate, "TIME_SLICE", 4)
    sliced = parse_times(pa.array(values), "TIMESTAMP")
    assert [a.to_pylist() for a in sliced] == [a.to_pylist() for a in whole]
    assert whole[1].to_pylist() == [v in ("bad", "2026-02-30T00:00") for v in values]
