"""`minimlops init`: a project drafted from a CSV file, for data sets of every
shape; a file with no key gets a generated one and lands as it is."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from minimlops import infer, projects
from minimlops.domain.events import ObjectFinalized
from minimlops.domain.project import ProjectError
from minimlops.entrypoints.cli.project import _toml
from minimlops.generate import write_csv, write_project_csv
from minimlops.services import messagebus
from tests import projects as shapes
from tests.conftest import fake_deps_for

LAND = "my-data-landing-zone"


def _drafted(path: Path, target: str, **options) -> tuple[infer.Draft, object]:
    """The draft and the project its file parses back to (as `init` checks)."""
    d = infer.draft(path, target, **options)
    return d, projects.from_dict(tomllib.loads(_toml(d.data, d.checks)), str(path.parent))


@pytest.mark.parametrize("name", shapes.NAMES)
def test_init_drafts_the_task_key_and_types_of_every_example(tmp_path: Path, name: str) -> None:
    p = shapes.load(name)
    data = tmp_path / f"{name}.csv"
    write_project_csv(p, data, 1500, seed=3)
    draft, drafted = _drafted(data, p.target)
    assert (drafted.task, drafted.key, drafted.target) == (p.task, p.key, p.target)
    assert drafted.positive_class == p.positive_class
    declared = {c.name: c.type for c in p.columns}
    assert {c.name: c.type for c in drafted.columns} == declared
    assert any(line.startswith(f"task: {p.task}") for line in draft.decisions)


def test_a_file_without_a_key_gets_a_generated_one_and_lands_as_it_is(tmp_path: Path) -> None:
    """No column is unique: the key is generated at ingestion from each row's
    values, so the user's files land unchanged; a later file with new rows adds
    them, and a cumulative export (the old rows again, and new ones) does not
    load its old rows twice."""
    p = shapes.load("diabetes")
    full = tmp_path / "full.csv"
    write_project_csv(p, full, 900, seed=2)
    table = pacsv.read_csv(full).drop_columns([p.key])
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    pacsv.write_csv(table.slice(0, 600), first)
    pacsv.write_csv(table.slice(600, 200), second)
    draft, drafted = _drafted(first, p.target)
    assert drafted.key == "row_id" and drafted.key_column.generated
    assert drafted.key not in drafted.features
    assert any("land your files as they are" in line for line in draft.decisions)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["first.csv", "full.csv", "second.csv"]

    deps = fake_deps_for(drafted)

    def land(f: Path) -> None:
        info = deps.store.write_bytes(LAND, f.name, f.read_bytes())
        (done,) = messagebus.handle(ObjectFinalized(LAND, f.name, info.generation, info.size), deps)
        assert done.rows_loaded == pacsv.read_csv(f).num_rows

    for f in (first, second):
        land(f)
    newest = deps.warehouse.latest_rows("training_data")
    keys = newest.column("row_id").to_pylist()
    assert newest.num_rows == 800 and len(set(keys)) == 800
    assert all(re.fullmatch(r"[0-9a-f]{32}-1", k) for k in keys)
    splits = dict(zip(keys, newest.column("split").to_pylist(), strict=True))
    assert set(splits.values()) == {"TRAIN", "VALIDATION", "TEST"}

    # every row so far, in another order, and 100 new ones: 100 rows more, no
    # row in two splits
    cumulative = tmp_path / "cumulative.csv"
    pacsv.write_csv(pa.concat_tables([table.slice(600), table.slice(0, 600)]), cumulative)
    land(cumulative)
    newest = deps.warehouse.latest_rows("training_data")
    assert newest.num_rows == 900
    row_ids, row_splits = newest.column("row_id").to_pylist(), newest.column("split").to_pylist()
    again = dict(zip(row_ids, row_splits, strict=True))
    assert all(again[k] == s for k, s in splits.items())

    # a row twice in a file is two rows (the key counts its occurrences)
    twice = tmp_path / "twice.csv"
    pacsv.write_csv(pa.concat_tables([table.slice(0, 1)] * 3), twice)
    land(twice)
    assert deps.warehouse.latest_rows("training_data").num_rows == 902

    # a file that carries the column keeps its values (a row can then be replaced)
    carried = table.slice(0, 2).add_column(0, "row_id", pa.array(["fix-1", "fix-2"]))
    pacsv.write_csv(carried, tmp_path / "fix.csv")
    land(tmp_path / "fix.csv")
    assert [r["row_id"] for r in deps.warehouse.tables["training_data"][-2:]] == ["fix-1", "fix-2"]


GENERATED = {"name": "row_id", "type": "string", "required": True, "generated": True}


@pytest.mark.parametrize(
    ("key", "other", "message"),
    [
        (dict(GENERATED, type="integer", min=0, max=10), {}, "a generated key is a string column"),
        (dict(GENERATED, generated="yes"), {}, "row_id'.generated: must be true or false"),
        (GENERATED, {"generated": True}, "column 'bmi'.generated: only the key column"),
    ],
    ids=["integer", "not-a-bool", "not-the-key"],
)
def test_a_generated_key_is_a_string_key(key: dict, other: dict, message: str) -> None:
    data = tomllib.loads((projects.example_dir("diabetes") / "project.toml").read_text())
    columns = [dict(c, **other) if c["name"] == "bmi" else c for c in data["columns"]]
    with pytest.raises(ProjectError, match=message):
        projects.from_dict({**data, "key": "row_id", "columns": [key, *columns]}, "")
    assert projects.from_dict(
        {**data, "key": "row_id", "columns": [GENERATED, *data["columns"]]}, ""
    ).key_column.generated


def test_init_never_guesses_a_task_it_is_unsure_of(tmp_path: Path) -> None:
    path = tmp_path / "grades.csv"
    path.write_text(
        "student,hours,grade\n" + "".join(f"s{i},{i % 7},{i % 5}\n" for i in range(200))
    )
    with pytest.raises(ProjectError, match="Pass --task multiclass or --task regression"):
        infer.draft(path, "grade")
    _, multiclass = _drafted(path, "grade", task="multiclass")
    assert multiclass.task == "multiclass" and multiclass.classes == (0, 1, 2, 3, 4)
    _, regression = _drafted(path, "grade", task="regression")
    assert regression.task == "regression" and regression.key == "student"


def test_a_file_with_a_space_after_each_comma_drafts_and_lands(tmp_path: Path) -> None:
    """As the UCI exports are written ("39, State-gov, 77516"): names and values
    are read trimmed, by init and by ingestion alike."""
    path = tmp_path / "adult.csv"
    path.write_text(
        "id, age, workclass, income\n"
        + "".join(
            f"{i}, {20 + i % 50}, {('Private', 'State-gov', 'Self-emp')[i % 3]}, "
            f"{('<=50K', '>50K')[i % 2]}\n"
            for i in range(300)
        )
    )
    _, drafted = _drafted(path, "income")
    assert drafted.column_names == ("id", "age", "workclass", "income")
    assert drafted.column("workclass").kind == "categorical"
    deps = fake_deps_for(drafted)
    info = deps.store.write_bytes(LAND, path.name, path.read_bytes())
    (done,) = messagebus.handle(ObjectFinalized(LAND, path.name, info.generation, info.size), deps)
    assert done.rows_loaded == 300
    first = deps.warehouse.tables["training_data"][0]
    assert (first["id"], first["age"], first["workclass"], first["income"]) == (
        0,
        20,
        "Private",
        "<=50K",
    )


def test_whole_numbers_written_as_floats_are_codes_or_floats(tmp_path: Path) -> None:
    """pandas writes a float column of whole numbers as "3.0" (the statsmodels
    and many Kaggle exports): a 0.0/1.0 target is binary, not regression, and
    a few such values are integer codes, which ingestion reads as 3; many (an
    age) stay a float column, so that a request with 21.5 is taken."""
    path = tmp_path / "votes.csv"
    path.write_text(
        "age,party,score,vote\n"
        + "".join(
            f"{30 + i % 40}.0,{i % 7}.0,{i * 0.37:.3f},{float(i % 3 == 0)}\n" for i in range(400)
        )
    )
    draft, drafted = _drafted(path, "vote")
    assert drafted.task == "binary" and drafted.classes == (0, 1) and drafted.positive_class == 1
    assert [c.type for c in drafted.columns][:3] == ["string", "float", "integer"]  # row_id first
    assert drafted.column("score").type == "float"
    assert any(
        "party: only 7 distinct whole numbers [0, 1, 2, 3, 4, 5, 6]" in c for c in draft.checks
    )
    deps = fake_deps_for(drafted)
    info = deps.store.write_bytes(LAND, path.name, path.read_bytes())
    (done,) = messagebus.handle(ObjectFinalized(LAND, path.name, info.generation, info.size), deps)
    assert done.rows_loaded == 400
    first = deps.warehouse.tables["training_data"][0]
    assert (first["age"], first["party"], first["vote"]) == (30, 0, 1)


def test_init_says_what_the_user_probably_meant(tmp_path: Path) -> None:
    semi = tmp_path / "semi.csv"
    semi.write_text("a;b;churned\n1;2;Yes\n3;4;No\n")
    with pytest.raises(ProjectError, match="separated by ';', not commas"):
        infer.draft(semi, "churned")
    # a European export: decimal commas make its rows look like several
    # comma-separated fields under a one-field header (Arrow's error before)
    euro = tmp_path / "euro.csv"
    euro.write_text("ref;fee;churned\n01133;49,35;Yes\n01134;12,5;No\n")
    with pytest.raises(ProjectError) as refused:
        infer.draft(euro, "churned")
    said = str(refused.value)
    assert "separated by ';', not commas" in said and "decimal points" in said, said
    assert "pd.read_csv(path, sep=';', decimal=',')" in said
    # Excel's CSV on Windows: cp1252, said, and how to read it
    ansi = tmp_path / "ansi.csv"
    ansi.write_bytes("ref;fee;état\n01133;49,35;Yes\n01134;12,5;Non\n".encode("cp1252"))
    with pytest.raises(ProjectError) as refused:
        infer.draft(ansi, "état")
    said = str(refused.value)
    assert "in UTF-8 (it is not)" in said and "encoding='cp1252'" in said, said
    path = tmp_path / "t.csv"
    path.write_text("id,Survived,Age\n1,0,22\n2,1,38\n")
    with pytest.raises(ProjectError, match="did you mean 'Survived'"):
        infer.draft(path, "survived")
    odd = tmp_path / "odd.csv"
    odd.write_text('id,"say ""hi""",a.b,Größe (cm),y\n1,x,0.5,170,yes\n2,y,0.7,180,no\n')
    with pytest.raises(
        ProjectError,
        match=r"""columns \['say "hi"', 'a.b'\] cannot be warehouse """
        "columns .*rename them in the file's header",
    ):
        infer.draft(odd, "y")


