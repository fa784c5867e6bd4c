"""ingest_data on fakes: every bad-input case of the issue, duplicates, redelivery."""

from __future__ import annotations

import json

import pytest

from minimlops.domain.events import IngestionComplete, ObjectFinalized
from minimlops.services import messagebus
from minimlops.services.deps import Deps
from tests.conftest import TITANIC

HEADER = ",".join(TITANIC.column_names)
GOOD = [
    '1,0,3,"Braund, Mr. Owen Harris",male,22,1,0,A/5 21171,7.25,,S',
    '2,1,1,"Cumings, Mrs. John Bradley",female,38,1,0,PC 17599,71.2833,C85,C',
    '3,1,3,"Heikkinen, Miss. Laina",female,26,0,0,STON/O2. 3101282,7.925,,S',
]
LAND = "my-data-landing-zone"


def land(deps: Deps, name: str, data: bytes) -> list:
    info = deps.store.write_bytes(LAND, name, data)
    event = ObjectFinalized(bucket=LAND, name=name, generation=info.generation, size=info.size)
    return messagebus.handle(event, deps)


def csv_bytes(*lines: str, sep: str = "\n") -> bytes:
    return (sep.join([HEADER, *lines]) + sep).encode()


def report_of(deps: Deps, name: str) -> dict:
    return json.loads(deps.store.read_bytes(LAND, f"rejected/{name}.report.json"))


def assert_rejected(deps: Deps, name: str) -> dict:
    assert deps.warehouse.counts()["training_data"] == 0
    assert deps.store.stat(LAND, name) is None, "a bad file is moved aside"
    assert deps.store.stat(LAND, f"rejected/{name}") is not None
    (row,) = deps.warehouse.ledger()
    assert row["status"] == "rejected"
    return report_of(deps, name)


def test_good_file_loads_every_row_and_announces_it(fake_deps: Deps) -> None:
    (event,) = land(fake_deps, "t.csv", csv_bytes(*GOOD))
    assert isinstance(event, IngestionComplete) and event.rows_loaded == 3
    rows = fake_deps.warehouse.tables["training_data"]
    assert [r["PassengerId"] for r in rows] == [1, 2, 3]
    assert rows[0]["Name"] == "Braund, Mr. Owen Harris" and rows[0]["Cabin"] is None
    assert rows[1]["Fare"] == pytest.approx(71.2833)
    assert {r["split"] for r in rows} <= {"TRAIN", "VALIDATION", "TEST"}
    assert fake_deps.bus.published[0][0] == "ingestion_complete"


@pytest.mark.parametrize("variant", ["bom", "crlf", "quoted_newline", "padded"])
def test_csv_dialect_variants_load(fake_deps: Deps, variant: str) -> None:
    data = {
        "bom": b"\xef\xbb\xbf" + csv_bytes(*GOOD),
        "crlf": csv_bytes(*GOOD, sep="\r\n"),
        "quoted_newline": csv_bytes('1,0,3,"Braund,\nMr. Owen",male,22,1,0,A/5,7.25,,S'),
        "padded": csv_bytes("1, 0 ,3,Name, male ,22,1,0,T, 7.25 ,, S"),
    }[variant]
    (event,) = land(fake_deps, "v.csv", data)
    assert event.rows_loaded == data.count(b"\n") - 1 - (variant == "quoted_newline")


def test_duplicate_content_loads_once(fake_deps: Deps) -> None:
    land(fake_deps, "a.csv", csv_bytes(*GOOD))
    assert land(fake_deps, "copy-of-a.csv", csv_bytes(*GOOD)) == []
    assert fake_deps.warehouse.counts()["training_data"] == 3
    statuses = sorted(r["status"] for r in fake_deps.warehouse.ledger())
    assert statuses == ["duplicate", "loaded"]


def test_redelivered_event_loads_nothing_but_announces_again(fake_deps: Deps) -> None:
    info = fake_deps.store.write_bytes(LAND, "a.csv", csv_bytes(*GOOD))
    event = ObjectFinalized(bucket=LAND, name="a.csv", generation=info.generation)
    first = messagebus.handle(event, fake_deps)
    second = messagebus.handle(event, fake_deps)
    assert fake_deps.warehouse.counts()["training_data"] == 3
    assert first[0].ingestion_id == second[0].ingestion_id  # training dedups on it


