"""Run by the peers' venv: fit the usual scikit-learn pipeline and save it
twice, as an MLflow model and as the exercise's pickle.

The pipeline is what the exercise and most tutorials serve: imputers, one-hot
encoding and the estimator our champion uses, on the same rows.

Usage: python peer_model.py DATA.csv ALGORITHM OUT_DIR
"""

import pickle
import sys
from pathlib import Path

import mlflow.sklearn
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder

NUMBERS = ["Pclass", "Age", "SibSp", "Parch", "Fare"]
CATEGORIES = ["Sex", "Embarked"]
ESTIMATORS = {
    "logistic_regression": lambda: LogisticRegression(max_iter=1000),
    "random_forest": lambda: RandomForestClassifier(n_estimators=100, random_state=0),
}


def main(csv: str, algorithm: str, out: str) -> None:
    data = pd.read_csv(csv)
    features = ColumnTransformer([
        ("numbers", SimpleImputer(strategy="median"), NUMBERS),
        ("categories", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                     OneHotEncoder(handle_unknown="ignore")), CATEGORIES),
    ])
    estimator = ESTIMATORS.get(algorithm, ESTIMATORS["random_forest"])()
    model = Pipeline([("features", features), ("model", estimator)])
    model.fit(data[NUMBERS + CATEGORIES], data["Survived"])
    out_dir = Path(out)
    # MLflow 3 saves scikit-learn models with skops by default; numpy.dtype is
    # the one type it asks to be trusted for this pipeline.
    mlflow.sklearn.save_model(model, out_dir / "mlflow-model", skops_trusted_types=["numpy.dtype"])
    (out_dir / "model.pkl").write_bytes(pickle.dumps(model))


if __name__ == "__main__":
    main(*sys.argv[1:4])