def test_codes_with_leading_zeros_commas_in_numbers_and_empty_columns(tmp_path: Path) -> None:
    """What a business export holds that a number type would spoil: codes
    written with leading zeros stay text (01133 is not 1133), numbers written
    with a comma are named with what to do, and a column empty in every row is
    no feature."""
    import random

    rng = random.Random(4)
    rows = [
        [
            f"{rng.randrange(1, 3000):05d}",
            f"{rng.uniform(5, 90):.2f}".replace(".", ","),
            "",
            rng.choice(["a", "b", "c"]),
            rng.choice(["churned", "stayed"]),
        ]
        for _ in range(400)
    ]
    data = _write(tmp_path / "export.csv", ["ref", "fee", "fax", "plan", "status"], rows)
    draft, drafted = _drafted(data, "status")
    types = {c.name: (c.type, c.kind) for c in drafted.columns}
    assert types["ref"][0] == "string"  # not an integer: the zeros stay
    assert types["fee"] == ("string", "text") and types["fax"][1] == "text"
    assert "fax" not in drafted.features and "plan" in drafted.features
    notes = " ".join(draft.checks)
    assert re.search(r"leading zeros \(such as '0[0-9]+'\)", notes), notes
    assert "fee: read as text, its values look like numbers written with a comma" in notes
    assert "fax: empty in every row, so not a feature" in notes