@pytest.mark.parametrize(
    ("name", "data", "needle"),
    [
        ("empty.csv", b"", "not a readable CSV"),
        ("header.csv", (HEADER + "\n").encode(), "no data rows"),
        (
            "semicolon.csv",
            csv_bytes().replace(b",", b";") + b"1;0;3;N;male;22;1;0;T;7;;S\n",
            "the file seems separated by ';', not commas",
        ),
        (
            "missing.csv",
            b"PassengerId,Survived\n1,0\n",
            "missing columns ['Pclass', 'Sex', 'SibSp', 'Parch'] (required: add them to the file)",
        ),
        (  # keys and labels alone: where labels go instead
            "labels.csv",
            b"PassengerId,Survived\n1,0\n",
            "labels reach earlier predictions in full rows with their keys, or through "
            "POST /feedback with each prediction's uuid",
        ),
        (
            "extra.csv",
            (HEADER + ",Boat\n" + GOOD[0] + ",7\n").encode(),
            "unknown columns ['Boat'] "
            "(remove them from the file, or declare them in project.toml with required = false",
        ),
        (  # an optional column renamed in the export: say so before "declare it"
            "renamed.csv",
            (HEADER.replace("Cabin", "CabinNo") + "\n" + GOOD[0] + "\n").encode(),
            "unknown columns ['CabinNo']; 'CabinNo' looks like optional column 'Cabin' "
            "renamed: give the file its old name back (else remove them",
        ),
        (  # renamed past recognition: the absent optional column is named all the same
            "renamed_far.csv",
            (HEADER.replace("Cabin", "Deck") + "\n" + GOOD[0] + "\n").encode(),
            "unknown columns ['Deck']; optional column ['Cabin'] is not in the file: "
            "if it was renamed, give the file its old name back (else remove them",
        ),
        (
            "latin1.csv",
            csv_bytes(
                '1,0,3,"M\xfcller, Mr. J",male,22,1,0,T,7.25,,S'.encode("latin-1").decode("latin-1")
            ).replace("\xfc".encode(), b"\xfc"),
            "UTF",
        ),
        ("binary.csv", bytes(range(256)) * 64, ""),
    ],
)
def test_bad_files_are_set_aside_with_a_report(
    fake_deps: Deps, name: str, data: bytes, needle: str
) -> None:
    assert land(fake_deps, name, data) == []
    report = assert_rejected(fake_deps, name)
    assert report["file_errors"], report
    assert needle in report["file_errors"][0]


def test_numbers_written_for_people_are_refused_saying_how(fake_deps: Deps) -> None:
    """15,300 (a thousands separator) and 12,5 (a decimal comma) are refused
    as any bad number is, and the reason says which and what to write."""
    lines = [
        *GOOD,
        '4,0,3,"X, Mr. Y",male,30,0,0,T,"1,250.50",,S',
        '5,0,3,"X, Mr. Z",male,"22,5",0,0,T,7.25,,S',
        '6,0,3,"X, Mr. Q",male,x1,0,0,T,7.25,,S',
        '7,0,"1,000","X, Mr. R",male,30,0,0,T,7.25,,S',
    ]
    assert land(fake_deps, "people.csv", csv_bytes(*lines)) == []
    report = assert_rejected(fake_deps, "people.csv")
    reasons = {(e["row"], e["column"]): e["reason"] for e in report["errors"]}
    thousands = "a thousands separator? write the number without commas"
    assert reasons[(4, "Fare")] == f"not a valid FLOAT: {thousands}"
    assert reasons[(5, "Age")] == "not a valid FLOAT: a decimal comma? write a point, as in 12.5"
    assert reasons[(6, "Age")] == "not a valid FLOAT"
    assert reasons[(7, "Pclass")] == f"not a valid INTEGER: {thousands}"


