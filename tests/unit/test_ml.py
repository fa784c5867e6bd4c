"""Features, training and artifacts: code, data and behavioural model tests."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from minimlops import projects
from minimlops.errors import ArtifactIntegrityError
from minimlops.generate import passengers
from minimlops.ml import artifacts, export, features, metrics, training
from minimlops.ml.model import TrainedModel
from minimlops.ml.serving import OnnxModel
from tests.conftest import TITANIC, fresh_python

DERIVE = projects.derived_functions(TITANIC)
title, deck = DERIVE["title"], DERIVE["deck"]


def fit(rows, **kw):
    return training.select_and_fit(rows, TITANIC, DERIVE, **kw)


def scored(model, rows):
    return metrics.scores(model, [rows], "Survived", TITANIC.classes)


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return passengers(1500, seed=11).to_pylist()


@pytest.fixture(scope="module")
def example_rows() -> list[dict]:
    """Every row of the example data set (MINIMLOPS_EXAMPLE_DATA; CI sets it)."""
    import pyarrow.csv as pacsv

    from tests.conftest import example_csv

    real = example_csv()
    return pacsv.read_csv(real).to_pylist() if real is not None else []


@pytest.fixture(scope="module")
def model(rows) -> TrainedModel:
    return fit(rows[:1000], folds=3, seed=0)


def test_the_training_log_counts_its_steps_to_the_end(rows) -> None:
    """The log says (1/N) ... (N/N): each candidate cross-validated, then the
    chosen one fitted; the ensemble's leaderboard row is not a step of its own."""
    steps: list[tuple[str, int, int]] = []
    model = fit(rows[:400], folds=3, seed=0, progress=lambda *s: steps.append(s))
    assert any(e["family"] == "ensemble" for e in model.selection.leaderboard)
    totals = {total for _, _, total in steps}
    assert len(totals) == 1, steps
    assert [done for _, done, _ in steps] == list(range(totals.pop())), steps
    assert steps[-1][0].startswith(f"fitting {model.algorithm}")


@pytest.mark.parametrize(
    ("name", "sex", "age", "title"),
    [
        ("Braund, Mr. Owen Harris", "male", 22, "Mr"),
        ("Oliva y Ocana, Dona. Fermina", "female", 39, "Rare"),
        ("Moran, Mlle. Bertha", "female", 28, "Miss"),
        ("Rothes, the Countess. of", "female", 33, "Rare"),
        (None, "male", 8, "Master"),
        (None, "male", None, "Mr"),
        (None, "female", 10, "Miss"),
        ("", "female", 40, "Mrs"),
        ("Dr Who", "male", 40, "Mr"),
    ],
)
def test_title(name, sex, age, title) -> None:
    assert globals()["title"]({"Name": name, "Sex": sex, "Age": age}) == title


@pytest.mark.parametrize(
    ("cabin", "deck"), [("C85", "C"), ("", "U"), (None, "U"), ("T", "U"), (" b12", "B")]
)
def test_deck(cabin, deck) -> None:
    assert globals()["deck"]({"Cabin": cabin}) == deck


def test_imputation_uses_only_the_rows_it_is_fitted_on(rows) -> None:
    spec = features.fit_spec(rows[:100], TITANIC, DERIVE)
    other = features.fit_spec(
        rows[:100] + [{**rows[0], "Age": 1000.0, "Name": "X, Mr. Y"}] * 500, TITANIC, DERIVE
    )
    fill = {c["name"]: c.get("fill") for c in spec["columns"]}
    assert fill["Age"] != {c["name"]: c.get("fill") for c in other["columns"]}["Age"]


def test_the_spec_is_the_same_from_batch_forms_and_one_row_at_a_time(rows, monkeypatch) -> None:
    """fit_spec reads columns a chunk at a time with the derived features'
    batch forms; the one-row functions, and any chunk size, learn the same."""
    by_row = {n: (lambda r, f=f: f(r)) for n, f in DERIVE.items()}  # no batch forms
    whole = features.fit_spec(iter(rows), TITANIC, DERIVE)
    monkeypatch.setattr(features, "FIT_CHUNK", 7)
    assert features.fit_spec(iter(rows), TITANIC, by_row) == whole
    assert features.fit_spec(iter(rows), TITANIC, DERIVE) == whole


def test_a_batch_forms_nan_category_is_missing_not_a_category(rows) -> None:
    """A batch form says missing with NaN: never a category named nan."""

    def deck_or_nan(c):
        return [
            float("nan") if (cabin or "") == "" else DERIVE["deck"]({"Cabin": cabin})
            for cabin in c["Cabin"]
        ]

    def deck_or_none(r):
        return None if (r.get("Cabin") or "") == "" else DERIVE["deck"](r)

    deck_or_none.minimlops_batch = deck_or_nan
    derive = {**DERIVE, "deck": deck_or_none}
    spec = features.fit_spec(iter(rows), TITANIC, derive)
    (col,) = [c for c in spec["columns"] if c["name"] == "deck"]
    assert col["categories"] and all(isinstance(v, str) for v in col["categories"])
    by_row = {n: (lambda r, f=f: f(r)) for n, f in derive.items()}
    assert features.fit_spec(iter(rows), TITANIC, by_row) == spec


