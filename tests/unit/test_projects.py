"""Projects: the file is checked field by field, and the whole pipeline holds
for data sets of every shape (tests/projects.py), on the fakes."""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from minimlops import projects
from minimlops.domain.events import ObjectFinalized
from minimlops.domain.project import ProjectError, compatible, parse
from minimlops.domain.schema import split_for, table_schema
from minimlops.ml import artifacts, export, features, outputs
from minimlops.ml.model import TrainedModel
from minimlops.ml.serving import OnnxModel
from minimlops.services import admin, messagebus, monitor
from minimlops.services.predict import Predictor
from minimlops.services.train import registry_of
from minimlops.services.validate import add_split
from tests import projects as shapes
from tests.conftest import fake_deps_for

LAND = "my-data-landing-zone"
BASE = tomllib.loads((projects.example_dir("diabetes") / "project.toml").read_text())


def _variant(**changes) -> dict:
    data = json.loads(json.dumps(BASE))
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    return data


def _col(name, **changes) -> list:
    cols = json.loads(json.dumps(BASE["columns"]))
    for c in cols:
        if c["name"] == name:
            c.update(changes)
            for k in [k for k, v in c.items() if v is None]:
                del c[k]
    return cols


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            _variant(columns=_col("bmi", type="decimal")),
            "column 'bmi'.type: unknown type 'decimal'",
        ),
        (_variant(target="outcome"), "target: 'outcome' is not a declared column"),
        (_variant(key="id"), "key: 'id' is not a declared column"),
        (_variant(columns=_col("sex", type="string")), "column 'sex'.allowed: 1 is not a string"),
        (
            _variant(columns=_col("sex", min=0, allowed=None, type="string", kind=None)),
            "column 'sex'.min: a string column has no min",
        ),
        (_variant(columns=_col("bmi", min=50, max=10)), "min 50 is above max 10"),
        (_variant(task="clustering"), "task: 'clustering'"),
        (_variant(task="binary"), "needs an integer, string or boolean target"),
        (_variant(primary_metric="accuracy"), "'accuracy' is not a regression metric"),
        (_variant(features=["bmi", "weight"]), "['weight'] are neither columns nor derived"),
        (_variant(columns=_col("patient_id", required=False)), "must be required = true"),
        (
            _variant(columns=[*BASE["columns"], {"name": "split", "type": "string"}]),
            "names of the pipeline's own columns",
        ),
        (_variant(colour="blue"), "top level: unknown field 'colour'"),
        (
            _variant(primary_metirc="rmse"),
            "unknown field 'primary_metirc' (did you mean 'primary_metric'?)",
        ),
        (
            _variant(columns=_col("bmi", requried=True)),
            "column 'bmi': unknown field 'requried' (did you mean 'required'?)",
        ),
        (
            _variant(columns=_col("bmi", type="double")),
            "unknown type 'double' (did you mean 'float'?)",
        ),
        (_variant(columns=_col("bmi", kind="category")), "(did you mean 'categorical'?)"),
        (_variant(task="regresion"), "task: 'regresion' (did you mean 'regression'?)"),
        (
            _variant(primary_metric="log_loss"),
            "'log_loss' is not a regression metric (it is a "
            "binary one); one of ['rmse', 'mae', 'r2']",
        ),
        (_variant(primary_metric="rsme"), "(did you mean 'rmse'?)"),
        (_variant(target="Progression"), "(did you mean 'progression'?)"),
        (_variant(features=["bmi", "BP"]), "(did you mean 'bp'?)"),
        (
            _variant(columns=[*BASE["columns"][:3], {"name": 5, "type": "float"}]),
            "[[columns]] table 4 (after column 'age').name: 5 is not a usable column name",
        ),
        # bounds a 64-bit integer column cannot hold stopped `up` with msgspec's traceback
        (
            _variant(columns=_col("age", type="integer", max=1e30)),
            "column 'age'.max: 1e+30 does not fit an integer column (-9223372036854775808 to ",
        ),
        (
            _variant(columns=_col("sex", allowed=[1, 2**70])),
            "column 'sex'.allowed: 1180591620717411303424 does not fit",
        ),
        (
            _variant(columns=_col("bmi", max=float("inf"))),
            "column 'bmi'.max: inf is not a finite number",
        ),
        # training reads labelled predictions with a "landed" flag beside their columns
        (
            _variant(columns=[*BASE["columns"], {"name": "landed", "type": "boolean"}]),
            "['landed'] are names of the pipeline's own columns; rename",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_wrong_project_file_is_refused_naming_the_field(data, message) -> None:
    with pytest.raises(ProjectError, match=_escape(message)):
        parse(data)


def _mistaken(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """The diabetes example, copied, with one mistake a person makes."""
    d = tmp_path / name
    d.mkdir()
    text = (projects.example_dir("diabetes") / "project.toml").read_text()
    assert old in text
    (d / "project.toml").write_text(text.replace(old, new, 1))
    return d


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        (
            'name = "bmi"\ntype = "float"\nrequired = true',
            'name = "bmi"\ntype = "float"\nrequried = true',
            [
                "column 'bmi'",
                "unknown field 'requried'",
                "(did you mean 'required'?)",
                "known: ['name', 'type', 'required'",
            ],
        ),
        (
            'name = "bmi"\ntype = "float"',
            'name = "bmi"\ntype = "decimal"',
            [
                "column 'bmi'.type",
                "unknown type 'decimal'",
                "(did you mean 'float'?)",
                "one of ['integer', 'float', 'string', 'boolean', 'date', 'timestamp']",
            ],
        ),
        (
            'primary_metric = "rmse"',
            'primary_metric = "accuracy"',
            [
                "primary_metric",
                "'accuracy' is not a regression metric",
                "one of ['rmse', 'mae', 'r2']",
            ],
        ),
    ],
    ids=["typo-in-a-column", "unknown-type", "metric-of-another-task"],
)
def test_a_project_file_mistake_is_one_error_line_naming_the_column_and_what_is_allowed(
    tmp_path: Path, old: str, new: str, said: list[str]
) -> None:
    """What a person who mistyped the file sees from the command line: one
    line (no traceback, no `columns[9]`), a non-zero exit, the column by its
    name, the wrong key or value, the closest right one and what is allowed;
    and nothing written in the data home."""
    from typer.testing import CliRunner

    from minimlops.entrypoints.cli.main import app

    d = _mistaken(tmp_path, "proj", old, new)
    home = tmp_path / "home"
    for command in (["status"], ["predict", "{}"], ["up", "--port", "0"]):
        result = CliRunner().invoke(app, [*command, "--project", str(d), "--home", str(home)])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: project file: "), result.stderr
        for words in said:
            assert words in lines[0], lines[0]
        assert "columns[" not in lines[0] and "Traceback" not in result.output
        assert not home.exists(), f"{command}: nothing is written for a wrong project"