def test_wrong_types_are_reported_by_row_and_column(fake_deps: Deps) -> None:
    lines = [
        *GOOD,
        '4,0,3,"X, Mr. Y",male,abc,0,0,T,7.25,,S',
        '5,0,,"X, Mr. Z",male,30,0,0,T,7.25,,S',
        '6,2,3,"X, Mr. Q",male,30,0,0,T,-1,,X',
    ]
    assert land(fake_deps, "types.csv", csv_bytes(*lines)) == []
    report = assert_rejected(fake_deps, "types.csv")
    found = {(e["row"], e["column"]) for e in report["errors"]}
    assert found == {(4, "Age"), (5, "Pclass"), (6, "Survived"), (6, "Fare"), (6, "Embarked")}
    reasons = {e["column"]: e["reason"] for e in report["errors"]}
    assert reasons["Age"] == "not a valid FLOAT"
    assert (
        "first: data row 4 (the header not counted), column Age value 'abc': not a valid FLOAT"
        in report["summary"]
    )
    assert reasons["Pclass"] == "required value is missing"
    assert report["bad_rows"] == 3 and report["rows"] == 6
    # the ledger says what to do: the limit, and where the rules are
    (entry,) = fake_deps.warehouse.ledger(source_uri=f"gs://{LAND}/types.csv")
    assert entry["status"] == "rejected"
    assert "more than MINIMLOPS_MAX_BAD_ROWS=0 allows, so nothing was loaded" in entry["message"]
    assert "set MINIMLOPS_MAX_BAD_ROWS=3 where the pipeline runs" in entry["message"]
    assert "the column's type or rule in the project file" in entry["message"]


def test_a_file_without_one_valid_row_is_not_told_to_raise_the_limit(fake_deps: Deps) -> None:
    bad = [line.replace(",male,", ",x,").replace(",female,", ",x,") for line in GOOD]
    assert land(fake_deps, "all-bad.csv", csv_bytes(*bad)) == []
    (entry,) = fake_deps.warehouse.ledger(source_uri=f"gs://{LAND}/all-bad.csv")
    assert "no row is valid, so nothing was loaded" in entry["message"]
    assert "MINIMLOPS_MAX_BAD_ROWS" not in entry["message"]


def test_a_long_bad_value_is_quoted_short_and_kept_whole_in_the_report(fake_deps: Deps) -> None:
    long = "x" * 1500
    bad = f'4,0,3,"X, Mr. Y",male,30,0,0,T,7.25,,{long}'
    assert land(fake_deps, "long.csv", csv_bytes(*GOOD, bad)) == []
    report = assert_rejected(fake_deps, "long.csv")
    assert report["errors"][0]["value"] == long
    assert f"value '{'x' * 58}…" in report["summary"] and long not in report["summary"]


def test_numbers_are_read_the_same_whichever_way_they_are_written(fake_deps: Deps) -> None:
    """Signs, padding, exponents, leading zeros and whole numbers written
    "3.0" load; NaN, infinity, 19-digit ids and 2.5 for an integer are bad rows
    named in the report (a file of clean numbers
    takes a faster path than one with padding: both must agree)."""
    lines = [
        '+1,0,+3,"A, Mr. B",male,2.2e1,007,0,T,+7.25,,S',
        '2,1,1,"C, Mrs. D",female, 38 ,1,0,T,.5,,C',
        '3.0,1,3.,"E, Miss. F",female,26.,0.00,0,T,7.,,S',
    ]  # pandas' whole floats
    (event,) = land(fake_deps, "n.csv", csv_bytes(*lines))
    rows = fake_deps.warehouse.tables["training_data"]
    assert event.rows_loaded == 3
    assert [(r["PassengerId"], r["Pclass"], r["Age"], r["SibSp"], r["Fare"]) for r in rows] == [
        (1, 3, 22.0, 7, 7.25),
        (2, 1, 38.0, 1, 0.5),
        (3, 3, 26.0, 0, 7.0),
    ]
    bad = [
        '4,0,3,"G, Mr. H",male,nan,0,0,T,7,,S',
        '5,0,3,"I, Mr. J",male,30,0,0,T,inf,,S',
        '1234567890123456789,0,3,"K, Mr. L",male,30,0,0,T,7,,S',
        '6,0,2.5,"M, Mr. N",male,30,0,0,T,7,,S',
    ]
    assert land(fake_deps, "bad-n.csv", csv_bytes(*bad)) == []
    report = report_of(fake_deps, "bad-n.csv")
    assert {(e["row"], e["column"]) for e in report["errors"]} == {
        (1, "Age"),
        (2, "Fare"),
        (3, "PassengerId"),
        (4, "Pclass"),
    }
    assert report["bad_rows"] == 4