@pytest.mark.parametrize(
    ("values", "positive"),
    [
        (["churned"] * 25 + ["stayed"] * 75, "churned"),  # the rarer: the event
        (["bad"] * 30 + ["good"] * 70, "bad"),
        (["stayed"] * 20 + ["churned"] * 80, "stayed"),  # rarer, whatever its name
        (["a"] * 50 + ["b"] * 50, "b"),  # neither rarer: the last in order
        (["No"] * 10 + ["Yes"] * 90, "Yes"),  # a yes is the positive answer
    ],
)
def test_the_positive_class_is_a_yes_else_the_rarer_value(
    tmp_path: Path, values: list[str], positive: str
) -> None:
    rows = [[i, i % 7, v] for i, v in enumerate(values)]
    data = _write(tmp_path / "t.csv", ["id", "x", "status"], rows)
    draft, drafted = _drafted(data, "status")
    assert drafted.positive_class == positive
    assert any(c.startswith(f"positive_class {positive!r}") for c in draft.checks)


def test_one_padded_number_among_many_is_a_number_and_a_target_is_never_codes(
    tmp_path: Path,
) -> None:
    """Codes are zero-padded values of one width, or many: one "007" among
    quantities leaves an integer; a target's "0120" or "01" is its value or
    class, never a code; a comma file whose row has a field too many is not
    said to be separated by ';'."""
    import random

    rng = random.Random(6)
    rows = [[i, str(rng.randrange(1, 300)), rng.choice(["0", "1"])] for i in range(300)]
    rows[5][1] = "007"
    rows[6][2] = "01"
    data = _write(tmp_path / "q.csv", ["id", "qty", "y"], rows)
    _, drafted = _drafted(data, "y")
    assert drafted.column("qty").type == "integer" and "qty" in drafted.features
    assert drafted.task == "binary" and drafted.classes == (0, 1)
    prices = [[i, f"{rng.randrange(100, 900)}", "a"] for i in range(300)]
    prices[3][1] = "0120"
    data = _write(tmp_path / "p.csv", ["id", "price", "x"], prices)
    _, drafted = _drafted(data, "price")
    assert drafted.task == "regression"
    bad = tmp_path / "bad.csv"
    bad.write_text("id,price;eur,y\n1,2,3\n2,3,4,5\n")
    with pytest.raises(ProjectError) as refused:
        infer.draft(bad, "y")
    assert "separated by" not in str(refused.value)


def test_pairs_written_with_a_comma_are_not_taken_for_numbers(tmp_path: Path) -> None:
    rows = [[i, f"{i % 3},{i % 4}", "yes" if i % 2 else "no"] for i in range(200)]
    data = _write(tmp_path / "pairs.csv", ["id", "size", "y"], rows)
    draft, _ = _drafted(data, "y")
    assert not any("written with a comma" in c for c in draft.checks)


def test_ingest_into_a_new_home_says_which_project_it_gets(tmp_path: Path) -> None:
    """A home no `up --project` has made yet takes the built-in example: a
    user's file of other columns is refused before anything is made, saying
    how to draft a project; a file of the example's columns lands with a note."""
    from tests.e2e.harness import cli

    home = tmp_path / "home"
    data = tmp_path / "mine.csv"
    data.write_text("id,y\n1,yes\n")
    out = cli(home, "ingest", str(data), check=False)
    said = " ".join(out.stderr.split())
    assert out.returncode != 0 and "is not a file of the example project 'titanic'" in said
    assert "minimlops init" in said and "landed" not in out.stdout
    assert not (home / "project.json").exists() and not list(home.rglob("mine.csv"))
    write_csv(tmp_path / "passengers.csv", 60, seed=1)
    out = cli(home, "ingest", str(tmp_path / "passengers.csv"), check=False)
    assert "is a new data home, so it gets the built-in example project 'titanic'" in (
        " ".join(out.stderr.split())
    )
    again = cli(home, "ingest", str(data), check=False)
    assert "new data home" not in again.stderr and again.returncode != 0  # rejected: a report


def test_words_for_no_value_are_found_and_read_as_missing_everywhere(tmp_path: Path) -> None:
    """R writes NA, the UCI files ?: found where numbers were expected, declared
    as missing_values, and read as no value by ingestion and by the API alike;
    a text column that also holds the word is named for review."""
    from minimlops.entrypoints.http.request_models import request_models

    path = tmp_path / "census.csv"
    path.write_text(
        "age, workclass, hours, region, income\n"
        + "".join(
            f"{'NA' if i % 17 == 0 else 20 + i % 50}, {'?' if i % 13 == 0 else ('Private', 'State')[i % 2]}, "
            f"{'?' if i % 19 == 0 else 10 + i % 40}, {('NA', 'EU', 'APAC')[i % 3]}, {('<=50K', '>50K')[i % 2]}\n"
            for i in range(400)
        )
    )
    draft, drafted = _drafted(path, "income")
    # the project is named after the file (or -o's directory), not a column holding the word
    assert drafted.name == "census"
    assert infer.draft(path, "income", name="census-model").data["name"] == "census-model"
    assert drafted.missing_values == ("NA", "?")
    assert (drafted.column("age").type, drafted.column("hours").type) == ("integer", "integer")
    assert any("2 text columns hold them too (workclass, region)" in c for c in draft.checks)
    (said,) = [c for c in draft.checks if c.startswith("region: NA or ? in 134 of 400 rows")]
    assert "add missing_values = [] to this column" in said
    deps = fake_deps_for(drafted)
    info = deps.store.write_bytes(LAND, path.name, path.read_bytes())
    (done,) = messagebus.handle(ObjectFinalized(LAND, path.name, info.generation, info.size), deps)
    assert done.rows_loaded == 400
    rows = deps.warehouse.tables["training_data"]
    assert rows[0]["age"] is None and rows[0]["workclass"] is None and rows[1]["age"] == 21
    assert sum(r["hours"] is None for r in rows) == 22
    models = request_models(drafted)
    body = b'{"age": 30, "workclass": "?", "hours": 40, "region": "EU"}'
    assert models.one.validate_json(body)["workclass"] is None
    assert models.fast.rows(body, False)[0]["workclass"] is None
    # the line the note gives: region's NA is a value there, NA elsewhere is not
    data = tomllib.loads(_toml(draft.data, draft.checks))
    next(c for c in data["columns"] if c["name"] == "region")["missing_values"] = []
    keeps = projects.from_dict(data, str(tmp_path))
    assert keeps.missing_in("region") == () and keeps.missing_in("age") == ("NA", "?")
    deps = fake_deps_for(keeps)
    info = deps.store.write_bytes(LAND, path.name, path.read_bytes())
    messagebus.handle(ObjectFinalized(LAND, path.name, info.generation, info.size), deps)
    rows = deps.warehouse.tables["training_data"]
    assert rows[0]["region"] == "NA" and rows[0]["age"] is None
    models = request_models(keeps)
    body = b'{"age": 30, "workclass": "?", "hours": 40, "region": "NA"}'
    for row in (models.one.validate_json(body), models.fast.rows(body, False)[0]):
        assert row["region"] == "NA" and row["workclass"] is None
    batch = models.fast.rows(b"[" + body + b"]", True)
    assert batch[0]["region"] == "NA" and batch[0]["workclass"] is None


