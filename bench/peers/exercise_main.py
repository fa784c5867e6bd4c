"""The exercise's prediction function, as it is usually written: one request,
one pandas DataFrame, ``pipeline.predict``. Served by functions-framework.

The pickle is the one peer_model.py wrote in the same run (trusted: this is
a benchmark peer, never part of minimlops, which loads no pickle).
"""

import os
import pickle

import functions_framework
import pandas as pd

with open(os.environ["PEER_MODEL"], "rb") as fh:
    MODEL = pickle.load(fh)


@functions_framework.http
def predict(request):
    passenger = request.get_json()
    frame = pd.DataFrame([passenger])
    probability = float(MODEL.predict_proba(frame)[0, 1])
    return {"prediction": int(probability >= 0.5), "probability": probability}