def test_a_missing_project_directory_or_another_homes_project_is_one_error_line(tmp_path) -> None:
    from typer.testing import CliRunner

    from minimlops.bootstrap import check_home
    from minimlops.config import Settings
    from minimlops.entrypoints.cli.main import app

    (tmp_path / "customers").mkdir()
    (tmp_path / "customers" / "project.toml").write_text(
        (projects.example_dir("diabetes") / "project.toml").read_text()
    )
    home = tmp_path / "home"
    for command in (["status"], ["ingest", str(tmp_path / "customers" / "project.toml")]):
        result = CliRunner().invoke(
            app, [*command, "--project", str(tmp_path / "custmers"), "--home", str(home)]
        )
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        (line,) = result.stderr.strip().splitlines()[-1:]
        assert line.startswith(
            f"error: no project.toml in {tmp_path / 'custmers'}: no such "
            f"directory (did you mean '{tmp_path / 'customers'}'?)"
        ), line
        assert not home.exists(), "ingest lands nothing for a project that is not there"
    # a home that holds another project's data: said in one line, not a traceback
    check_home(Settings.from_env({}, home=home), projects.load("diabetes"))
    result = CliRunner().invoke(app, ["status", "--project", "wine", "--home", str(home)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: data home {home} holds data of project 'diabetes'"), line


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_binary_and_multiclass_need_their_classes() -> None:
    titanic = tomllib.loads((projects.example_dir("titanic") / "project.toml").read_text())
    with pytest.raises(ProjectError, match="positive_class: 2 is not one of"):
        parse(
            {
                **titanic,
                "positive_class": 2,
                "derived": [],
                "derived_module": None,
                "features": None,
            }
            | {"features": ["Pclass"]}
        )
    wine = tomllib.loads((projects.example_dir("wine") / "project.toml").read_text())
    two = [dict(c, allowed=["a", "b"]) if c["name"] == "cultivar" else c for c in wine["columns"]]
    with pytest.raises(ProjectError, match="multiclass needs 3 classes or more"):
        parse({**wine, "columns": two})


def _project_dir(tmp_path: Path, code: str) -> Path:
    d = tmp_path / "p"
    d.mkdir()
    text = (projects.example_dir("diabetes") / "project.toml").read_text()
    text = 'derived_module = "derived.py"\n' + text  # a top-level field: before any table
    text += '\n[[derived]]\nname = "bmi_per_age"\ntype = "float"\ninputs = ["bmi", "age"]\n'
    (d / "project.toml").write_text(text.replace('[example]\nsklearn = "diabetes"\n', ""))
    (d / "derived.py").write_text(code)
    return d


def test_a_derived_feature_that_raises_or_lies_about_its_type_is_refused_at_load(tmp_path) -> None:
    d = _project_dir(
        tmp_path, "def bmi_per_age(row):\n    return row['bmi'] / (row['age'] - row['age'])\n"
    )
    with pytest.raises(
        ProjectError, match="derived feature 'bmi_per_age' raises.*ZeroDivisionError"
    ):
        projects.load(d)
    (d / "derived.py").write_text("def bmi_per_age(row):\n    return 'fat'\n")
    projects._module.cache_clear()
    with pytest.raises(ProjectError, match="declared float but returned 'fat'"):
        projects.load(d)
    (d / "derived.py").write_text("def other(row):\n    return 1.0\n")
    projects._module.cache_clear()
    with pytest.raises(ProjectError, match="has no function 'bmi_per_age'"):
        projects.load(d)
    (d / "project.toml").write_text("name = \n")
    with pytest.raises(ProjectError, match="not valid TOML"):
        projects.load(d)


def test_only_a_new_nullable_column_is_a_compatible_change() -> None:
    old = shapes.load("diabetes")
    added = parse(_variant(columns=[*BASE["columns"], {"name": "smoker", "type": "boolean"}]))
    assert compatible(old, added) == []
    required = parse(
        _variant(
            columns=[*BASE["columns"], {"name": "smoker", "type": "boolean", "required": True}]
        )
    )
    assert "added as required" in compatible(old, required)[0]
    retyped = parse(_variant(columns=_col("age", type="integer")))
    assert compatible(old, retyped) == ["column 'age' retyped from float to integer"]
    removed = parse(_variant(columns=[c for c in BASE["columns"] if c["name"] != "s6"]))
    assert compatible(old, removed) == ["column 's6' removed"]
    assert "target changed" in compatible(old, parse(_variant(target="bmi")))[0]
    # another data set altogether: one line per kind of change, a few names each
    other = compatible(old, shapes.load("wine"))
    assert any(
        line.startswith("columns 'patient_id', 'progression', 'age', 'sex', 'bmi', 'bp' and ")
        and line.endswith(" more removed")
        for line in other
    ), other
    assert sum("added as required" in line for line in other) == 1


def test_every_example_round_trips_through_its_record() -> None:
    for name in shapes.NAMES:
        p = shapes.load(name)
        again = projects.from_dict(json.loads(json.dumps(p.to_dict())), p.directory)
        assert again == p


def test_the_titanic_tables_are_the_committed_json_schemas() -> None:
    """The exercise's contract: the composed schemas are the reviewed files."""
    p = shapes.load("titanic")
    for table in ("training_data", "predictions_data", "feedback"):
        committed = json.loads(
            (
                Path(__file__).parents[2] / "infrastructure" / "bigquery" / f"{table}.json"
            ).read_text()
        )
        assert [(c.name, c.type, c.mode) for c in table_schema(table, p)] == [
            (c["name"], c["type"], c.get("mode", "NULLABLE")) for c in committed
        ]


def test_string_keys_split_the_same_in_python_arrow_and_duckdb() -> None:
    import duckdb

    p = shapes.load("wine")
    keys = [f"wine-{i:05d}" for i in range(5000)] + ["vin-é-1", "ключ-2", "酒-3"]
    py = [split_for(k) for k in keys]
    arrow = add_split(pa.table({"sample_id": keys}), p).to_pylist()
    from minimlops.domain.schema import key_int_sql

    con = duckdb.connect()
    con.execute("CREATE TABLE t (k VARCHAR, i INTEGER)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [(k, i) for i, k in enumerate(keys)])
    u = f"((({key_int_sql('k', 'string', 'duckdb')}) * 2654435761) % 4294967296) / 4294967296.0"
    sql = [
        r[0]
        for r in con.execute(
            f"SELECT CASE WHEN {u} < 0.70 THEN 'TRAIN' WHEN {u} < 0.85 THEN 'VALIDATION' ELSE 'TEST' "
            "END FROM t ORDER BY i"
        ).fetchall()
    ]
    assert py == arrow == sql
    assert 0.67 < py.count("TRAIN") / len(py) < 0.73


# -- the pipeline, on every shape ----------------------------------------------


@pytest.fixture(scope="module", params=shapes.NAMES)
def trained(request):
    """A project's deps with 1,200 generated rows ingested and a model trained."""
    p = shapes.load(request.param)
    deps = fake_deps_for(p, cv_folds=3)
    table = shapes.rows(p, 1200, seed=1)
    _land_and_train(deps, "first.csv", table)
    return p, deps, table


def _landed(deps, name: str, table: pa.Table) -> list:
    """A file lands: ingest_data's events (ingestion_complete when it loaded)."""
    info = deps.store.write_bytes(LAND, name, _csv(table))
    return messagebus.handle(
        ObjectFinalized(bucket=LAND, name=name, generation=info.generation, size=info.size), deps
    )


def _land_and_train(deps, name: str, table: pa.Table) -> None:
    """A file lands and every event it causes is handled (ingest, then train)."""
    for e in _landed(deps, name, table):
        messagebus.handle(e, deps)


def _csv(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink)
    return sink.getvalue().to_pybytes()


def test_training_gives_a_version_with_the_tasks_metrics_and_baseline(trained) -> None:
    p, deps, _ = trained
    meta = registry_of(deps).versions()[-1]
    expected = {
        "binary": {"accuracy", "roc_auc", "log_loss", "brier", "f1"},
        "multiclass": {"accuracy", "macro_f1", "log_loss"},
        "regression": {"rmse", "mae", "r2"},
    }[p.task]
    assert expected <= set(meta["metrics"]["validation"])
    assert meta["decision"]["metric"] == p.primary_metric and meta["decision"]["promote"]
    assert p.primary_metric in meta["baseline"]["task"]
    model, base = (
        meta["metrics"]["validation"][p.primary_metric],
        meta["baseline"]["task"][p.primary_metric],
    )
    better = model > base if p.metric_direction == "max" else model < base
    assert better, f"{p.name}: {p.primary_metric} {model} vs baseline {base}"
    assert meta["project"]["task"] == p.task and meta["serving"]["runtime"] == "onnxruntime"
    # the model that serves, on TEST: every TEST row, the task's metrics
    test = meta["metrics"]["test"]
    assert test["rows"] == meta["training"]["test_rows"] > 0 and expected <= set(test)
    assert registry_of(deps).metadata(meta["version"])["metrics"]["evaluation_rows"]["test"] > 0


def test_vector_and_matrix_agree_and_onnx_matches_on_every_row(trained) -> None:
    p, deps, table = trained
    registry = registry_of(deps)
    version = registry.versions()[-1]["version"]
    model = registry.load(version)
    served = registry.load_serving(version)
    rows = [shapes.request_of(p, r) for r in table.to_pylist()]
    every = rows + [shapes.sparse(p, r) for r in rows[:50]]
    fs = model.features
    assert np.allclose(fs.matrix(every), np.array([fs.vector(r) for r in every]), equal_nan=False)
    # the server's rows: the request's structs, decoded by the fast check
    import orjson

    from minimlops.entrypoints.http.request_models import request_models

    structs = request_models(p).fast.rows(orjson.dumps(every), True)
    assert structs is not None, "every row takes the fast path"
    assert np.array_equal(fs.matrix(structs), fs.matrix(every))
    assert [fs.vector(s) for s in structs] == [fs.vector(r) for r in every]
    assert export.parity(model, served, every) <= export.TOLERANCE
    one = served.output(every[:1])
    assert np.allclose(one, model.output(every[:1]), rtol=1e-5, atol=1e-5)
    # one row at a time through the bound input (rewritten each time), from two
    # threads at once (each has its own): exactly what session.run gives that
    # row, and what the batch gives within float32 (a row alone and in a
    # matrix are summed in a different order)
    from concurrent.futures import ThreadPoolExecutor

    session = served.session
    by_run = [
        session.run(served.outputs, {served.input: np.array([fs.vector(r)], served.dtype)})[0]
        for r in every
    ]
    with ThreadPoolExecutor(2) as pool:
        bound = list(pool.map(lambda r: served._one(fs.vector(r)).copy(), every))
    assert all(np.array_equal(a, b) for a, b in zip(bound, by_run, strict=True))
    huge = [1e39] * fs.width  # beyond float32: written as inf, as numpy writes it
    with np.errstate(over="ignore"):
        expected = session.run(served.outputs, {served.input: np.array([huge], served.dtype)})[0]
    assert np.array_equal(served._one(huge), expected, equal_nan=True)
    # one row's output is written into the thread's bound buffer: what a
    # caller got is not changed by the next row (output() copies it)
    first = served.output(every[:1])
    kept = first.copy()
    second = served.output(every[1:2])
    assert np.array_equal(first, kept) and not np.shares_memory(first, second)
    alone = np.concatenate([served.output([r]) for r in every])
    assert np.allclose(alone, served.output(every), rtol=0, atol=export.TOLERANCE)
    # what the predictor reads: one row's values (plain Python past
    # onnxruntime for binary and regression) are its output, to a float's last
    # digit; a linear champion's one row is scikit-learn's float64 number
    singles = np.array([served.values([r])[0] for r in every])
    if served._linear is not None:
        assert np.allclose(singles, model.output(every), rtol=1e-12, atol=1e-12)
        assert np.allclose(singles, alone, rtol=export.TOLERANCE, atol=export.TOLERANCE)
    else:
        assert np.allclose(singles, alone, rtol=1e-12, atol=1e-15)
    assert served.values(every) == served.output(every).tolist()
    linear = registry.metadata(version)["serving"].get("linear")
    assert (linear is not None) == (
        model.algorithm in ("logistic_regression", "ridge_regression") and p.task != "multiclass"
    )
    assert (served._linear is not None) == (linear is not None)


@pytest.mark.parametrize("name", shapes.NAMES)
def test_a_linear_models_one_row_is_its_weights_on_the_features(name) -> None:
    """A logistic or ridge regression serves one row from its weights, the
    scaler folded in, by lookups (no feature vector, no onnxruntime): on every
    row, sparse and struct rows too, scikit-learn's number, calibrated or not,
    and onnxruntime's within its float32. Multiclass and trees keep ONNX."""
    import orjson

    from minimlops.entrypoints.http.request_models import request_models
    from minimlops.ml.candidates import candidates

    p = shapes.load(name)
    derive = projects.derived_functions(p)
    data = shapes.rows(p, 600, seed=5).to_pylist()
    spec = features.fit_spec(data, p, derive)
    fs = features.FeatureSet(spec, derive)
    estimator = (
        candidates(p.task, 0)[0]
        .make()
        .fit(fs.matrix(data), outputs.labels(p, [r[p.target] for r in data]))
    )
    model = TrainedModel(estimator, spec, candidates(p.task, 0)[0].name, derive=derive)
    linear = export.linear_form(model)
    if p.task == "multiclass":
        assert linear is None
        return
    assert linear is not None
    requests = [shapes.request_of(p, r) for r in data]
    every = requests + [shapes.sparse(p, r) for r in requests[:50]]
    structs = request_models(p).fast.rows(orjson.dumps(every), True)
    score, w = fs.linear(linear["weights"], linear["bias"]), np.array(linear["weights"])
    for row in [*every, *structs]:
        assert score(row) == pytest.approx(
            float(np.dot(fs.vector(row), w)) + linear["bias"], rel=1e-12, abs=1e-12
        )
    blob = export.to_onnx(model)
    if p.task == "binary":  # and once more with a Platt calibration kept
        calibrated = TrainedModel(
            estimator,
            {**spec, "calibration": {"method": "platt", "a": 1.3, "b": -0.2}},
            model.algorithm,
            derive=derive,
        )
    for m in [model] + ([calibrated] if p.task == "binary" else []):
        served = OnnxModel(blob, m.spec, m.algorithm, derive, linear=linear)
        assert served._linear is not None
        singles = np.array([served.values([r])[0] for r in every])
        assert np.allclose(singles, m.output(every), rtol=1e-12, atol=1e-12)
        alone = np.concatenate([served.output([r]) for r in every])  # onnxruntime, float32
        assert np.allclose(singles, alone, rtol=export.TOLERANCE, atol=export.TOLERANCE)
    assert np.allclose(
        outputs.linear_output(p.task, linear, fs.matrix(data)),
        estimator.predict(fs.matrix(data))
        if p.task == "regression"
        else estimator.predict_proba(fs.matrix(data))[:, 1],
        rtol=1e-12,
        atol=1e-12,
    )
    with pytest.raises(ValueError, match="weights for"):
        fs.linear(linear["weights"][1:], 0.0)
    forest = candidates(p.task, 0)[-1]
    assert export.linear_form(TrainedModel(forest.make(), spec, forest.name, derive=derive)) is None


def test_answers_fit_the_task_and_speak_the_datas_values(trained) -> None:
    p, deps, table = trained
    predictor = Predictor(registry_of(deps), deps.now, p)
    predictor.refresh()
    requests = [shapes.request_of(p, r) for r in table.to_pylist()[:20]]
    rows = predictor.predict(requests)
    single = predictor.predict(requests[:1])[0]
    for r in rows:
        if p.task == "regression":
            assert isinstance(r["prediction"], float) and "probability" not in r
        else:
            assert r["prediction"] in p.classes and 0 <= r["probability"] <= 1
        if p.task == "multiclass":
            probs = json.loads(r["probabilities"])
            assert set(probs) == {str(c) for c in p.classes}
            assert abs(sum(probs.values()) - 1) < 1e-5
            assert r["prediction"] == max(probs, key=probs.get)
    key = "prediction" if p.task == "regression" else "probability"
    assert single[key] == pytest.approx(rows[0][key], rel=1e-6, abs=1e-6)
    assert pa.Table.from_pylist(rows, schema=_schema(p))  # the log row fits predictions_data
    # the server's path: the fast check's structs, handed over, become the log
    # rows; the journal and BigQuery's insert get the same rows from them
    import orjson

    from minimlops.adapters.journal import encode
    from minimlops.entrypoints.http.request_models import request_models

    models = request_models(p)
    served = predictor.predict(models.fast.rows(orjson.dumps(requests), True), owned=True)
    rows = predictor.predict(models.many.validate_python(requests), owned=True)  # pydantic's dicts

    def logged(rows):
        return [
            {
                k: v
                for k, v in orjson.loads(line).items()
                if k not in ("uuid", "created_at") and v is not None
            }
            for line in encode(rows).splitlines()
        ]

    assert logged(served) == logged(rows)
    assert all(
        r.uuid and r.created_at and r.model_version == rows[0]["model_version"] for r in served
    )
    as_dicts = pa.Table.from_pylist([dict(r) for r in served], schema=_schema(p))
    assert as_dicts.drop(["uuid", "created_at"]).equals(
        pa.Table.from_pylist(rows, schema=_schema(p)).drop(["uuid", "created_at"])
    )


def test_minimlops_predict_names_every_bad_row_of_a_file_and_predicts_none() -> None:
    """`minimlops predict --file` with three bad rows of four says all three,
    one line each, as the API says them (it said only the first)."""
    from minimlops.entrypoints.cli.main import _checked_rows
    from minimlops.entrypoints.http.request_models import request_models
    from minimlops.errors import MinimlopsError

    models = request_models(projects.load("titanic"))
    good = {"Pclass": 3, "Sex": "male", "Age": 22, "SibSp": 1, "Parch": 0, "Fare": 7.25}
    rows = [{**good, "Age": "old"}, good, {**good, "Sex": None}, {**good, "Fare": True}]
    with pytest.raises(MinimlopsError) as said:
        _checked_rows(models, rows, single=False)
    lines = str(said.value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["row 1", "row 3", "row 4"], lines
    assert lines[1].startswith("row 3: Sex: ") and lines[2] == (
        "row 4: Fare: a number is needed here, not true"
    )
    assert len(_checked_rows(models, [good, good], single=False)) == 2


def test_minimlops_predict_reads_a_csv_as_ingestion_reads_a_landed_file(tmp_path) -> None:
    """A file of rows to predict in the form a landed file takes: "NA" as no
    value where the project says so (a column of its own may keep it as a
    value), names with spaces around, a date in the column's format."""
    import csv

    from minimlops.entrypoints.cli.main import _as_landed, _checked_rows, _read_rows
    from minimlops.entrypoints.http.request_models import request_models

    data = {
        "name": "homes",
        "key": "id",
        "target": "price",
        "task": "regression",
        "missing_values": ["NA"],
        "columns": [
            {"name": "id", "type": "integer", "required": True, "min": 0, "max": 10**6},
            {"name": "area", "type": "float"},
            {"name": "alley", "type": "string", "missing_values": []},
            {"name": "garage", "type": "string"},
            {"name": "sold", "type": "date", "format": "%d/%m/%Y", "required": True},
            {"name": "price", "type": "float", "required": True},
        ],
    }
    p = parse(data)
    path = tmp_path / "new.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(
            [["id", " area", "alley ", "garage", "sold"], [7, "NA", "NA", "NA", "20/06/2026"]]
        )
    rows, single = _read_rows(None, path)
    (row,) = _checked_rows(request_models(p), _as_landed(p, rows), single)
    assert row["area"] is None and row["garage"] is None and row["alley"] == "NA"
    assert row["sold"] == dt.date(2026, 6, 20)


def test_minimlops_predict_answers_the_tasks_fields_with_or_without_a_server(trained) -> None:
    """`minimlops predict` answers as POST /predict does for every task: in
    process (no server) and through a server, with the request's checked rows
    (dates and timestamps included) sent as JSON."""
    import types

    import httpx
    import orjson

    from minimlops.entrypoints.cli.client import InProcess, Remote
    from minimlops.entrypoints.http.fastpath import answer_keys
    from minimlops.entrypoints.http.request_models import request_models
    from minimlops.services.predict import PredictionLog

    p, deps, table = trained
    predictor = Predictor(registry_of(deps), deps.now, p)
    logged: list = []
    log = PredictionLog(logged.extend, flush_ms=1)
    app = types.SimpleNamespace(
        settings=types.SimpleNamespace(backend="gcp"), predictor=predictor, log=log
    )
    models = request_models(p)
    checked = [models.one.validate_python(shapes.request_of(p, r)) for r in table.to_pylist()[:3]]
    answered = InProcess(app).predict(checked)  # type: ignore[arg-type]
    assert [set(a) for a in answered["predictions"]] == [set(answer_keys(p.task))] * 3
    assert len(logged) == 3  # logged, as the endpoint logs
    if p.task == "multiclass":
        assert set(answered["predictions"][0]["probabilities"]) == {str(c) for c in p.classes}

    sent: list = []

    def server(request: httpx.Request) -> httpx.Response:
        sent.append(orjson.loads(request.content))  # what a server reads: JSON
        return httpx.Response(200, json={"predictions": [], "model_version": "1"})

    remote = Remote(types.SimpleNamespace(url="http://127.0.0.1:9", token="t"))  # type: ignore[arg-type]
    remote.http = httpx.Client(base_url="http://127.0.0.1:9", transport=httpx.MockTransport(server))
    when = {
        "order_date": dt.date(2025, 7, 5),
        "shipped_at": dt.datetime(2025, 7, 5, 9, tzinfo=dt.UTC),
    }
    remote.predict([{**checked[0], **when}])
    assert sent[0][0]["order_date"] == "2025-07-05"
    assert sent[0][0]["shipped_at"].startswith("2025-07-05T09:00:00")


def test_the_start_up_hint_is_a_request_in_the_projects_own_columns(trained) -> None:
    """`up` logs a curl to try: Titanic's is the exercise's request; any other
    project's is its champion's typical row, which the server answers."""
    p, deps, _ = trained
    example = admin.example_request(deps, registry_of(deps))
    if p.name == "titanic":
        assert example == {
            "Pclass": 3,
            "Sex": "male",
            "Age": 22,
            "SibSp": 1,
            "Parch": 0,
            "Fare": 7.25,
            "Embarked": "S",
        }
    else:
        assert example and set(example) <= set(p.input_columns) - {p.key}
        assert {c.name for c in p.columns if c.required} - {p.key, p.target} <= set(example)
    from minimlops.entrypoints.http.request_models import request_models

    row = request_models(p).one.validate_python(json.loads(json.dumps(example)))
    predictor = Predictor(registry_of(deps), deps.now, p)
    predictor.refresh()
    assert predictor.predict([row])[0]["prediction"] is not None
    if p.name != "titanic":  # before a first model there is nothing to try yet
        assert admin.example_request(fake_deps_for(p), registry_of(fake_deps_for(p))) is None


def test_the_start_up_curl_waits_for_a_first_model_even_titanics(capsys, caplog) -> None:
    """`up` on an empty home prints the curl to try once a model serves: the
    example's own request was printed at once, and answered with a 503."""
    import types

    from minimlops.entrypoints.runtime.serve import hint

    p = shapes.load("titanic")
    deps = fake_deps_for(p, cv_folds=3)
    app = types.SimpleNamespace(
        deps=deps, registry=registry_of(deps), predictor=types.SimpleNamespace(before_swap=None)
    )
    with caplog.at_level("INFO", logger="minimlops"):
        hint(app, "http://127.0.0.1:8080")
    assert "curl" not in capsys.readouterr().err
    assert "no model yet: one is trained when data lands" in caplog.text
    _land_and_train(deps, "first.csv", shapes.rows(p, 300, seed=1))
    with caplog.at_level("INFO", logger="minimlops"):
        app.predictor.before_swap("1")  # the first model is loaded
    (said,) = [line for line in capsys.readouterr().err.splitlines() if "curl" in line]
    assert said.startswith("curl -X POST") and '"Pclass": 3' in said  # a line of its own


def _schema(p):
    from minimlops.services.tables import arrow_schema

    return arrow_schema("predictions_data", p)


def _served_and_labelled(p, deps, rows: list[dict]) -> tuple[list[dict], dict]:
    """The champion's predictions of ``rows``, logged, and each one's true
    label sent as feedback: the predictions and feedback's answer."""
    predictor = Predictor(registry_of(deps), deps.now, p)
    predictor.refresh()
    logged = predictor.predict([shapes.request_of(p, r) for r in rows])
    deps.warehouse.append(
        deps.names.predictions_table, pa.Table.from_pylist(logged, schema=_schema(p))
    )
    labels = [(r["uuid"], d[p.target]) for r, d in zip(logged, rows, strict=True)]
    return logged, admin.feedback(deps, labels)


def test_feedback_is_typed_by_the_task_and_counted_by_the_warehouse(trained) -> None:
    """Live figures count the labelled predictions of rows that had not landed
    when they were asked; the 10 asked about rows the model had learnt from
    are left out, and said."""
    p, deps, table = trained
    data = shapes.rows(p, 40, seed=7, start=20001).to_pylist()
    logged, result = _served_and_labelled(p, deps, data + table.to_pylist()[:10])
    logged = logged[:40]
    assert result["accepted"] == 50
    live = {v["version"]: v for v in monitor.live_accuracy(deps, registry_of(deps))}
    champion = live[registry_of(deps).versions()[-1]["version"]]
    assert champion["labelled"] == 40 and champion["predicted_after_landing"] == 10
    if p.task == "regression":
        errors = [abs(r["prediction"] - d[p.target]) for r, d in zip(logged, data, strict=True)]
        assert champion["live_mae"] == pytest.approx(sum(errors) / 40)
        assert champion["live_rmse"] >= champion["live_mae"]
    else:
        right = sum(r["prediction"] == d[p.target] for r, d in zip(logged, data, strict=True))
        assert champion["live_accuracy"] == pytest.approx(right / 40)


@pytest.mark.parametrize("name", shapes.NAMES)
def test_the_gate_says_which_rows_it_judged_on(name: str, caplog) -> None:
    """With labelled predictions, the gate's rows are VALIDATION's and
    theirs: its log line and the version's decision say so (its figures are
    not the VALIDATION one printed before them). A labelled prediction whose
    row landed is that row (learned from in TRAIN, scored once in VALIDATION,
    held back in TEST): it is not counted again, whatever its split."""
    p = shapes.load(name)
    deps = fake_deps_for(p, cv_folds=3)
    table = shapes.rows(p, 1200, seed=1)
    _land_and_train(deps, "first.csv", table)
    # 30 labelled predictions of rows that never landed, and 10 of each split's
    # landed rows (labels that came as a file land as rows too): those are left out
    rows = table.to_pylist()
    unseen = shapes.rows(p, 30, seed=7, start=20001).to_pylist()
    by_split = [
        [r for r in rows if split_for(r[p.key]) == s_][:10]
        for s_ in ("TRAIN", "VALIDATION", "TEST")
    ]
    _served_and_labelled(p, deps, unseen + [r for part in by_split for r in part])
    caplog.clear()
    with caplog.at_level("INFO", logger="minimlops"):
        _land_and_train(deps, "second.csv", shapes.rows(p, 600, seed=2, start=5001))
    (line,) = [
        r.getMessage() for r in caplog.records if "on VALIDATION (baseline" in r.getMessage()
    ]
    meta = registry_of(deps).versions()[-1]
    valid = int(meta["metrics"]["validation"]["rows"])
    said = f"(VALIDATION's {valid:,} and 30 labelled predictions)"
    assert line.endswith(said), line
    assert meta["decision"]["reason"].endswith(said)  # stored: models show and the page say it
    assert meta["metrics"]["evaluation_rows"]["feedback"] == 30
    assert any(
        "30 of 60 labelled predictions are left out: their rows landed" in r.getMessage()
        for r in caplog.records
    )


def test_drift_covers_every_raw_feature_by_its_kind(trained) -> None:
    p, deps, table = trained
    categorical, numeric = monitor.drift_columns(p)
    raw = [f for f in p.features if f in p.column_names and p.column(f).kind != "text"]
    assert sorted(categorical + numeric) == sorted(raw)
    assert all(p.column(c).kind in ("categorical", "boolean") for c in categorical)


def test_a_second_file_retrains_and_the_gate_compares_on_the_same_rows(trained) -> None:
    p, deps, _ = trained
    before = len(registry_of(deps).versions())
    more = shapes.rows(p, 600, seed=2, start=5001)
    _land_and_train(deps, "second.csv", more)
    meta = registry_of(deps).versions()[-1]
    assert len(registry_of(deps).versions()) == before + 1
    assert meta["champion_compared"]["version"] is not None
    paired = meta["decision"]["paired"]
    assert paired["test"] == ("wilcoxon" if p.task == "regression" else "mcnemar")
    assert 0 <= paired["p_value"] <= 1


def test_requests_in_flight_together_are_answered_as_each_alone(trained) -> None:
    """One-row requests that reach the model in the same turn of the event
    loop are predicted in one run and logged in one write: each answer is
    the one it has alone (its own uuid and log row), a log that fails refuses
    them all, and a few rows run through the bound path score as one by one."""
    import asyncio

    import orjson

    from minimlops.entrypoints.http.fastpath import predict_answerer
    from minimlops.entrypoints.http.request_models import request_models
    from minimlops.entrypoints.http.stats import ServingStats
    from minimlops.ml.serving import SMALL

    p, deps, table = trained
    predictor = Predictor(registry_of(deps), deps.now, p)
    predictor.refresh()
    people = [shapes.request_of(p, r) for r in table.to_pylist()[:80]]
    served = predictor.current[1]
    one_by_one = np.concatenate([served.output([r]) for r in people])
    for n in (2, 7, SMALL, SMALL + 1):  # the bound runs, and the matrix beyond them
        assert np.allclose(served.output(people[:n]), one_by_one[:n], rtol=1e-6, atol=1e-7)
        assert np.allclose(served.values(people[:n]), one_by_one[:n], rtol=1e-6, atol=1e-7)
    calls, writes = [], []

    class Counted:  # the real predictor, its calls counted
        task = predictor.task
        unseen = predictor.unseen

        def predict(self, rows, owned=False):
            calls.append(len(rows))
            return predictor.predict(rows, owned=owned)

    class Log:
        fail = False

        async def log(self, rows):
            await asyncio.sleep(0)  # a durable log waits for its commit
            if self.fail:
                raise OSError("disk full")
            writes.append(list(rows))

    log = Log()
    answer = predict_answerer(
        Counted(), log, ServingStats(), request_models(p), max_body=1 << 20, max_batch=100
    )
    bodies = [orjson.dumps(r) for r in people]
    alone = [asyncio.run(answer(b, "application/json")) for b in bodies]

    async def in_flight():
        return await asyncio.gather(*(answer(b, "application/json") for b in bodies))

    calls.clear()
    writes.clear()
    together = asyncio.run(in_flight())
    assert sum(calls) == len(bodies) and max(calls) > len(bodies) // 2  # grouped
    assert len(writes) == len(calls)
    answered = [orjson.loads(body) for _, body in together]
    assert [status for status, _ in together] == [200] * len(bodies)
    field = "probability" if p.task != "regression" else "prediction"
    for a, (_, b) in zip(answered, alone, strict=True):
        b = orjson.loads(b)
        assert a[field] == pytest.approx(b[field], rel=1e-6, abs=1e-7)
        if p.task == "regression":
            assert a["prediction"] == pytest.approx(b["prediction"], rel=1e-6)
        else:
            assert a["prediction"] == b["prediction"]
    logged = {row["uuid"]: row for group in writes for row in group}
    assert len(logged) == len(bodies)  # each its own uuid, each logged once
    for a in answered:
        assert logged[a["uuid"]][field] == a[field]
    log.fail = True
    refused = asyncio.run(in_flight())
    assert {status for status, _ in refused} == {503}
    assert all(b"not stored" in body for _, body in refused)


def _answerer(p, predictor, log=None):
    """The /predict answerer of ``predictor`` (a log that keeps nothing, or ``log``)."""
    from minimlops.entrypoints.http.fastpath import predict_answerer
    from minimlops.entrypoints.http.request_models import request_models
    from minimlops.entrypoints.http.stats import ServingStats

    class Log:
        async def log(self, rows):
            return None

    return predict_answerer(
        predictor, log or Log(), ServingStats(), request_models(p), max_body=1 << 20, max_batch=100
    )


def test_a_category_the_model_never_learnt_is_answered_and_said(trained) -> None:
    """A typed category no one-hot slot learnt (a misspelling, a new value) is
    scored as the rest, as before, and the answer says so: the column, the
    value, the closest learnt category; in a batch, the first row and how many."""
    import asyncio

    import orjson

    p, deps, table = trained
    predictor = Predictor(registry_of(deps), deps.now, p)
    predictor.refresh()
    answer = _answerer(p, predictor)
    good = shapes.request_of(p, table.to_pylist()[0])
    status, body = asyncio.run(answer(orjson.dumps(good), "application/json"))
    assert status == 200 and "warnings" not in orjson.loads(body)
    learnt = [(n, cats) for n, cats, _ in predictor.current[1].features.learnt]
    text = [  # free text the project allows any value of (an `allowed` one refuses the rest)
        (n, cats)
        for n, cats in learnt
        if cats and all(isinstance(c, str) for c in cats) and p.column(n).allowed is None
    ]
    if p.name in ("titanic", "wine", "diabetes"):  # none: a 422 names the allowed values
        assert not text, learnt
        return
    name, cats = text[0]
    typo = cats[0] + "x"
    status, body = asyncio.run(answer(orjson.dumps({**good, name: typo}), "application/json"))
    assert status == 200, body
    (warning,) = orjson.loads(body)["warnings"]
    assert warning["field"] == name and repr(typo) in warning["message"]
    assert f"did you mean {cats[0]!r}" in warning["message"] and "index" not in warning
    batch = [good, {**good, name: typo}, {**good, name: typo}]
    status, body = asyncio.run(answer(orjson.dumps(batch), "application/json"))
    assert status == 200, body
    (warning,) = orjson.loads(body)["warnings"]
    assert (warning["field"], warning["index"], warning["rows"]) == (name, 1, 2)
    # another model swapped in while the row was logged: not its categories that scored it
    current = predictor.current

    class Swapping:
        async def log(self, rows):
            predictor.current = ("another", current[1])

    swapped = _answerer(p, predictor, Swapping())
    status, body = asyncio.run(swapped(orjson.dumps({**good, name: typo}), "application/json"))
    assert status == 200 and "warnings" not in orjson.loads(body), body


def _allowed(column, value: float) -> float | int | None:
    """``value`` as the column takes it (a whole number rounded outwards), or
    None if its own rules refuse it."""
    if column.type == "integer":
        value = int(np.floor(value) if value < 0 else np.ceil(value))
    ok = (column.min is None or value >= column.min) and (column.max is None or value <= column.max)
    return value if ok else None


def test_a_number_far_outside_what_the_model_learnt_is_answered_and_said(trained) -> None:
    """A number past the fitted values by more than a tenth of their span (a
    whole number by at least 1) is answered, and the answer says so: the
    column, the value and the range it was fitted on; in a batch, the first
    row and how many, far below and far above apart (row by row in a few
    rows, from the batch's own feature matrix in many: the same words).
    Inside the range, or just past its end, nothing is said; a project whose
    rules refuse every far value (a 422) never gets there."""
    import asyncio

    import orjson

    p, deps, table = trained
    predictor = Predictor(registry_of(deps), deps.now, p)
    predictor.refresh()
    answer = _answerer(p, predictor)
    rows = [shapes.request_of(p, r) for r in table.to_pylist()[:80]]
    status, body = asyncio.run(answer(orjson.dumps(rows), "application/json"))
    assert status == 200 and "warnings" not in orjson.loads(body)  # the rows it learnt from
    fs = predictor.current[1].features
    assert fs.ranges, "every shape has a number a person types"
    for name, days, lo, hi, low, high in fs.ranges:  # how far is far
        whole = days is not None or p.column(name).type == "integer"
        slack = max(features.FAR * (hi - lo), 1.0) if whole else features.FAR * (hi - lo)
        if days is None:
            assert (low, high) == pytest.approx((lo - slack, hi + slack)), name
    picked = []
    for name, days, lo, hi, low, high in fs.ranges:
        if days is None and name in rows[0]:
            column, step = p.column(name), max((high - hi) / 10, 1e-6)  # just past the limit
            above = _allowed(column, high + step)
            below = _allowed(column, low - step)
            if above is not None or below is not None:
                near = _allowed(column, hi + (high - hi) / 2)
                picked.append((name, above, below, lo, hi, near))
    if not picked:  # the generated rows span the rules: a far value is a 422 first
        assert p.name == "wine", fs.ranges  # (its generator draws from min to max)
        return
    name, above, below, lo, hi, near = picked[0]
    value = above if above is not None else below
    status, body = asyncio.run(answer(orjson.dumps({**rows[0], name: value}), "application/json"))
    assert status == 200, body
    (warning,) = orjson.loads(body)["warnings"]
    assert warning["field"] == name and "index" not in warning, warning
    message = warning["message"]
    assert message.startswith(f"{name} {value} is far {'above' if above is not None else 'below'}")
    assert "the model was trained on (" in message and message.endswith("an extrapolation")
    for many in (3, 80):  # row by row, and the batch's matrix (more rows than SMALL)
        batch = [dict(r) for r in rows[:many]]
        batch[1][name] = batch[many - 1][name] = value
        if above is not None and below is not None:
            batch[2][name] = below  # far below: said apart
        status, body = asyncio.run(answer(orjson.dumps(batch), "application/json"))
        assert status == 200, body
        said = orjson.loads(body)["warnings"]
        kept = {(w["field"], w["index"], w["rows"]) for w in said}
        assert (name, 1, 2) in kept and message in {w["message"] for w in said}, said
        assert len(said) == (2 if above is not None and below is not None else 1), said
    if near is not None and near > hi:  # just past the end: not far
        status, body = asyncio.run(
            answer(orjson.dumps({**rows[0], name: near}), "application/json")
        )
        assert status == 200 and "warnings" not in orjson.loads(body), (near, body)


def test_a_version_fitted_before_ranges_were_kept_says_nothing_of_them(trained) -> None:
    """A spec without fitted ranges (a version trained before they were kept)
    serves as before: no range warning, no error."""
    p, deps, table = trained
    model = Predictor(registry_of(deps), deps.now, p)
    model.refresh()
    served = model.current[1]
    spec = json.loads(json.dumps(served.spec))
    for col in spec["columns"]:
        col.pop("range", None)
        col.pop("far", None)
    old = features.FeatureSet(spec, served.features.derive)
    assert old.ranges == [] and old.width == served.features.width
    row = {**shapes.request_of(p, table.to_pylist()[0])}
    for name, *_ in served.features.ranges:
        if name in row:
            row[name] = 10**9 if p.column(name).max is None else p.column(name).max
    assert old.far([row]) == [] and old.vector(row) == served.features.vector(row)


def _served(p, rows: int, seed: int = 3):
    """A project trained on generated rows, its predictor and its /predict
    answerer (a log that keeps nothing): (table, predictor, answer)."""
    import asyncio

    from minimlops.entrypoints.http.fastpath import predict_answerer
    from minimlops.entrypoints.http.request_models import request_models
    from minimlops.entrypoints.http.stats import ServingStats

    deps = fake_deps_for(p, cv_folds=3)
    table = shapes.rows(p, rows, seed=seed)
    _land_and_train(deps, "a.csv", table)
    predictor = Predictor(registry_of(deps), deps.now, p)
    predictor.refresh()

    class Log:
        async def log(self, rows):
            await asyncio.sleep(0)  # a durable log waits for its commit

    answer = predict_answerer(
        predictor, Log(), ServingStats(), request_models(p), max_body=1 << 20, max_batch=100
    )
    return deps, table, predictor, answer


def test_a_derived_feature_that_raises_on_a_row_is_a_422_naming_it_and_fails_training(
    tmp_path,
) -> None:
    import asyncio

    import orjson

    code = (
        "def bmi_per_age(row):\n    if row['age'] == 99:\n        raise ValueError('no age 99')\n"
        "    return row['bmi'] / max(row['age'], 1)\n"
    )
    p = projects.load(_project_dir(tmp_path, code))
    deps, table, predictor, answer = _served(p, 400)
    good = shapes.request_of(p, table.to_pylist()[0])
    status, body = asyncio.run(
        answer(orjson.dumps([good, {**good, "age": 99}]), "application/json")
    )
    assert status == 422
    (error,) = orjson.loads(body)["errors"]
    assert (
        error["field"] == "bmi_per_age" and error["index"] == 1 and "no age 99" in error["message"]
    )
    status, body = asyncio.run(answer(orjson.dumps({**good, "age": 99}), "application/json"))
    assert status == 422
    (error,) = orjson.loads(body)["errors"]
    assert (
        error["field"] == "bmi_per_age" and "index" not in error and "no age 99" in error["message"]
    )
    status, body = asyncio.run(answer(orjson.dumps([good, good]), "application/json"))
    assert status == 200
    assert orjson.loads(body)["predictions"][0]["prediction"] == pytest.approx(
        predictor.predict([good])[0]["prediction"], rel=1e-6
    )

    # a linear champion's few rows are scored each as one: the row is still named
    from minimlops.errors import DerivedFeatureError

    served = predictor.current[1]
    with pytest.raises(DerivedFeatureError) as raised:
        served._each([good, good, {**good, "age": 99}])
    assert raised.value.where == 2

    # requests in flight together: only the one the feature fails on is refused
    async def together():
        bodies = [good, good, {**good, "age": 99}, good, good]
        return await asyncio.gather(*(answer(orjson.dumps(b), "application/json") for b in bodies))

    answered = asyncio.run(together())
    assert [status for status, _ in answered] == [200, 200, 422, 200, 200]
    (error,) = orjson.loads(answered[2][1])["errors"]
    assert error["field"] == "bmi_per_age" and "index" not in error
    # at training: the row is named, never silently dropped
    bad = table.slice(0, 1).to_pylist()[0] | {"patient_id": 9999, "age": 99.0}
    (done,) = _landed(deps, "b.csv", pa.Table.from_pylist([bad], table.schema))
    with pytest.raises(DerivedFeatureError, match="'bmi_per_age' failed on the row with key 9999"):
        messagebus.handle(done, deps)


def test_a_derived_feature_reads_an_absent_optional_column_as_none_in_every_path(tmp_path) -> None:
    """A derived feature sees every column, an absent optional one as None, at
    training and for one request, a batch (structs) and pydantic's rows alike."""
    import asyncio

    import orjson

    from minimlops.entrypoints.http.request_models import request_models

    d = tmp_path / "p"
    d.mkdir()
    text = (
        'derived_module = "derived.py"\n'
        + (projects.example_dir("churn") / "project.toml").read_text()
    )
    text += '\n[[derived]]\nname = "charges_known"\ntype = "boolean"\ninputs = ["total_charges"]\n'
    (d / "project.toml").write_text(text)
    (d / "derived.py").write_text(
        "def charges_known(row):\n    return row['total_charges'] is not None\n"
    )
    p = projects.load(d)
    _, table, predictor, answer = _served(p, 600)
    models = request_models(p)
    without = {
        k: v for k, v in shapes.request_of(p, table.to_pylist()[0]).items() if k != "total_charges"
    }
    for body in (without, [without, without]):
        status, out = asyncio.run(answer(orjson.dumps(body), "application/json"))
        assert status == 200, out
    assert predictor.predict(models.many.validate_python([without]))  # pydantic's dicts
    assert predictor.predict([without])  # a caller's own dict


def test_artifacts_round_trip_for_every_task(trained) -> None:
    p, deps, table = trained
    registry = registry_of(deps)
    version = registry.versions()[-1]["version"]
    model = registry.load(version)
    blob = artifacts.to_bytes(model)
    again = artifacts.from_bytes(blob, artifacts.sha256(blob), projects.derived_functions(p))
    rows = [shapes.request_of(p, r) for r in table.to_pylist()[:30]]
    assert np.array_equal(again.output(rows), model.output(rows))


def test_labels_are_the_datas_values() -> None:
    p = shapes.load("churn")
    assert outputs.labels(p, ["No", "Yes", "Yes"]).tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="'Maybe' is not one of the classes"):
        outputs.labels(p, ["Maybe"])


def test_a_regression_model_whose_live_error_grows_is_retrained_on_new_rows() -> None:
    p = shapes.load("diabetes")
    deps = fake_deps_for(p, cv_folds=3)
    table = shapes.rows(p, 800, seed=1)
    _land_and_train(deps, "first.csv", table)
    registry = registry_of(deps)
    predictor = Predictor(registry, deps.now, p)
    predictor.refresh()
    data = shapes.rows(p, 40, seed=7, start=20001).to_pylist()  # rows not landed
    logged = predictor.predict([shapes.request_of(p, r) for r in data])
    deps.warehouse.append(
        deps.names.predictions_table, pa.Table.from_pylist(logged, schema=_schema(p))
    )
    cfg = monitor.MonitorConfig(min_labels=30, drift_min_rows=10_000, error_ratio=1.5)
    admin.feedback(deps, [(r["uuid"], r["prediction"] + 1.0) for r in logged])  # small errors
    calm = monitor.check(deps, registry, cfg)
    assert calm.events == [] and calm.not_retrained == []
    assert any(q.startswith("live error: RMSE") and "within 1.5 x" in q for q in calm.quiet)
    admin.feedback(deps, [(r["uuid"], r["prediction"] + 500.0) for r in logged])  # far off
    checked = monitor.check(deps, registry, cfg)
    assert checked.events == []  # the champion's own rows
    (seen,) = checked.not_retrained
    assert "live RMSE" in seen and "VALIDATION RMSE" in seen and "not retrained" in seen
    # rows land (not trained on yet): the same drop asks for a training
    from tests.unit.test_ingest import land

    land(deps, "more.csv", _csv(shapes.rows(p, 200, seed=2, start=5001)))
    (fired,) = monitor.check(deps, registry, cfg).events
    assert "live RMSE" in fired.reason and "VALIDATION RMSE" in fired.reason


def test_the_typical_row_uses_exact_medians() -> None:
    import random
    import statistics
    from collections import Counter

    rng = random.Random(3)
    for _ in range(500):
        xs = [rng.choice([1, 2, 3, 5.5, 7, 10]) for _ in range(rng.randint(1, 3000))]
        assert features._weighted_median(Counter(xs)) == float(statistics.median(xs))


def test_the_typical_row_of_a_mostly_empty_optional_column_is_empty() -> None:
    """The page's defaults, the start-up curl and "what moved it" compare with
    a typical row: a category empty in most rows is typically empty, not its
    commonest value; a number's is the median of the values given."""
    p = shapes.load("churn")
    category = next(
        c.name
        for c in p.columns
        if c.kind == "categorical" and not c.required and c.type == "string"
    )
    number = next(c.name for c in p.columns if c.kind == "numeric" and not c.required)
    rows = shapes.rows(p, 300, seed=4).to_pylist()
    value = next(r[category] for r in rows if r[category] is not None)
    for i, r in enumerate(rows):
        r[category] = value if i % 3 == 0 else None
        r[number] = None if i % 3 else 5
    ref = features.fit_spec(rows, p, projects.derived_functions(p))["reference"]
    assert ref[category] is None and ref[number] == 5
    for i, r in enumerate(rows):
        r[category] = value if i % 3 else None
    assert features.fit_spec(rows, p, projects.derived_functions(p))["reference"][category] == value


@pytest.mark.parametrize("name", ["wine", "diabetes"])
def test_a_first_file_of_a_hundred_rows_serves_a_model_and_says_how_little_judged_it(name) -> None:
    """~15 VALIDATION rows: too few for a challenger, but a first model serves
    (serving none would leave a new user with nothing), and its decision says so."""
    p = shapes.load(name)
    deps = fake_deps_for(p, cv_folds=3)
    _land_and_train(deps, "small.csv", shapes.rows(p, 100, seed=8))
    (meta,) = registry_of(deps).versions()
    assert meta["decision"]["promote"] and "judged on only" in meta["decision"]["reason"]
    pointer, _ = registry_of(deps).champion()
    assert pointer is not None and pointer["version"] == meta["version"]
    row = shapes.request_of(p, shapes.rows(p, 1, seed=9).to_pylist()[0])
    predictor = Predictor(registry_of(deps), deps.now, p)
    predictor.refresh()
    assert predictor.predict([row])[0]["model_version"] == meta["version"]


def test_an_integer_outside_bigint_is_refused_naming_the_field() -> None:
    """Integer columns are BIGINT in every table: a request's number that no
    table could hold is a 422 on the field (fast check and pydantic alike),
    not an answer whose log row could never be imported."""
    import asyncio

    import orjson

    from minimlops.entrypoints.http.fastpath import predict_answerer
    from minimlops.entrypoints.http.request_models import request_models
    from minimlops.entrypoints.http.stats import ServingStats

    p = projects.from_dict(
        {
            "name": "counts",
            "key": "id",
            "target": "y",
            "task": "regression",
            "columns": [
                {"name": "id", "type": "string", "required": True},
                {"name": "visits", "type": "integer", "required": False},
                {"name": "y", "type": "integer", "required": True},
            ],
        }
    )
    models = request_models(p)
    for inside in (2**63 - 1, -(2**63)):
        body = b'{"visits": %d}' % inside
        fast = [dict(r) for r in models.fast.rows(body, False)]  # a struct read as a dict
        assert fast == [{"visits": inside}] == [models.one.validate_json(body)]
    logged = []

    class Log:
        async def log(self, rows):
            logged.extend(rows)

    class Predictor:  # answers only what passed the check
        task, version = "regression", "1"

        def unseen(self, rows):
            return []

        def predict(self, rows, owned):
            return [{**r, "prediction": 1.0, "uuid": "u", "model_version": "1"} for r in rows]

    answer = predict_answerer(
        Predictor(), Log(), ServingStats(), models, max_body=1 << 20, max_batch=10
    )
    for outside in (2**63, 2**64 - 1, -(2**63) - 1):
        for body in (b'{"visits": %d}' % outside, b'[{"visits": 1}, {"visits": %d}]' % outside):
            status, answer_body = asyncio.run(answer(body, "application/json"))
            assert status == 422, answer_body
            (error,) = orjson.loads(answer_body)["errors"]
            assert error["field"] == "visits"
            assert "9223372036854775" in error["message"] or "maximum size" in error["message"]
    assert logged == []
    with pytest.raises(ValueError, match="less than or equal to 9223372036854775807"):
        models.feedback.validate_json(b'{"uuid": "u", "y": %d}' % 2**63)


def test_a_binary_threshold_decides_the_answers_and_the_figures_that_count_them() -> None:
    """threshold = 0.3: the positive class from probability 0.3 up, in every
    answer (/predict and /explain alike) and in the version's figures that
    count answers (accuracy, F1, the confusion matrix); the version keeps the
    threshold it was measured with, so changing it retrains."""
    from minimlops.domain.project import shape_changes
    from minimlops.ml.outputs import labels, predicted

    base = shapes.load("titanic")
    p = projects.from_dict({**base.to_dict(), "threshold": 0.3}, base.directory)
    assert p.threshold == 0.3 and p.to_dict()["threshold"] == 0.3
    assert "threshold" not in base.to_dict() and "threshold" not in base.model_shape()
    assert shape_changes(base.model_shape(), p.model_shape()) == [
        "threshold changed from 0.5 to 0.3"
    ]
    deps = fake_deps_for(p, cv_folds=3)
    table = shapes.rows(p, 1500, seed=1)
    _land_and_train(deps, "first.csv", table)
    registry = registry_of(deps)
    version = registry.versions()[-1]["version"]
    predictor = Predictor(registry, deps.now, p)
    predictor.refresh()
    data = table.to_pylist()[:400]
    logged = predictor.predict([shapes.request_of(p, r) for r in data])
    negative, positive = p.classes
    assert all((r["prediction"] == positive) == (r["probability"] >= 0.3) for r in logged)
    assert any(0.3 <= r["probability"] < 0.5 for r in logged)  # 1 here; 0 at 0.5
    confusion = registry.evaluation(version)["confusion"]
    assert confusion["threshold"] == 0.3
    # the version's TEST accuracy counts the answers at 0.3 (the served model's)
    meta = registry.metadata(version)
    test = [r for r in table.to_pylist() if split_for(r[p.key]) == "TEST"]
    served = registry.load(version)
    out = np.asarray(served.output([shapes.request_of(p, r) for r in test]))
    y = labels(p, [r[p.target] for r in test])
    assert meta["metrics"]["test"]["accuracy"] == pytest.approx(
        float(np.mean(predicted("binary", out, 0.3) == y))
    )
    # the threshold changes to 0.7: the gate scores the champion at its own 0.3, as it
    # serves (on VALIDATION, through its TRAIN-only fit)
    from dataclasses import replace

    from minimlops.domain.events import RetrainRequested
    from minimlops.ml import artifacts

    later = projects.from_dict({**base.to_dict(), "threshold": 0.7}, base.directory)
    messagebus.handle(RetrainRequested(reason="threshold"), replace(deps, project=later))
    second = registry.metadata(registry.versions()[-1]["version"])
    champion = artifacts.from_bytes(*registry.measured(version), deps.derive)
    valid = [r for r in table.to_pylist() if split_for(r[p.key]) == "VALIDATION"]
    out = np.asarray(champion.output([shapes.request_of(p, r) for r in valid]))
    y = labels(p, [r[p.target] for r in valid])
    compared = second["champion_compared"]["evaluation"]
    at = {t: float(np.mean(predicted("binary", out, t) == y)) for t in (0.3, 0.7)}
    assert compared["accuracy"] == pytest.approx(at[0.3]) and at[0.3] != at[0.7]
    for bad, said in ((0, "not a probability between 0 and 1"), (True, "not a probability")):
        with pytest.raises(ProjectError, match=said):
            projects.from_dict({**base.to_dict(), "threshold": bad}, base.directory)
    with pytest.raises(ProjectError, match="only a binary task has one"):
        projects.from_dict({**shapes.load("diabetes").to_dict(), "threshold": 0.3})


def test_a_request_without_a_required_value_or_with_true_for_a_number_is_refused() -> None:
    """A required text sent as "" or the project's word for no value, a null
    for a required field, true for a number, a number no BIGINT holds: each a
    422 naming the field and what is wrong (a landed row's blank is refused as
    well), nothing logged; an optional field's blank still means not given."""
    import asyncio

    import orjson

    from minimlops.entrypoints.http.fastpath import predict_answerer
    from minimlops.entrypoints.http.request_models import request_models
    from minimlops.entrypoints.http.stats import ServingStats

    p = projects.from_dict(
        {
            "name": "loans",
            "key": "id",
            "target": "y",
            "task": "regression",
            "missing_values": ["NA"],
            "columns": [
                {"name": "id", "type": "string", "required": True},
                {"name": "home", "type": "string", "required": True},
                {"name": "purpose", "type": "string", "required": False},
                {"name": "amount", "type": "integer", "required": True},
                {"name": "rate", "type": "float", "required": False},
                {"name": "term", "type": "integer", "required": False, "allowed": [12, 24]},
                {"name": "secured", "type": "boolean", "required": False},
                {"name": "joint", "type": "boolean", "required": False, "allowed": [False]},
                {"name": "y", "type": "float", "required": True},
            ],
        }
    )
    logged = []

    class Log:
        async def log(self, rows):
            logged.extend(rows)

    class Predictor:
        task, version = "regression", "1"

        def unseen(self, rows):
            return []

        def predict(self, rows, owned):
            return [{**dict(r), "prediction": 1.0, "uuid": "u", "model_version": "1"} for r in rows]

    answer = predict_answerer(
        Predictor(), Log(), ServingStats(), request_models(p), max_body=1 << 20, max_batch=10
    )
    good = {"home": "rent", "purpose": "car", "amount": 100, "rate": 0.1}
    refused = [
        ({"home": ""}, "home", "a value is required here ('' means no value)"),
        ({"home": "NA"}, "home", "a value is required here ('NA' means no value)"),
        ({"home": None}, "home", "a value is required here (null was sent)"),
        ({"amount": None}, "amount", "a value is required here (null was sent)"),
        ({"amount": True}, "amount", "a number is needed here, not true"),
        ({"rate": False}, "rate", "a number is needed here, not false"),
        ({"amount": 1e300}, "amount", "a whole number from -9223372036854775808 to"),
        ({"term": True}, "term", "a number is needed here, not true"),  # Literal took it as 1
        (
            {"secured": "on"},  # bool took it; a landed file's cell would be refused
            "secured",
            "true or false is needed here (as text: true/t/yes/y/1/false/f/no/n/0, any case), "
            "not 'on'",
        ),
        ({"secured": 1}, "secured", "true or false is needed here, not 1"),
        ({"joint": 0}, "joint", "true or false is needed here, not 0"),  # Literal took it as false
    ]
    for change, field, said in refused:
        for body in (orjson.dumps({**good, **change}), orjson.dumps([good, {**good, **change}])):
            status, answer_body = asyncio.run(answer(body, "application/json"))
            assert status == 422, (change, answer_body)
            (error,) = orjson.loads(answer_body)["errors"]
            assert error["field"] == field and error["message"].startswith(said), error
    assert logged == []
    status, _ = asyncio.run(
        answer(orjson.dumps({**good, "secured": True, "joint": False}), "application/json")
    )
    assert status == 200 and logged[-1]["secured"] is True
    # as text, the words a landed file's boolean cell may hold (a CSV's rows
    # given to `minimlops predict --file` answer as the file would load)
    for word, truth in (("true", True), ("FALSE", False), (" Yes ", True), ("0", False)):
        joint = {} if truth else {"joint": word}  # its only allowed value: false
        status, _ = asyncio.run(
            answer(orjson.dumps({**good, "secured": word, **joint}), "application/json")
        )
        assert status == 200 and logged[-1]["secured"] is truth, (word, logged[-1])
        assert truth or logged[-1]["joint"] is False
    for blank in ("", "NA", "  ", " NA "):  # an optional field's blank: not given
        status, _ = asyncio.run(
            answer(orjson.dumps({**good, "purpose": blank}), "application/json")
        )
        assert status == 200 and logged[-1]["purpose"] is None, (blank, logged[-1])
    feedback = request_models(p).feedback
    with pytest.raises(ValueError, match="a number is needed here, not true"):
        feedback.validate_python({"uuid": "u", "y": True})


@pytest.mark.parametrize("name", ["wine", "churn"])
def test_a_feedback_label_is_read_as_a_requests_text_is(name) -> None:
    """Spaces around a class are dropped, as in a request's fields and in
    ingestion (a label copied from "39, State-gov"-style files); another
    value is still refused, naming the classes."""
    from pydantic import ValidationError

    from minimlops.entrypoints.http.request_models import request_models

    p = shapes.load(name)
    feedback = request_models(p).feedback
    first = p.classes[0]
    assert feedback.validate_python({"uuid": "u", p.target: f" {first} "})[p.target] == first
    with pytest.raises(ValidationError, match=repr(first)):
        feedback.validate_python({"uuid": "u", p.target: f"{first}!"})


def test_a_feedback_value_obeys_the_targets_rules_as_a_landed_row_does() -> None:
    """diabetes declares progression from 0 to 1000: a label of -5 would be
    refused in a file, so it is refused as feedback too, naming the bound."""
    from pydantic import ValidationError

    from minimlops.entrypoints.http.request_models import request_models

    p = shapes.load("diabetes")
    feedback = request_models(p).feedback
    assert feedback.validate_python({"uuid": "u", p.target: 151.0})[p.target] == 151.0
    for bad, said in ((-5, "greater than or equal to 0"), (1200, "less than or equal to 1000")):
        with pytest.raises(ValidationError, match=said):
            feedback.validate_python({"uuid": "u", p.target: bad})
    # a numeric target with allowed values (a rating from 1 to 5, predicted as a number)
    rating = projects.from_dict(
        {
            "name": "ratings",
            "key": "id",
            "target": "stars",
            "task": "regression",
            "columns": [
                {"name": "id", "type": "string", "required": True},
                {"name": "price", "type": "float", "required": False},
                {"name": "stars", "type": "integer", "required": True, "allowed": [1, 2, 3, 4, 5]},
            ],
        }
    )
    feedback = request_models(rating).feedback
    assert feedback.validate_python({"uuid": "u", "stars": 4})["stars"] == 4
    with pytest.raises(ValidationError, match="Input should be 1, 2, 3, 4 or 5"):
        feedback.validate_python({"uuid": "u", "stars": 7})


@pytest.mark.parametrize("name", shapes.NAMES)
def test_a_second_label_replaces_the_first_and_the_answer_says_so(name: str) -> None:
    """The newest label of a prediction counts: feedback answers which ids it
    relabelled (sent before, or twice in one list, where the last is kept)."""
    p = shapes.load(name)
    deps = fake_deps_for(p, cv_folds=3)
    table = shapes.rows(p, 600, seed=1)
    _land_and_train(deps, "first.csv", table)
    data = table.to_pylist()[:3]
    logged, first = _served_and_labelled(p, deps, data)
    assert first["replaced"] == [] and first["accepted"] == 3
    a, b, c = (r["uuid"] for r in logged)
    y = [d[p.target] for d in data]
    again = admin.feedback(deps, [(a, y[1]), (b, y[1]), (b, y[0]), ("nope", y[0])])
    assert again == {"accepted": 2, "unknown": ["nope"], "replaced": [a, b]}
    labelled = deps.warehouse.labelled_predictions(
        deps.names.predictions_table, deps.names.feedback_table
    )
    now = dict(zip(labelled["uuid"].to_pylist(), labelled["label"].to_pylist(), strict=True))
    assert now == {a: y[1], b: y[0], c: y[2]}  # the newest label of each, and c untouched


@pytest.mark.parametrize("width", [80, 100])
def test_models_list_fits_the_terminal_and_cuts_no_word(trained, width: int) -> None:
    """`minimlops models list` on an 80- or 100-column terminal: no line wider,
    every column there, the algorithm's name and the decision's reason whole
    (wrapped, not cut with "…")."""
    import io

    from rich.console import Console

    from minimlops.entrypoints.cli.report import models_table

    p, deps, _ = trained
    data = admin.list_models(registry_of(deps))
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(models_table(data))
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= width, out.getvalue()
    assert "…" not in out.getvalue()
    header = next(i for i, line in enumerate(lines) if line.startswith("ver "))
    assert lines[header - 1].split() == ["fit"]  # "fit rows", on two lines
    for column in ("rows", p.primary_metric, "TEST", "baseline", "algorithm", "decision"):
        assert column in lines[header], lines[header]
    at = lines[header].index("decision")
    end = next(i for i, line in enumerate(lines) if line.startswith(f"{p.primary_metric}: the"))
    test_at = lines[header].index("TEST")
    for v, line in zip(data["versions"], lines[header + 2 :], strict=False):
        if line.startswith(v["version"]):  # the served model's TEST figure, beside VALIDATION's
            assert f"{v['test'][p.primary_metric]:.3f}" in line[: test_at + 4], line
    shown = " ".join(" ".join(line[at:].split()) for line in lines[header + 2 : end])
    for v in data["versions"]:
        assert v["algorithm"] in out.getvalue()
        d = v["decision"]
        assert ("promoted: " if d["promote"] else "kept: ") + d["reason"] in shown, shown


def test_a_misspelt_required_field_is_named_in_the_refusal() -> None:
    """A required field sent misspelt ("Sexx") was refused saying only that
    Sex is required; the refusal now names the field spelt like it, for one
    row and a batch, and a request without it says nothing more."""
    import asyncio

    import orjson

    p = shapes.load("titanic")
    _, table, _, answer = _served(p, 600)
    row = shapes.request_of(p, table.slice(0, 1).to_pylist()[0])
    typo = {**{k: v for k, v in row.items() if k != "Sex"}, "Sexx": "male"}

    def refused(body: object) -> list:
        status, out = asyncio.run(answer(orjson.dumps(body), "application/json"))
        assert status == 422, out
        return orjson.loads(out)["errors"]

    (one,) = refused(typo)
    assert one["field"] == "Sex" and one["message"].endswith("(the request has 'Sexx': misspelt?)")
    (many,) = refused([row, typo])
    assert many["index"] == 1 and many["message"].endswith("(the row has 'Sexx': misspelt?)")
    (plain,) = refused({k: v for k, v in row.items() if k != "Sex"})
    assert "misspelt" not in plain["message"]
    (target,) = refused({**{k: v for k, v in row.items() if k != "Sex"}, "Survived": 1})
    assert "misspelt" not in target["message"]
    # a batch wrapped in an object (Vertex AI's shape): one error saying what a batch is,
    # not every field of the row missing
    (wrapped,) = refused({"instances": [row, row]})
    assert (
        wrapped["field"] == "instances" and "a batch is a JSON list of rows" in wrapped["message"]
    )
    # a row with its own fields and a list of objects in another: its own errors, as before
    (own,) = refused({**typo, "history": [{"k": 1}]})
    assert own["field"] == "Sex" and "batch" not in own["message"]
    # feedback's batch, so wrapped, is said to be a list of labels (POST /feedback's check)
    from pydantic import ValidationError

    from minimlops.entrypoints.http.fastpath import field_errors
    from minimlops.entrypoints.http.request_models import request_models

    wrapped_labels = {"labels": [{"uuid": "u", "Survived": 1}]}
    with pytest.raises(ValidationError) as exc:
        request_models(p).feedback.validate_python(wrapped_labels)
    (said,) = field_errors(exc.value, False, wrapped_labels, ("uuid", "Survived"), "labels")
    assert said["field"] == "labels" and "a batch is a JSON list of labels" in said["message"]


def test_a_misspelt_field_in_a_prediction_request_is_answered_with_a_warning() -> None:
    """An unknown field is ignored (the documented contract), so a misspelt
    optional field ("Agee") was answered as if the age were unknown, without
    a word: the answer now says so, naming the field and the closest one,
    on the fast path and pydantic's, for one row and a batch. The target and
    the key are request fields or expected, and get none."""
    import asyncio

    import orjson

    from minimlops.entrypoints.http.request_models import request_models

    p = shapes.load("titanic")
    _, table, _, answer = _served(p, 600)
    models = request_models(p)
    row = shapes.request_of(p, table.slice(0, 1).to_pylist()[0])
    row.update(Age=30.0, Sex="female")
    without_age = {k: v for k, v in row.items() if k != "Age"}

    def post(body: object, raw: bytes | None = None) -> dict:
        status, out = asyncio.run(
            answer(raw if raw is not None else orjson.dumps(body), "application/json")
        )
        assert status == 200, out
        return orjson.loads(out)

    said = "'Agee' is not a field of Passenger, so it was ignored (did you mean 'Age'?)"
    one = post({**without_age, "Agee": 30})
    assert one["warnings"] == [{"field": "Agee", "message": said}]
    plain = post(without_age)
    assert "warnings" not in plain and plain["probability"] == one["probability"]  # Age imputed
    # a short form of a column's name (a prefix of one column only) is named too
    short = post({**{k: v for k, v in row.items() if k != "Embarked"}, "Emb": "S"})
    assert short["warnings"][0]["message"].endswith("(did you mean 'Embarked'?)")
    # pydantic's path (spaces around a text: the fast check leaves it to pydantic) says the same
    assert (
        post({**without_age, "Name": f" {row['Name']} ", "Agee": 30})["warnings"][0]["field"]
        == "Agee"
    )
    # the target (a row of the data file), the key and JSON with spaces before colons: no warning
    for body in ({**row, "Survived": 1}, {**row, "PassengerId": 77}):
        assert "warnings" not in post(body)
    spaced = orjson.dumps(row).replace(b'":', b'" :')
    assert "warnings" not in post(None, spaced)
    # a batch: its decoder refuses the unknown field, pydantic reads it, the answer says where
    batch = [row, {**without_age, "Agee": 30}, {**row, "Embarkd": "S"}, {**row, "Agee": 1}]
    assert models.fast.rows(orjson.dumps(batch), True) is None
    assert models.fast.rows(orjson.dumps([row, row]), True) is not None
    many = post(batch)
    assert len(many["predictions"]) == 4
    assert many["warnings"] == [
        {"field": "Agee", "message": said, "index": 1, "rows": 2},
        {
            "field": "Embarkd",
            "index": 2,
            "rows": 1,
            "message": "'Embarkd' is not a field of Passenger, so it was ignored (did you mean "
            "'Embarked'?)",
        },
    ]
    assert "warnings" not in post([row, {**row, "Survived": 0}])


def test_a_generated_keys_labelled_predictions_are_known_once_their_rows_land() -> None:
    """With a generated key (a hash of the row's values, its label among
    them) a request carries no key. A label sent by uuid gives its prediction
    the key the row gets when it lands: once it has landed, the gate does not
    judge on it again, and a prediction asked after it landed (a row the model
    learnt) is left out of the live figures."""
    data = tomllib.loads((projects.example_dir("diabetes") / "project.toml").read_text())
    generated = {"name": "row_id", "type": "string", "required": True, "generated": True}
    columns = [c for c in data["columns"] if c["name"] != data["key"]]
    p = projects.from_dict({**data, "key": "row_id", "columns": [generated, *columns]}, "")
    made = shapes.rows(shapes.load("diabetes"), 900, seed=1).drop_columns([data["key"]])
    first, second = made.slice(0, 600), made.slice(600, 300)
    deps = fake_deps_for(p, cv_folds=3)
    _land_and_train(deps, "first.csv", first)
    # 20 rows of the next file, asked about and labelled before it lands
    asked = second.slice(0, 20).to_pylist()
    logged, result = _served_and_labelled(p, deps, asked)
    assert result["accepted"] == 20 and all(r.get("row_id") is None for r in logged)
    fed = deps.warehouse.tables[deps.names.feedback_table][-20:]
    assert all(f["row_id"] and f["row_id"].endswith("-1") for f in fed)
    before = deps.warehouse.labelled_predictions(
        deps.names.predictions_table, deps.names.feedback_table, landed_in="training_data"
    )
    assert not any(before.column("landed").to_pylist())
    _land_and_train(deps, "second.csv", second)
    keys = {r["row_id"] for r in deps.warehouse.tables["training_data"]}
    assert {f["row_id"] for f in fed} <= keys, "the label's key is the landed row's"
    meta = registry_of(deps).versions()[-1]
    assert meta["metrics"]["evaluation_rows"].get("feedback", 0) == 0  # all 20 landed: left out
    # those 20 were asked before their rows landed: live figures count them; 10
    # rows of the first file asked about now (the model learnt them) do not
    _served_and_labelled(p, deps, first.slice(0, 10).to_pylist())
    live = {v["version"]: v for v in monitor.live_accuracy(deps, registry_of(deps))}
    assert sum(v["labelled"] for v in live.values()) == 20
    assert sum(v["predicted_after_landing"] for v in live.values()) == 10

    # the predictions cannot be read: the labels are stored all the same, keyless
    def unreadable(*_):
        raise RuntimeError("bytes billed over the limit")

    deps.warehouse.predictions_of = unreadable
    _, result = _served_and_labelled(p, deps, second.slice(20, 5).to_pylist())
    assert result["accepted"] == 5
    assert [f["row_id"] for f in deps.warehouse.tables[deps.names.feedback_table][-5:]] == [
        None
    ] * 5


@pytest.mark.parametrize("task", ["regression", "binary"])
def test_the_monitor_table_shows_label_delay_coverage_and_what_was_left_out(task: str) -> None:
    """What docs/how-it-works.md says `minimlops monitor` shows, for every task."""
    from rich.console import Console

    from minimlops.entrypoints.cli.report import live_table

    row = {
        "version": "3",
        "served": 400,
        "labelled": 200,
        "label_coverage": 0.5,
        "predicted_after_landing": 12,
        "label_delay_s": {"p50": 90.0, "p90": 7200.0},
        "interval_95": None if task == "regression" else [0.8, 0.9],
        "live_accuracy": None if task == "regression" else 0.85,
        "estimated": None,
        **(
            {"live_mae": 3.7, "live_rmse": 4.8, "mae_interval_95": [3.5, 3.9]}
            if task == "regression"
            else {}
        ),
    }
    console = Console(record=True, width=200)
    console.print(live_table([row]))
    text = " ".join(console.export_text().split())
    assert "200 (50%) +12 after landing" in text and "1.5 min / 2 h" in text, text
    assert "left out of the live figures" in text
    if task == "regression":
        assert "3.700 (3.500–3.900)" in text, text


def test_a_number_sent_as_text_that_reads_as_one_is_that_number(trained) -> None:
    """As http-api.md says: "4.2" for a number is 4.2 (a CSV export's text),
    on one row and in a batch alike; "three" is a 422 naming the field; a
    number with allowed values takes numbers only."""
    import asyncio

    import orjson

    p, deps, table = trained
    predictor = Predictor(registry_of(deps), deps.now, p)
    predictor.refresh()
    answer = _answerer(p, predictor)
    good = shapes.request_of(p, table.to_pylist()[0])
    name = next(
        c.name
        for c in p.columns
        if c.type in ("float", "integer")
        and c.name in good
        and good[c.name] is not None
        and c.name != p.key
        and c.allowed is None
    )
    as_text = {**good, name: str(good[name])}

    def answered(body):
        status, out = asyncio.run(answer(orjson.dumps(body), "application/json"))
        return status, orjson.loads(out)

    status, plain = answered(good)
    assert status == 200, plain
    for body, pick in ((as_text, lambda a: a), ([good, as_text], lambda a: a["predictions"][1])):
        status, out = answered(body)
        assert status == 200, out
        assert pick(out)["prediction"] == plain["prediction"], (name, out)
    status, out = answered({**good, name: "three"})
    assert status == 422 and out["errors"][0]["field"] == name, out
    if listed := [c for c in p.columns if c.type == "integer" and c.allowed and c.name in good]:
        status, out = answered({**good, listed[0].name: str(good[listed[0].name])})
        assert status == 422 and out["errors"][0]["field"] == listed[0].name, out