def test_pandas_index_column_is_neither_a_feature_nor_the_key(tmp_path: Path) -> None:
    """DataFrame.to_csv writes its index as a first column with no name: read
    as unnamed_0 by init and ingestion alike, left out of the features, never
    the key (every file restarts it at 0), and later files may leave it out."""
    path = tmp_path / "export.csv"
    path.write_text(
        ",customer,age,note,churned\n"
        + "".join(
            f"{i},c{i:04d},{20 + i % 50},called on day {i},{('Yes', 'No')[i % 3 == 0]}\n"
            for i in range(300)
        )
    )
    draft, drafted = _drafted(path, "churned")
    assert drafted.column_names[0] == "unnamed_0" and drafted.key == "customer"
    assert "unnamed_0" not in drafted.features and not drafted.column("unnamed_0").required
    assert drafted.features == ("age",), "free text (kind text) is no feature either"
    # never empty here, but not read by the model: a request may leave it out
    assert drafted.column("note").kind == "text" and not drafted.column("note").required
    deps = fake_deps_for(drafted)
    later = tmp_path / "later.csv"
    later.write_text("customer,age,note,churned\nc9000,33,x,No\nc9001,44,y,Yes\n")
    for f in (path, later):
        info = deps.store.write_bytes(LAND, f.name, f.read_bytes())
        (done,) = messagebus.handle(ObjectFinalized(LAND, f.name, info.generation, info.size), deps)
    assert done.rows_loaded == 2 and len(deps.warehouse.tables["training_data"]) == 302
    assert deps.warehouse.tables["training_data"][5]["unnamed_0"] == 5


def test_a_column_named_like_a_field_keeps_its_checks_above_itself(tmp_path: Path) -> None:
    """Columns called ``description`` and ``task`` are columns: their CHECKs sit
    above their own tables, not above the project's fields of those names."""
    path = tmp_path / "tickets.csv"
    path.write_text(
        "id,description,task,y\n"
        + "".join(f"{i},ticket text number {i},sort,{'ab'[i % 2]}\n" for i in range(1200))
    )
    d = infer.draft(path, "y")
    file = _toml(d.data, d.checks, d.observed).splitlines()
    # past the 1,000 values remembered, but every value was counted (one
    # block): the count is exact, not "over" it
    assert "description: string, free text (1,200 distinct), not a feature" in d.decisions

    def comments_above(i: int) -> list[str]:
        out = []
        while i > 0 and file[i - 1].startswith("#"):
            i -= 1
            out.insert(0, file[i])
        return out

    field = next(i for i, line in enumerate(file) if line.startswith("description = "))
    assert not any("ticket text" in c or "mostly distinct" in c for c in comments_above(field))
    for column, says in (("description", "mostly distinct text"), ("task", "one value only")):
        table = file.index(f'name = "{column}"') - 1
        assert any(says in c for c in comments_above(table)), (column, comments_above(table))
    assert all(sum(f"# CHECK {c}" == line for line in file) == 1 for c in d.checks)


def test_the_file_says_what_was_observed_and_every_check_above_its_place(tmp_path: Path) -> None:
    """What the file held is written as comments, not rules (a later file's new
    category still lands); every CHECK sits above the field or column it is
    about, whatever its name; rows without a target do not stop the draft."""
    path = tmp_path / "birds.csv"
    lines = ["bird id,Island (site),Mass (g),Date Egg,Region,Weight,Sex,nested,Notes"]
    for i in range(120):
        nested = "" if i in (7, 9) else ("yes" if i % 5 else "no")
        weight = "NA" if i % 10 == 5 else i / 4
        lines.append(
            f"{i},{['Biscoe', 'Dream', 'Torgersen'][i % 3]},{2700 + i * 30},"
            f"2007-11-{1 + i % 28:02d},Anvers,{weight},{'MF'[i % 2]},{nested},"
        )
    path.write_text("\n".join(lines) + "\n")
    d = infer.draft(path, "nested")
    text = _toml(d.data, d.checks, d.observed)
    drafted = projects.from_dict(tomllib.loads(text), str(tmp_path))
    file = text.splitlines()

    def above(table_line: str) -> list[str]:
        """The comment lines just above a field or a column's table."""
        i = file.index(table_line)
        if file[i - 1] == "[[columns]]":
            i -= 1
        out = []
        while i > 0 and file[i - 1].startswith("#"):
            i -= 1
            out.insert(0, file[i])
        return out

    assert above('name = "Island (site)"') == ['# observed "Biscoe", "Dream", "Torgersen"']
    assert above('name = "Mass (g)"') == ["# observed 2700 to 6270"]
    assert above('name = "Weight"') == ["# observed 0 to 29.75"]
    assert above('name = "Date Egg"') == [
        "# observed 2007-11-01 to 2007-11-28",
        "# read as ISO 8601",
        "# minimlops makes year, month, day of the month, day of the week, day of the year "
        "and days since "
        "1970 features from it",
    ]
    assert drafted.column("Date Egg").type == "date" and drafted.split.column == "Date Egg"
    assert any(
        "Region: one value only ('Anvers' in every row)" in c for c in above('name = "Region"')
    )
    assert any("Notes: empty in every row" in c for c in above('name = "Notes"'))
    assert any(
        "nested: empty in 2 of 120 rows" in c and "MINIMLOPS_MAX_BAD_ROWS=2" in c
        for c in above('name = "nested"')
    )
    assert any(
        c.startswith("# CHECK positive_class 'yes'") for c in above('positive_class = "yes"')
    )
    assert any(c.startswith("# CHECK missing_values ['NA']") for c in above("missing_values = ["))
    assert all(f"# CHECK {c}" in file for c in d.checks)  # none is only printed
    assert "a category (1 value seen)" in " ".join(d.decisions)
    assert (
        drafted.column("Island (site)").allowed is None and drafted.column("Mass (g)").max is None
    )
    assert drafted.target_column.required

    # the file as it is: refused naming the rows without a target; with
    # MINIMLOPS_MAX_BAD_ROWS=2 the others load; a new island still lands
    for max_bad in (0, 2):
        deps = fake_deps_for(drafted, max_bad_rows=max_bad)
        info = deps.store.write_bytes(LAND, path.name, path.read_bytes())
        messagebus.handle(ObjectFinalized(LAND, path.name, info.generation, info.size), deps)
        (row,) = deps.warehouse.ledger(source_uri=f"gs://{LAND}/{path.name}")
        assert (row["status"], row["rows_loaded"]) == (
            ("rejected", 0) if not max_bad else ("loaded", 118)
        )
        assert (
            "data row 8 (the header not counted), column nested: required value is missing"
            in row["message"]
        )
    more = tmp_path / "more.csv"
    more.write_text(lines[0] + "\n200,Elephant Island,3000,2008-11-02,Anvers,1.5,F,yes,\n")
    info = deps.store.write_bytes(LAND, more.name, more.read_bytes())
    (done,) = messagebus.handle(ObjectFinalized(LAND, more.name, info.generation, info.size), deps)
    assert done.rows_loaded == 1