EDGES = [
    {"Pclass": 1, "Sex": "female", "SibSp": 0, "Parch": 0},  # every optional field missing
    {
        "Pclass": 2,
        "Sex": "male",
        "Age": 12.5,
        "SibSp": 3,
        "Parch": 2,
        "Fare": 0.0,
        "Name": "",
        "Cabin": "",
        "Embarked": None,
    },
    {
        "Pclass": 3,
        "Sex": "male",
        "Age": 0.42,
        "SibSp": 0,
        "Parch": 1,
        "Fare": 512.3292,
        "Name": "Dr Who",
        "Cabin": " t12",
        "Embarked": "Q",
    },
    {
        "Pclass": 3,
        "Sex": "female",
        "Age": 17.999,
        "SibSp": 8,
        "Parch": 0,
        "Fare": None,
        "Name": "Rothes, the Countess. of",
        "Cabin": "g6 F2",
        "Embarked": "C",
    },
    # without a name the title is guessed from sex and age, at the boundaries
    *(
        {"Pclass": 3, "Sex": sex, "Age": age, "SibSp": 0, "Parch": 0, "Fare": 8.05}
        for sex in ("male", "female")
        for age in (None, 12.9, 13, 17.5, 18)
    ),
]


def test_matrix_and_vector_agree_on_every_row(rows, example_rows) -> None:
    """Training (matrix, by columns) and serving (vector, one dict) build the
    same features for every row of the example data, generated rows and edge cases."""
    everything = [*example_rows, *rows, *EDGES]
    spec = features.fit_spec(rows, TITANIC, DERIVE)
    # the target encodings (of ticket and family name) fitted, as training does
    training._matrix(spec, DERIVE, TITANIC, lambda: iter([rows]), [len(rows)], 3, 0)
    assert all(c["target_encoding"]["values"] for c in spec["columns"] if c.get("target_encoding"))
    fs = features.FeatureSet(spec, DERIVE)
    m = fs.matrix(everything)
    assert m.shape == (len(everything), fs.width)
    by_row = np.array([fs.vector(r) for r in everything])
    np.testing.assert_array_max_ulp(m, by_row, maxulp=1)  # log1p may round in the last bit
    assert not np.isnan(m).any()
    assert fs.matrix([]).shape == (0, fs.width)


def test_model_beats_the_gender_baseline(model, rows) -> None:
    scores = metrics.metrics("binary", *scored(model, rows[1000:]))
    assert scores["accuracy"] > metrics.gender_baseline(pa.Table.from_pylist(rows[1000:]))
    assert set(scores) >= {"accuracy", "roc_auc", "log_loss", "brier"}


def test_behaviour_invariance_to_the_name_beyond_the_title_and_family(model) -> None:
    """A name matters through its title and its family name: two men of
    families no training passenger had get the same answer."""
    base = {
        "Pclass": 3,
        "Sex": "male",
        "Age": 30.0,
        "SibSp": 0,
        "Parch": 0,
        "Fare": 8.0,
        "Embarked": "S",
        "Cabin": None,
    }
    a = model.predict_proba([{**base, "Name": "Zyxwvut, Mr. John"}])[0]
    b = model.predict_proba([{**base, "Name": "Qzxqzx, Mr. Alfred Walter"}])[0]
    assert a == pytest.approx(b)


def test_behaviour_a_family_shares_its_fate(example_rows) -> None:
    """On the exercise's file: a woman travelling with her children, with the
    name and ticket of a family all of whose members in the file died, gets a
    lower chance than with a family no one in the file had; of a family that
    all survived, a higher one (the target encodings of ticket and surname)."""
    if not example_rows:
        pytest.skip("needs MINIMLOPS_EXAMPLE_DATA (CI sets it)")
    model = fit(example_rows, folds=3, seed=0)
    family: dict[str, list[dict]] = {}
    for r in example_rows:
        family.setdefault(r["Name"].split(",")[0], []).append(r)

    def fate(rows: list[dict]) -> float:
        return sum(r["Survived"] for r in rows) / len(rows)

    died = [f for f, rs in family.items() if len(rs) >= 4 and fate(rs) == 0]
    lived = [f for f, rs in family.items() if len(rs) >= 3 and fate(rs) == 1]
    assert len(died) >= 5 and len(lived) >= 2
    mother = {
        "Pclass": 3,
        "Sex": "female",
        "Age": 35.0,
        "SibSp": 1,
        "Parch": 3,
        "Fare": 25.0,
        "Embarked": "S",
        "Cabin": None,
    }
    unknown = model.predict_proba([{**mother, "Name": "Qzxqzx, Mrs. Anna", "Ticket": "ZZ 1"}])[0]
    for name in died + lived:
        ticket = family[name][0]["Ticket"]
        p = model.predict_proba([{**mother, "Name": f"{name}, Mrs. Anna", "Ticket": ticket}])[0]
        assert p < unknown if name in died else p > unknown, (name, p, unknown)


