"""Run by the peers' venv: fit the usual scikit-learn pipeline and save it
twice, as an MLflow model and as the exercise's pickle.

The pipeline is what the exercise and most tutorials serve: imputers, one-hot
encoding and the estimator our champion uses, on the same rows.

Usage: python peer_model.py DATA.csv ALGORITHM OUT_DIR

ALGORITHM is the champion's (``random_forest_deep``), or for an ensemble
``ensemble:NAME=WEIGHT,...``: the members' families in a soft-voting
ensemble with the same weights (a weighted mean of their probabilities, as
minimlops' ensemble).
"""

import pickle
import sys
from pathlib import Path

import mlflow.sklearn
import pandas as pd
from lightgbm import LGBMClassifier
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier, VotingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder

NUMBERS = ["Pclass", "Age", "SibSp", "Parch", "Fare"]
CATEGORIES = ["Sex", "Embarked"]
# The champion's family (its algorithm name starts with it) -> the estimator,
# with the library's defaults, and the types MLflow's skops format must be told
# to trust for it: numpy.dtype for any pipeline, plus the family's own.
FAMILIES = {
    "logistic_regression": (lambda: LogisticRegression(max_iter=1000), []),
    "random_forest": (
        lambda: RandomForestClassifier(n_estimators=100, random_state=0),
        ["sklearn.tree._tree.Tree"],
    ),
    "lightgbm": (
        lambda: LGBMClassifier(random_state=0, verbose=-1),
        ["collections.OrderedDict", "lightgbm.basic.Booster", "lightgbm.sklearn.LGBMClassifier"],
    ),
}


def family(algorithm: str) -> str:
    """The longest family name the algorithm starts with (random_forest_deep ->
    random_forest); an unknown one is an error, not a silent substitute."""
    known = [f for f in FAMILIES if algorithm.startswith(f)]
    if not known:
        raise SystemExit(
            f"peer_model.py: no peer for algorithm {algorithm!r}; "
            f"known families: {sorted(FAMILIES)}"
        )
    return max(known, key=len)


def main(csv: str, algorithm: str, out: str) -> None:
    data = pd.read_csv(csv)
    features = ColumnTransformer(
        [
            ("numbers", SimpleImputer(strategy="median"), NUMBERS),
            (
                "categories",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
                ),
                CATEGORIES,
            ),
        ]
    )
    if algorithm.startswith("ensemble:"):
        members = [m.split("=") for m in algorithm.split(":", 1)[1].split(",")]
        made = [(f"m{i}", *FAMILIES[family(name)]) for i, (name, _) in enumerate(members)]
        estimator = VotingClassifier(
            [(name, make()) for name, make, _ in made],
            voting="soft",
            weights=[float(w) for _, w in members],
        )
        # VotingClassifier keeps its fitted members in a Bunch (named_estimators_)
        trusted = sorted({"sklearn.utils._bunch.Bunch", *(t for _, _, ts in made for t in ts)})
    else:
        make, trusted = FAMILIES[family(algorithm)]
        estimator = make()
    model = Pipeline([("features", features), ("model", estimator)])
    model.fit(data[NUMBERS + CATEGORIES], data["Survived"])
    out_dir = Path(out)
    # MLflow 3 saves scikit-learn models with skops by default
    mlflow.sklearn.save_model(
        model, out_dir / "mlflow-model", skops_trusted_types=["numpy.dtype", *trusted]
    )
    (out_dir / "model.pkl").write_bytes(pickle.dumps(model))


if __name__ == "__main__":
    main(*sys.argv[1:4])