def _init(*args: str) -> object:
    """`minimlops init` as a user runs it (the real command, in this process)."""
    from typer.testing import CliRunner

    from minimlops.entrypoints.cli.main import app

    return CliRunner().invoke(app, ["init", *args])


def test_numeric_classes_are_in_numeric_order(tmp_path: Path) -> None:
    """Classes 1 to 12 are listed 1, 2, ..., 10, 11, 12 (not 1, 10, 11, 12, 2):
    in the file's allowed values, the decisions and the question asked."""
    path = tmp_path / "grades.csv"
    path.write_text(
        "student,hours,grade\n" + "".join(f"s{i},{i % 7},{1 + i % 12}\n" for i in range(240))
    )
    with pytest.raises(
        ProjectError,
        match=r"12 distinct whole numbers \[1, 2, 3, 4, 5, 6, 7, 8, "
        r"9, 10\]",
    ):
        infer.draft(path, "grade")
    result = _init(
        str(path), "--target", "grade", "--task", "multiclass", "-o", str(tmp_path / "grades")
    )
    assert result.exit_code == 0, result.output
    written = tomllib.loads((tmp_path / "grades" / "project.toml").read_text())
    target = next(c for c in written["columns"] if c["name"] == "grade")
    assert target["allowed"] == list(range(1, 13))
    assert "classes [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]" in " ".join(result.stdout.split())
    two = tmp_path / "two.csv"  # neither reads as yes: the larger number is the positive class
    two.write_text("id,x,y\n" + "".join(f"{i},{i % 3},{(9, 10)[i % 2]}\n" for i in range(50)))
    assert infer.draft(two, "y").data["positive_class"] == 10


def test_init_with_an_output_directory_names_the_project_after_it(
    tmp_path: Path, monkeypatch
) -> None:
    data = tmp_path / "export-2024.csv"
    data.write_text("id,x,y\n" + "".join(f"{i},{i % 3},{'ab'[i % 2]}\n" for i in range(50)))
    result = _init(str(data), "--target", "y", "-o", str(tmp_path / "Churn Model"))
    assert result.exit_code == 0, result.output
    written = tomllib.loads((tmp_path / "Churn Model" / "project.toml").read_text())
    assert written["name"] == "churn-model" and written["description"] == "from export-2024.csv"
    here = tmp_path / "here"  # without -o: the directory and the project are the file's name
    here.mkdir()
    monkeypatch.chdir(here)
    assert _init(str(data), "--target", "y").exit_code == 0
    assert (
        tomllib.loads((here / "export-2024" / "project.toml").read_text())["name"] == "export-2024"
    )


def test_a_regression_target_of_prices_raises_no_false_alarm(tmp_path: Path) -> None:
    """Sale prices are whole numbers, hundreds of distinct ones: a quantity,
    which no multiclass task could hold, so init does not ask whether they
    are codes of classes. A few dozen whole numbers still ask."""
    import random

    rng = random.Random(1)
    path = tmp_path / "houses.csv"
    path.write_text(
        "Id,LotArea,Neighborhood,SalePrice\n"
        + "".join(
            f"{i},{rng.randint(2000, 20000)},{rng.choice('ABC')},{rng.randint(50_000, 500_000)}\n"
            for i in range(1, 1461)
        )
    )
    result = _init(str(path), "--target", "SalePrice", "-o", str(tmp_path / "houses"))
    assert result.exit_code == 0, result.output
    text = (tmp_path / "houses" / "project.toml").read_text()
    assert 'task = "regression"' in text and "codes of classes" not in text
    assert not [line for line in text.splitlines() if "CHECK" in line and "SalePrice" in line]
    assert "task: regression (target SalePrice: many whole numbers)" in result.stdout
    scores = tmp_path / "scores.csv"  # 30 distinct whole numbers: codes, maybe
    scores.write_text("id,x,score\n" + "".join(f"{i},{i % 7},{i % 30}\n" for i in range(300)))
    d = infer.draft(scores, "score")
    assert d.data["task"] == "regression" and any("codes of classes" in c for c in d.checks)


def test_a_rejected_file_is_a_failed_ingest_saying_why(tmp_path: Path) -> None:
    """`ingest` of a file its home's project refuses (here: the Titanic
    example, and a file of other columns) exits non-zero with the reason; a
    loaded file exits 0."""
    from tests.e2e.harness import cli

    data = tmp_path / "houses.csv"
    data.write_text("id,price,size\n1,100.5,20\n2,200,30\n")
    out = cli(tmp_path / "home", "ingest", str(data), "--project", "titanic", check=False)
    assert out.returncode == 1, out.stdout + out.stderr
    error = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and error[0].startswith(
        "error: houses.csv was rejected: missing columns ['PassengerId', 'Survived'"
    ), out.stderr
    report = tmp_path / "home/buckets/my-data-landing-zone/rejected/houses.csv.report.json"
    assert f"(report: {report})" in error[0] and report.exists()  # a path, not gs://
    assert "houses.csv: rejected, nothing loaded" in out.stdout