def test_behaviour_first_class_and_women_survive_more(model) -> None:
    man3 = {
        "Pclass": 3,
        "Sex": "male",
        "Age": 30.0,
        "SibSp": 0,
        "Parch": 0,
        "Fare": 8.0,
        "Embarked": "S",
        "Name": None,
        "Cabin": None,
    }
    p3, p1, woman = model.predict_proba(
        [man3, {**man3, "Pclass": 1, "Fare": 80.0}, {**man3, "Sex": "female"}]
    )
    assert p1 > p3 and woman > p3


def test_artifact_round_trip_gives_the_same_probabilities(model, rows) -> None:
    blob = artifacts.to_bytes(model)
    again = artifacts.from_bytes(blob, artifacts.sha256(blob), DERIVE)
    assert np.array_equal(again.predict_proba(rows[:50]), model.predict_proba(rows[:50]))


def test_tampered_truncated_or_foreign_artifacts_are_refused(model) -> None:
    blob = artifacts.to_bytes(model)
    with pytest.raises(ArtifactIntegrityError, match="does not match"):
        artifacts.from_bytes(blob + b"x", artifacts.sha256(blob))
    cut = blob[: len(blob) // 2]
    with pytest.raises(ArtifactIntegrityError, match="not a readable"):
        artifacts.from_bytes(cut, artifacts.sha256(cut))
    import pickle

    evil = pickle.dumps({"format": 1})
    with pytest.raises(ArtifactIntegrityError):
        artifacts.from_bytes(evil, artifacts.sha256(evil))


def test_fast_path_matches_on_every_row_of_the_data_set(model, rows, example_rows) -> None:

    served = OnnxModel(export.to_onnx(model), model.spec, model.algorithm, DERIVE)
    every = [*rows, *example_rows, *EDGES]
    assert export.parity(model, served, every) <= export.TOLERANCE
    one = every[0]
    assert served.predict_proba([one])[0] == pytest.approx(model.predict_proba([one])[0], abs=1e-5)


def test_serving_never_loads_the_training_libraries(model, tmp_path) -> None:
    """scikit-learn, scipy and skops take ~1 s to import, pandas ~0.3 s (a
    pyarrow scalar made from a Python value imports it): a server that serves
    the ONNX form and trains in another process must not pay for them on its
    way to the first prediction."""
    (tmp_path / "model.onnx").write_bytes(export.to_onnx(model))
    (tmp_path / "spec.json").write_text(__import__("json").dumps(model.spec))
    probe = (
        "import json, sys; from pathlib import Path; d = Path(sys.argv[1])\n"
        "from minimlops.config import Settings\nfrom minimlops.bootstrap import build\n"
        "from minimlops.entrypoints.runtime import serve\nfrom minimlops.entrypoints.http.app import create_app\n"
        "app = build(Settings.from_env({}, home=d / 'home'), isolate_training=True)\n"
        "create_app(app, admin_tokens=[])\nfrom minimlops.ml.serving import OnnxModel\n"
        "from minimlops import projects\np = projects.load('titanic')\n"
        "m = OnnxModel((d / 'model.onnx').read_bytes(), json.loads((d / 'spec.json').read_text()), "
        "'x', projects.derived_functions(p))\n"
        "m.predict_proba([{'Pclass': 3, 'Sex': 'male', 'Age': 22, 'SibSp': 1, 'Parch': 0}] * 2)\n"
        "app.close()\n"
        "print(sorted(m for m in ('sklearn', 'scipy', 'skops', 'skl2onnx', 'pandas') "
        "if m in sys.modules))"
    )
    assert fresh_python(probe, str(tmp_path)) == "[]"


def test_training_on_rows_read_in_chunks_gives_the_same_model(rows, model) -> None:
    """Big tables are read a chunk at a time; the model must not notice."""
    import numpy as np

    data = rows[:1000]
    chunked = fit(lambda: (data[i : i + 128] for i in range(0, len(data), 128)), folds=3, seed=0)
    assert chunked.algorithm == model.algorithm and chunked.spec == model.spec
    assert chunked.cv_scores == model.cv_scores
    assert np.array_equal(chunked.predict_proba(rows), model.predict_proba(rows))


def test_rows_that_change_between_the_two_reads_are_refused(rows) -> None:
    reads = []

    def growing():
        reads.append(1)
        yield rows[:300] if len(reads) == 1 else rows[:310]

    with pytest.raises(ValueError, match="changed between their two reads"):
        fit(growing, folds=2)