def test_max_bad_rows_loads_the_good_rows_and_reports_the_rest(fake_deps: Deps) -> None:
    deps = Deps(**{**fake_deps.__dict__, "max_bad_rows": 1})
    lines = [*GOOD, '4,0,3,"X, Mr. Y",male,abc,0,0,T,7.25,,S']
    (event,) = land(deps, "some-bad.csv", csv_bytes(*lines))
    assert event.rows_loaded == 3
    (row,) = deps.warehouse.ledger()
    assert row["status"] == "loaded" and row["rows_rejected"] == 1
    report = json.loads(deps.store.read_bytes(LAND, "reports/some-bad.csv.report.json"))
    assert report["errors"][0]["row"] == 4


def test_a_big_bad_file_reports_every_bad_row_and_loads_nothing(fake_deps: Deps, tmp_path) -> None:
    from minimlops.generate import write_csv

    path = tmp_path / "g.csv"
    write_csv(path, 20_000, seed=3, bad_rows=250)
    assert land(fake_deps, "g.csv", path.read_bytes()) == []
    report = assert_rejected(fake_deps, "g.csv")
    assert report["bad_rows"] == 250 and report["rows"] == 20_000
    assert len(report["errors"]) == 100  # the first 100 listed, all counted


def test_objects_under_reserved_prefixes_are_ignored(fake_deps: Deps) -> None:
    assert land(fake_deps, "rejected/old.csv", csv_bytes(*GOOD)) == []
    assert fake_deps.warehouse.counts()["ingestion_ledger"] == 0


def test_a_key_twice_in_one_file_is_refused_naming_both_rows(fake_deps: Deps) -> None:
    """Which of two rows with one key would be 'newest' is not defined: refused."""
    lines = [*GOOD, '2,0,3,"Dup, Mr. A",male,40,0,0,T,7.25,,S']
    assert land(fake_deps, "dup.csv", csv_bytes(*lines)) == []
    report = assert_rejected(fake_deps, "dup.csv")
    assert "PassengerId 2 appears more than once: rows 2 and 4" in report["summary"]


@pytest.mark.parametrize("typ", ["int64", "string"])
def test_repeated_keys_across_batches_name_the_first_in_file_order(typ: str) -> None:
    """Keys are compared over the whole file, batch after batch (the check
    sorts them instead of counting them in a hash table): the message names
    the first key in the file's order that repeats, its two rows, and how
    many keys repeat."""
    import pyarrow as pa

    from minimlops.errors import SchemaError
    from minimlops.services.validate import Report, check_keys

    def keys(*values: object) -> pa.Array:
        return pa.array(
            [v if v is None or typ == "int64" else f"k{v}" for v in values], getattr(pa, typ)()
        )

    report = Report(keys=[(1, keys(9, 4, None, 7)), (5, keys(3, None, 8)), (8, keys(4, 2, 3, 9))])
    with pytest.raises(SchemaError) as caught:
        check_keys(report, "id")
    first = 9 if typ == "int64" else "k9"
    assert f"id {first!r} appears more than once: rows 1 and 11 (3 keys repeat in all)" in str(
        caught.value
    )
    check_keys(
        Report(keys=[(1, keys(1, None, None)), (4, keys(2, 3))]), "id"
    )  # nulls repeat freely


def test_a_zip_file_named_csv_says_what_it_is(fake_deps: Deps) -> None:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("train.csv", csv_bytes(*GOOD))
    assert land(fake_deps, "train.csv", buf.getvalue()) == []
    report = assert_rejected(fake_deps, "train.csv")
    assert "this is a ZIP archive, not a CSV file" in report["summary"]


def test_a_short_row_names_its_row_and_what_is_wrong(fake_deps: Deps) -> None:
    lines = [GOOD[0], "2,1,1", GOOD[2]]
    assert land(fake_deps, "short.csv", csv_bytes(*lines)) == []
    report = report_of(fake_deps, "short.csv")
    (error,) = report["errors"]
    assert error["row"] == 2 and "has 3 fields; the header has 12" in error["reason"]


def test_a_field_longer_than_a_block_says_what_to_check(fake_deps: Deps) -> None:
    from minimlops.services import validate

    huge = '4,0,3,"' + "x\n" * validate.BLOCK_SIZE + '",male,22,1,0,T,7.25,,S'
    assert land(fake_deps, "long.csv", csv_bytes(*GOOD, huge)) == []
    report = assert_rejected(fake_deps, "long.csv")
    assert "longer than 4 MB" in report["summary"] and "straddl" not in report["summary"]