# Dates, the split and leakage. The files are written here with the csv module.


def test_a_rare_positive_class_gets_a_word_about_the_threshold(tmp_path: Path) -> None:
    """7 % defaults: from probability 0.5 up, "yes" would rarely be answered;
    the draft says so, and a threshold it writes parses back."""
    rows = [
        [f"L{i:05d}", i % 13, 1000 + 37 * i % 900, "yes" if i % 14 == 0 else "no"]
        for i in range(2000)
    ]
    path = _write(tmp_path / "loans.csv", ["loan_id", "term", "amount", "defaulted"], rows)
    d, drafted = _drafted(path, "defaulted")
    assert drafted.positive_class == "yes" and drafted.threshold == 0.5
    (said,) = [c for c in d.checks if "threshold" in c]
    assert said.startswith("'yes' is 7.1% of rows: answered only from probability 0.5 up")
    plain = [[f"L{i:05d}", i % 13, "yes" if i % 3 == 0 else "no"] for i in range(600)]
    d, _ = _drafted(_write(tmp_path / "even.csv", ["id", "term", "y"], plain), "y")
    assert not [c for c in d.checks if "threshold" in c]  # 33 %: nothing to say


def test_free_text_named_like_an_entity_is_no_id_and_no_group(tmp_path: Path) -> None:
    """A ticket's subject line repeats now and then and is named like a
    clinical trial's subject: it is free text, not a group to split by."""
    import datetime as dt

    words = ["login", "error", "billing", "outage", "security", "slow", "refund", "crash"]
    rows = [
        [
            f"T{i:05d}",
            (dt.datetime(2025, 1, 1) + dt.timedelta(minutes=170 * i)).isoformat(),
            " ".join(words[(i * k) % 8] for k in (1, 3, 5)[: 2 + i % 2]) + f" #{i % 700}",
            "low" if i % 3 else "high",
        ]
        for i in range(2000)
    ]
    path = _write(tmp_path / "t.csv", ["ticket_id", "opened_at", "subject", "priority"], rows)
    d, drafted = _drafted(path, "priority")
    assert drafted.column("subject").kind == "text"
    assert not [c for c in d.checks if "subject: repeats" in c or '"subject"' in c], d.checks
    assert drafted.split.strategy == "time"


def test_two_columns_are_no_key_when_their_numbers_repeat_written_otherwise(
    tmp_path: Path,
) -> None:
    """Store 7 written "7" and "07": one store, as the key made of them would
    read it, so a date and that store do not identify a row."""
    import datetime as dt

    start = dt.date(2025, 1, 1)
    rows = [
        [(start + dt.timedelta(days=d)).isoformat(), str(s), (d * 7 + s) % 5, 100 + d + s]
        for d in range(60)
        for s in range(1, 13)
    ]
    rows.append([start.isoformat(), "07", 1, 99])  # the first day's store 7 again
    path = _write(tmp_path / "sales.csv", ["date", "store", "promo", "sales"], rows)
    d, drafted = _drafted(path, "sales")
    assert drafted.column("store").type == "integer"
    assert not [c for c in d.checks if "together" in c], d.checks
    d, _ = _drafted(
        _write(tmp_path / "fine.csv", ["date", "store", "promo", "sales"], rows[:-1]), "sales"
    )
    assert [c for c in d.checks if "date and store do together" in c]


def test_two_columns_that_identify_a_row_together_are_named(tmp_path: Path) -> None:
    """Daily sales of 12 stores: no column is unique, a date and a store are.
    The draft keys rows by their content and says which two identify a row and
    the line that keys rows by them; with that line, the file loads keyed by
    its date and store; with a column that joins them, that is the key."""
    import datetime as dt

    from tests.conftest import fake_deps_for
    from tests.unit.test_composite_keys import land

    start = dt.date(2025, 1, 1)
    rows = [
        [(start + dt.timedelta(days=d)).isoformat(), f"s{s:02d}", (d * 7 + s) % 5, 100 + d + s]
        for d in range(60)
        for s in range(12)
    ]
    path = _write(tmp_path / "sales.csv", ["date", " store", "promo", "sales"], rows)
    d, drafted = _drafted(path, "sales")  # (a header written ", store": read as "store")
    assert d.key_added
    (said,) = [c for c in d.checks if "together" in c]
    assert (
        said.startswith("no single column identifies a row, but date and store do together")
        and 'replace generated = true with from = ["date", "store"] in this column' in said
    )
    # the line the note gives, added: the file's rows are keyed by date and store
    data = tomllib.loads(_toml(d.data, d.checks))
    key_column = next(c for c in data["columns"] if c["name"] == data["key"])
    key_column["from"] = ["date", "store"]
    del key_column["generated"]
    keyed = projects.from_dict(data, str(tmp_path))
    assert keyed.key_parts == ("date", "store")
    deps = fake_deps_for(keyed)
    table = pa.Table.from_pylist(
        [
            {"date": dt.date.fromisoformat(r[0]), "store": r[1], "promo": r[2], "sales": r[3]}
            for r in rows
        ]
    )
    (done,) = land(deps, "sales.csv", table)
    assert done.rows_loaded == len(rows)
    loaded = {r[data["key"]] for r in deps.warehouse.tables["training_data"]}
    assert "2025-01-01|s00" in loaded and len(loaded) == len(rows)
    joined = [[f"{r[0]}|{r[1]}", *r] for r in rows]
    path = _write(tmp_path / "keyed.csv", ["row_id", "date", "store", "promo", "sales"], joined)
    d, drafted = _drafted(path, "sales")
    assert drafted.key == "row_id" and not d.key_added
    assert not [c for c in d.checks if "together" in c]


