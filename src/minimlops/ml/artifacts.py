"""Model artifacts: skops bytes (no pickle), SHA-256, and a checked load.

``skops.io`` rebuilds objects without running arbitrary code; it refuses types
outside its default trust list unless they are named. We name the ones our
candidates need and refuse everything else, and we check the hash first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from minimlops.errors import ArtifactIntegrityError

if TYPE_CHECKING:
    from minimlops.ml.model import TrainedModel

# skops and scikit-learn are imported by the functions that need them: a
# server that serves ONNX and trains in another process never loads them
# (~1 s of its cold start).

FORMAT = 1
# an ensemble's file (its members, weights and names): an older minimlops refuses
# it as "not a minimlops model" rather than loading a model without an estimator
ENSEMBLE_FORMAT = 2
# LightGBM's estimators and Booster rebuild themselves from the booster's model
# text (LightGBM's own format), with no code of their own in the file.
TRUSTED_TYPES = (
    "sklearn.tree._tree.Tree",
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor",
)


def sha256(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def to_bytes(model: TrainedModel) -> bytes:
    """Serialize a trained model with skops."""
    import skops.io as sio

    from minimlops.ml.ensemble import Ensemble

    est = model.estimator
    payload: dict[str, Any] = {
        "format": ENSEMBLE_FORMAT if isinstance(est, Ensemble) else FORMAT,
        # an ensemble as its members, weights and names: no class of ours in the file
        "estimator": None if isinstance(est, Ensemble) else est,
        "ensemble": (
            {"members": est.members, "weights": est.weights, "names": est.names}
            if isinstance(est, Ensemble)
            else None
        ),
        "spec": model.spec,
        "algorithm": model.algorithm,
        "feature_names": list(model.feature_names),
    }
    return bytes(sio.dumps(payload))


def from_bytes(
    data: bytes, expected_sha256: str, derive: Mapping[str, Callable[..., Any]] | None = None
) -> TrainedModel:
    """Load a model after checking its hash and the types it contains.

    Raises:
        ArtifactIntegrityError: the hash differs, the bytes are not a skops
            file, or they hold a type that is not trusted.
    """
    import skops.io as sio

    from minimlops.ml.model import TrainedModel

    actual = sha256(data)
    if actual != expected_sha256:
        raise ArtifactIntegrityError(
            f"artifact hash {actual[:12]}… does not match metadata {expected_sha256[:12]}…"
        )
    try:
        untrusted = set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES)
        if untrusted:
            raise ArtifactIntegrityError(f"artifact holds untrusted types {sorted(untrusted)}")
        payload = sio.loads(data, trusted=list(TRUSTED_TYPES))
    except ArtifactIntegrityError:
        raise
    except Exception as exc:  # skops raises many kinds for bad input
        raise ArtifactIntegrityError(f"artifact is not a readable skops model: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") not in (FORMAT, ENSEMBLE_FORMAT):
        raise ArtifactIntegrityError("artifact is not a minimlops model")
    if not isinstance(payload.get("spec"), dict) or payload["spec"].get("format") != 2:
        raise ArtifactIntegrityError(
            "artifact was made by an older minimlops (before projects); train a new version"
        )
    estimator = payload["estimator"]
    if payload.get("ensemble"):
        from minimlops.ml.ensemble import Ensemble

        e = payload["ensemble"]
        estimator = Ensemble(e["members"], e["weights"], e["names"], payload["spec"]["task"])
    return TrainedModel(
        estimator,
        payload["spec"],
        payload["algorithm"],
        tuple(payload["feature_names"]),
        derive=derive or {},
    )