def test_a_file_without_an_optional_column_loads_it_empty_and_says_so(fake_deps: Deps) -> None:
    """Every row of a file without Cabin has no cabin: loaded, and the ledger
    says which columns were not there (a renamed export looks the same)."""
    names = [n for n in TITANIC.column_names if n != "Cabin"]
    at = TITANIC.column_names.index("Cabin")
    lines = [",".join(v for i, v in enumerate(_fields(g)) if i != at) for g in GOOD]
    data = ("\n".join([",".join(names), *lines]) + "\n").encode()
    (event,) = land(fake_deps, "nocabin.csv", data)
    assert event.rows_loaded == 3
    (row,) = fake_deps.warehouse.ledger()
    assert row["message"] == "optional column ['Cabin'] not in the file: loaded as empty"
    assert all(r["Cabin"] is None for r in fake_deps.warehouse.tables["training_data"])
    (event,) = land(fake_deps, "whole.csv", csv_bytes(*GOOD[:1], GOOD[2]))
    (whole,) = [r for r in fake_deps.warehouse.ledger() if r["source_uri"].endswith("whole.csv")]
    assert whole["message"] is None


def _fields(line: str) -> list[str]:
    import csv
    import io

    (fields,) = csv.reader(io.StringIO(line))
    return [f'"{f}"' if "," in f else f for f in fields]


def test_a_word_for_no_value_that_reads_as_a_number_is_missing_in_every_batch() -> None:
    """A legacy export writes -999 for no value, and the project says so: the
    value is missing whether or not the rest of its batch parses as numbers
    (it once stayed -999 in a batch of numbers only)."""
    import pyarrow as pa

    from minimlops.domain.project import parse
    from minimlops.services.validate import Report, check_batch

    p = parse(
        {
            "name": "legacy",
            "key": "id",
            "target": "y",
            "task": "regression",
            "missing_values": ["-999", "NA"],
            "columns": [
                {"name": "id", "type": "integer", "required": True, "min": 0, "max": 1000},
                {"name": "x", "type": "float"},
                {"name": "n", "type": "integer"},
                {"name": "y", "type": "float", "required": True},
            ],
        }
    )
    for x, n in ((["-999", "1.5"], ["-999", "2"]), (["-999", "NA"], ["-999", "NA"])):
        batch = pa.record_batch({"id": ["1", "2"], "x": x, "n": n, "y": ["3.0", "4.0"]})
        typed = check_batch(batch, 1, Report(), p)
        assert typed.column("x").to_pylist()[0] is None, x
        assert typed.column("n").to_pylist()[0] is None, n
    assert typed.column("id").to_pylist() == [1, 2]  # a key is no word for no value


def test_on_the_local_backend_the_log_names_a_rejected_file_and_its_report_by_path(
    caplog: pytest.LogCaptureFixture, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person reading `minimlops up`'s log on a laptop has no gs:// to open:
    the file, where it was moved and its report are named by their path."""
    from tests.conftest import fake_deps_for

    monkeypatch.setenv("HOME", "/nonexistent-home")  # else a path under it is written ~/...

    deps = fake_deps_for(TITANIC, files=tmp_path / "buckets")
    with caplog.at_level("INFO", logger="minimlops"):
        land(deps, "bad.csv", csv_bytes(GOOD[0], GOOD[1].replace(",38,", ",old,")))
    (said,) = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    where = tmp_path / "buckets" / LAND
    assert f"{where}/bad.csv rejected: " in said, said
    assert f"moved to {where}/rejected/bad.csv, report {where}/rejected/bad.csv.report.json" in (
        said
    ), said
    assert "gs://" not in said, said
    # the paths are for people: what is stored keeps the objects' URIs (a
    # landed file's rows that label earlier predictions: feedback's source)
    deps.warehouse.tables["predictions_data"].append({"PassengerId": 1})
    land(deps, "good.csv", csv_bytes(*GOOD))
    (label,) = deps.warehouse.tables["feedback"]
    assert label["source"] == f"gs://{LAND}/good.csv", label
    stored = repr(deps.warehouse.tables)
    assert str(tmp_path) not in stored