def _write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    import csv

    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _orders(path: Path, n: int = 2400) -> Path:
    """Orders over two years: customers with many orders each, an order time
    with UTC offsets, and refund_status, filled in after the order is
    returned (a leak: it says the answer)."""
    import datetime as dt
    import random

    rng = random.Random(5)
    rows = []
    for i in range(n):
        day = dt.date(2024, 1, 3) + dt.timedelta(days=rng.randrange(727))
        amount = round(rng.uniform(5, 500), 2)
        returned = rng.random() < (0.35 if amount > 300 else 0.15)
        zone = dt.timezone(dt.timedelta(hours=rng.choice([0, 2, -5])))
        placed = dt.datetime(day.year, day.month, day.day, rng.randrange(24), 5, tzinfo=zone)
        refund = "pending" if i == 7 else ("refunded" if returned else "none")
        rows.append(
            [
                f"o{i:05d}",
                day.isoformat(),
                f"C{rng.randrange(300):04d}",
                amount,
                rng.choice(["web", "shop", "phone"]),
                refund,
                placed.isoformat(),
                "yes" if returned else "no",
            ]
        )
    header = ["order_id", "order_date", "customer_id", "amount", "channel"]
    return _write(path, [*header, "refund_status", "placed_at", "returned"], rows)


def test_init_reads_dates_proposes_a_time_split_and_names_a_leak(tmp_path: Path) -> None:
    """An ISO date and a timestamp with offsets are dates, not categories; the
    order date is the rows' time, so the split is by time (TEST the newest)
    and the repeating customer_id is named, not split by; the column that says
    the answer is named in the output and left out of the features."""
    path = _orders(tmp_path / "orders.csv")
    result = _init(str(path), "--target", "returned", "-o", str(tmp_path / "orders"))
    assert result.exit_code == 0, result.output
    text = (tmp_path / "orders" / "project.toml").read_text()
    drafted = projects.from_dict(tomllib.loads(text), str(tmp_path / "orders"))
    assert (
        drafted.column("order_date").type == "date" and drafted.column("order_date").format is None
    )
    assert drafted.column("placed_at").type == "timestamp"
    assert drafted.column("order_date").kind == "date"
    assert (drafted.split.strategy, drafted.split.column) == ("time", "order_date")
    assert drafted.split.fractions == (0.7, 0.15, 0.15)
    assert "refund_status" not in drafted.features and "customer_id" not in drafted.features
    # what the model does not use is not asked of every request (nor a leak's answer)
    assert not drafted.column("refund_status").required
    assert not drafted.column("customer_id").required
    assert set(drafted.features) == {"order_date", "amount", "channel", "placed_at"}

    out = " ".join(result.stdout.split())
    assert (
        "possible leakage" in out
        and "refund_status: possible leakage: alone it predicts returned" in out
    )
    assert (
        "minimlops makes year, month, day of the month, day of the week, day of the year and "
        "days since 1970" in out
    )
    assert "split: by time on order_date" in out and "not by group on customer_id" in out
    lines = text.splitlines()
    split_check = next(line for line in lines if line.startswith("# CHECK split: by time"))
    assert "order_date: it spans 2024-01-0" in split_check
    assert "TRAIN is the oldest 70 %, VALIDATION the next 15 %, TEST the newest 15 %" in split_check
    assert "other dates: placed_at" in split_check and "customer_id repeats too" in split_check
    assert lines[lines.index(split_check) + 1] == "[split]"
    assert any(
        line.startswith("# CHECK customer_id: repeats (300 values")
        and 'strategy = "group", column = "customer_id"' in line
        for line in lines
    )
    assert any(line.startswith("# CHECK refund_status: possible leakage") for line in lines)
    assert "# read as ISO 8601; offsets given: converted to UTC" in lines
    # the cut-off dates that give the same shares, ready to uncomment
    assert any(line.startswith('# validation_from = "2025-') for line in lines)


def test_init_reads_the_common_date_forms_and_says_when_the_order_is_unclear(
    tmp_path: Path,
) -> None:
    """20/06/2026 is day first, 06/20/2026 month first, 20.06.2026 day first,
    2026/06/20 year first; when no part goes above 12 the draft reads day
    first and asks. Every format written reads every value of its column."""
    import datetime as dt
    import random

    rng = random.Random(2)
    forms = {
        "dmy": "%d/%m/%Y",
        "mdy": "%m/%d/%Y",
        "dotted": "%d.%m.%Y",
        "ymd": "%Y/%m/%d",
        "dmy_time": "%d/%m/%y %H:%M",
        "naive": "%Y-%m-%d %H:%M:%S",
        "zulu": "%Y-%m-%dT%H:%M:%SZ",
        "midnight": "%Y-%m-%d 00:00:00",  # dates as pandas writes them
    }
    rows = []
    for i in range(600):
        when = dt.datetime(2024, 1, 1) + dt.timedelta(
            days=rng.randrange(700), minutes=rng.randrange(1440)
        )
        early = when.replace(day=min(when.day, 12))  # day and month both 12 or less
        rows.append(
            [
                i,
                *(when.strftime(f) for f in forms.values()),
                early.strftime("%d/%m/%Y"),
                rng.choice("ab"),
            ]
        )
    path = _write(tmp_path / "forms.csv", ["id", *forms, "unclear", "y"], rows)
    d, drafted = _drafted(path, "y")
    expected = {"dmy": "%d/%m/%Y", "mdy": "%m/%d/%Y", "dotted": "%d.%m.%Y", "ymd": "%Y/%m/%d"}
    expected |= {"dmy_time": "%d/%m/%y %H:%M", "unclear": "%d/%m/%Y"}
    for name, fmt in expected.items():
        assert drafted.column(name).format == fmt, name
        assert drafted.column(name).type == ("timestamp" if "%H" in fmt else "date")
    for name in ("naive", "zulu"):  # ISO 8601, with a space or a T, read as it is
        assert (drafted.column(name).type, drafted.column(name).format) == ("timestamp", None)
    assert (drafted.column("midnight").type, drafted.column("midnight").format) == ("date", None)
    for row in rows:  # the formats read the file's values
        for name, fmt in expected.items():
            dt.datetime.strptime(row[[*forms, "unclear"].index(name) + 1], fmt)
    assert any(
        c.startswith("unclear: day and month order unclear") and 'format = "%m/%d/%Y"' in c
        for c in d.checks
    )
    assert not any(c.startswith(("dmy:", "mdy:", "dotted:")) for c in d.checks)
    text = _toml(d.data, d.checks, d.observed)
    assert "# read as ISO 8601; no offset: read as UTC" in text.splitlines()
    assert "read with %d/%m/%Y; day first (a first part goes above 12)" in text
    assert "read with %m/%d/%Y; month first (a second part goes above 12)" in text


def test_a_date_typo_is_named_and_dates_in_mixed_forms_stay_text(tmp_path: Path) -> None:
    rows = [
        [
            i,
            "2025-02-30" if i == 3 else f"2025-0{1 + i % 9}-{1 + i % 28:02d}",
            f"2025-01-{1 + i % 28:02d}" if i % 2 else f"{1 + i % 28:02d}/01/2025",
            "ab"[i % 2 ^ (i % 7 == 0)],
        ]
        for i in range(300)
    ]
    path = _write(tmp_path / "typo.csv", ["id", "day", "mixed", "y"], rows)
    d, drafted = _drafted(path, "y")
    assert drafted.column("day").type == "date"
    assert any("day: '2025-02-30' (1 row) is no date as ISO 8601 reads it" in c for c in d.checks)
    assert drafted.column("mixed").type == "string"
    assert any(c.startswith("mixed: dates") and "more than one form" in c for c in d.checks)


def test_an_id_that_repeats_is_split_by_group_and_is_no_feature(tmp_path: Path) -> None:
    """No date: a patient's visits are one group, so a random split would score
    the model on patients it has seen; the draft splits by patient."""
    import random

    rng = random.Random(4)
    rows = [
        [
            i,
            f"P{rng.randrange(120)}",
            rng.randint(20, 90),
            round(rng.gauss(120, 15), 1),
            rng.choice("ab"),
        ]
        for i in range(900)
    ]
    path = _write(tmp_path / "visits.csv", ["visit_id", "patient_id", "age", "pressure", "y"], rows)
    d, drafted = _drafted(path, "y")
    assert (drafted.split.strategy, drafted.split.column) == ("group", "patient_id")
    assert drafted.features == ("age", "pressure")
    check = next(c for c in d.checks if c.startswith("split: by group on patient_id"))
    assert (
        "120 values, 7.5 rows each on average" in check and "patients it has already seen" in check
    )
    assert "[split]" in _toml(d.data, d.checks).splitlines()


def test_without_a_time_or_a_group_the_split_is_random_with_the_options_commented(
    tmp_path: Path,
) -> None:
    rows = [[i, i % 7, f"{i * 0.37:.2f}", "ab"[i % 2]] for i in range(200)]
    path = _write(tmp_path / "plain.csv", ["id", "n", "x", "y"], rows)
    d, drafted = _drafted(path, "y")
    assert drafted.split.strategy == "random" and "split" not in d.data
    text = _toml(d.data, d.checks).splitlines()
    assert "# [split]" in text and any(line.startswith('# strategy = "random"') for line in text)
    assert "[split]" not in text
    # the comment says what happens with no [split]: the default shares, and what each is for
    said = "\n".join(text)
    assert "# How the labelled rows are split: 70 % TRAIN, 15 % VALIDATION, 15 % TEST" in said
    assert "TEST is\n#   held back: each version reports what its served model does there" in said


def test_init_leaves_out_leaks_and_ids_but_not_honest_columns(tmp_path: Path) -> None:
    """Regression: a price with tax is the target again (rank correlation 1);
    a row number and an id are no features; an honest, strong column stays."""
    import random

    rng = random.Random(8)
    rows = []
    for i in range(1500):
        x = rng.uniform(0, 10)
        price = 3 * x + rng.gauss(0, 3)
        rows.append(
            [
                i + 1,
                f"s{rng.randrange(10**9)}",
                round(x, 3),
                round(price * 1.2 + 1, 3),
                round(price, 3),
            ]
        )
    path = _write(tmp_path / "prices.csv", ["n", "sku_id", "x", "price_with_tax", "price"], rows)
    d, drafted = _drafted(path, "price", key="sku_id")
    assert drafted.features == ("x",)
    assert any(
        c.startswith("price_with_tax: possible leakage: its rank correlation with price is +1.000")
        for c in d.checks
    )
    assert any(c.startswith("n: a row number (1 to 1500, each once)") for c in d.checks)
    assert d.leaks == ["price_with_tax"]
    # classification: a unique column predicts nothing, leave-one-out, and is not named
    rows = [[f"r{i}", rng.random(), "ab"[rng.random() < 0.5]] for i in range(400)]
    path = _write(tmp_path / "honest.csv", ["row", "noise", "y"], rows)
    d, drafted = _drafted(path, "y")
    assert d.leaks == [] and drafted.features == ("noise",)


def test_checking_a_home_writes_nothing(tmp_path: Path) -> None:
    """`ingest` checks the home's project before a file lands, and records nothing."""
    from minimlops import projects
    from minimlops.bootstrap import check_home
    from minimlops.config import Settings
    from minimlops.errors import ProjectMismatchError

    settings = Settings.from_env({}, home=tmp_path / "home")
    check_home(settings, projects.load("wine"), record=False)
    assert not (tmp_path / "home" / "project.json").exists()
    check_home(settings, projects.load("wine"))
    with pytest.raises(ProjectMismatchError, match="holds data of project 'wine'"):
        check_home(settings, projects.load("diabetes"), record=False)
    recorded = (tmp_path / "home" / "project.json").read_text()
    check_home(settings, projects.load("wine"), record=False)
    assert (tmp_path / "home" / "project.json").read_text() == recorded


def test_a_target_of_whole_numbers_written_as_floats_can_be_multiclass(tmp_path: Path) -> None:
    """30 classes written "7.0": init drafts regression (many whole numbers) and
    says so; --task multiclass takes them as the classes 0 to 29."""
    path = tmp_path / "codes.csv"
    path.write_text(
        "id,x,grade\n" + "".join(f"{i},{i % 13 * 0.5},{i % 30}.0\n" for i in range(900))
    )
    assert infer.draft(path, "grade").data["task"] == "regression"
    d = infer.draft(path, "grade", task="multiclass")
    (grade,) = [c for c in d.data["columns"] if c["name"] == "grade"]
    assert d.data["task"] == "multiclass" and grade["type"] == "integer"
    assert grade["allowed"] == list(range(30))
