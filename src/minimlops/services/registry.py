"""ModelRegistry: versions, metadata and the champion pointer in an object store.

Layout in the model bucket::

    models/<name>/<version>/model.skops     the artifact (skops, never pickle)
    models/<name>/<version>/model.onnx      its fast form, when it passed the parity check
    models/<name>/<version>/evaluation.json the evaluation page's numbers (VALIDATION)
    models/<name>/<version>/metadata.json   hash, metrics, data, decision; written last
    models/<name>/champion.json             the serving version, compare-and-swap

A version exists once its metadata.json does; an artifact without metadata is
an unfinished write and is ignored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from minimlops.errors import ArtifactIntegrityError, ConflictError, ModelNotFoundError
from minimlops.ml import artifacts
from minimlops.ml.serving import OnnxModel
from minimlops.ports import ObjectStore

if TYPE_CHECKING:
    from minimlops.ml.model import TrainedModel

logger = logging.getLogger(__name__)
ARTIFACT, METADATA, CHAMPION = "model.skops", "metadata.json", "champion.json"
FAST_ARTIFACT = "model.onnx"
EVALUATION = "evaluation.json"
MEASURED = "measured.skops"  # a refitted version: the TRAIN-only fit its figures come from


class ModelRegistry:
    """Model versions of one model name in one bucket."""

    def __init__(
        self,
        store: ObjectStore,
        bucket: str,
        name: str,
        derive: Mapping[str, Callable[..., Any]] | None = None,
    ) -> None:
        self.store, self.bucket, self.name = store, bucket, name
        self.derive = dict(derive or {})  # the project's derived-feature code
        self.prefix = f"models/{name}/"
        # metadata.json is written once (create-only), so a version's parsed
        # metadata is reused while its object keeps the same generation: the
        # dashboard's polling of /status, /models and /events costs one
        # listing, not one read per version (one HTTP request each on GCS).
        self._seen: dict[str, tuple[str, dict[str, Any]]] = {}

    def versions(self) -> list[dict[str, Any]]:
        """Metadata of every complete version, oldest first (shared: read only)."""
        found = []
        for obj in self.store.list(self.bucket, self.prefix):
            parts = obj.name[len(self.prefix) :].split("/")
            if len(parts) == 2 and parts[1] == METADATA and parts[0].isdigit():
                cached = self._seen.get(obj.name)
                if cached is None or cached[0] != obj.generation:
                    cached = self._seen[obj.name] = (obj.generation, self.metadata(parts[0]))
                found.append(cached[1])
        return sorted(found, key=lambda m: int(m["version"]))

    def metadata(self, version: str) -> dict[str, Any]:
        """One version's metadata. Raises ModelNotFoundError."""
        try:
            data = self.store.read_bytes(self.bucket, f"{self.prefix}{version}/{METADATA}")
        except (FileNotFoundError, ValueError):
            raise ModelNotFoundError(f"model {self.name} has no version {version!r}") from None
        meta: dict[str, Any] = json.loads(data)
        return meta

    def save_artifacts(
        self,
        blob: bytes,
        metadata: dict[str, Any],
        fast: bytes | None = None,
        evaluation: Mapping[str, Any] | None = None,
        measured: bytes | None = None,
    ) -> dict[str, Any]:
        """Store a new version: artifacts first, metadata last; returns metadata.

        Args:
            blob: the skops artifact.
            fast: the ONNX form of the estimator, when it passed the parity check.
            evaluation: the numbers of the version's evaluation page (kept out
                of the metadata, which every listing of the versions reads).
            measured: when the served model was refitted on more rows, the
                TRAIN-only fit its figures were measured on: the next gate
                scores it, as the served one has seen VALIDATION.
        """
        for _ in range(100):
            existing = [int(m["version"]) for m in self.versions()]
            version = str(max(existing, default=0) + 1)
            try:  # create-only: two trainers can never share a version
                self.store.write_bytes(
                    self.bucket, f"{self.prefix}{version}/{ARTIFACT}", blob, if_generation_match="0"
                )
            except ConflictError:
                self._clear_orphan(version)
                continue
            meta = dict(
                metadata,
                version=version,
                model=self.name,
                artifact=ARTIFACT,
                sha256=artifacts.sha256(blob),
                size=len(blob),
            )
            if fast is not None:
                self.store.write_bytes(self.bucket, f"{self.prefix}{version}/{FAST_ARTIFACT}", fast)
                meta["serving"] = dict(
                    meta.get("serving", {}),
                    artifact=FAST_ARTIFACT,
                    sha256=artifacts.sha256(fast),
                    size=len(fast),
                )
            if measured is not None:
                self.store.write_bytes(self.bucket, f"{self.prefix}{version}/{MEASURED}", measured)
                meta["measured"] = {
                    "artifact": MEASURED,
                    "sha256": artifacts.sha256(measured),
                    "size": len(measured),
                }
            if evaluation is not None:
                self.store.write_bytes(
                    self.bucket,
                    f"{self.prefix}{version}/{EVALUATION}",
                    json.dumps(evaluation, default=str).encode(),
                )
                meta["evaluation_file"] = EVALUATION
            self._write_json(f"{version}/{METADATA}", meta, if_generation_match="0")
            return meta
        raise ConflictError("could not allocate a model version")

    def evaluation(self, version: str) -> dict[str, Any] | None:
        """A version's evaluation numbers (None for a version trained before
        they were stored). Raises ModelNotFoundError."""
        meta = self.metadata(version)
        if not meta.get("evaluation_file"):
            return None
        try:
            data = self.store.read_bytes(
                self.bucket, f"{self.prefix}{version}/{meta['evaluation_file']}"
            )
        except (FileNotFoundError, ValueError):
            return None
        found: dict[str, Any] = json.loads(data)
        return found

    def _clear_orphan(self, version: str) -> None:
        """An artifact without metadata is a crashed write: remove it so the
        version number can be reused."""
        if self.store.stat(self.bucket, f"{self.prefix}{version}/{METADATA}") is None:
            logger.warning("registry: removing unfinished version %s", version)
            self.store.delete(self.bucket, f"{self.prefix}{version}/{ARTIFACT}")

    def artifact(self, version: str) -> bytes:
        """A version's skops bytes, unverified (``artifacts.from_bytes`` checks them)."""
        try:
            return self.store.read_bytes(self.bucket, f"{self.prefix}{version}/{ARTIFACT}")
        except FileNotFoundError:
            raise ArtifactIntegrityError(f"version {version}: artifact is missing") from None

    def measured(self, version: str) -> tuple[bytes, str]:
        """The model a version's figures were measured with, and its hash: the
        TRAIN-only fit of a refitted version, else the served one (the gate
        scores it on VALIDATION rows, which it never saw)."""
        meta = self.metadata(version)
        name, digest = ARTIFACT, meta["sha256"]
        if meta.get("measured"):
            name, digest = meta["measured"]["artifact"], meta["measured"]["sha256"]
        try:
            return self.store.read_bytes(self.bucket, f"{self.prefix}{version}/{name}"), digest
        except FileNotFoundError:
            raise ArtifactIntegrityError(f"version {version}: {name} is missing") from None

    def load(self, version: str) -> TrainedModel:
        """A version's model, refused unless its hash matches the metadata.

        Raises:
            ModelNotFoundError: no such version.
            ArtifactIntegrityError: the artifact is missing, altered or not a model.
        """
        meta = self.metadata(version)
        try:
            blob = self.store.read_bytes(self.bucket, f"{self.prefix}{version}/{ARTIFACT}")
        except FileNotFoundError:
            raise ArtifactIntegrityError(f"version {version}: artifact is missing") from None
        return artifacts.from_bytes(blob, meta["sha256"], self.derive)

    def load_serving(self, version: str) -> Any:
        """The model to serve: the ONNX form when the version has one, else skops.

        Raises:
            ModelNotFoundError: no such version.
            ArtifactIntegrityError: an artifact is missing, altered or unreadable.
        """
        meta = self.metadata(version)
        serving = meta.get("serving") or {}
        if serving.get("runtime") != "onnxruntime":
            return self.load(version)
        name = f"{self.prefix}{version}/{serving['artifact']}"
        try:
            blob = self.store.read_bytes(self.bucket, name)
        except FileNotFoundError:
            raise ArtifactIntegrityError(f"version {version}: {name} is missing") from None
        if artifacts.sha256(blob) != serving["sha256"]:
            raise ArtifactIntegrityError(f"version {version}: {name} hash does not match metadata")
        try:
            return OnnxModel(
                blob, serving["spec"], meta["algorithm"], self.derive, linear=serving.get("linear")
            )
        except Exception as exc:  # onnxruntime raises its own kinds for bad bytes
            raise ArtifactIntegrityError(
                f"version {version}: {name} is not a model: {exc}"
            ) from exc

    def champion(self) -> tuple[dict[str, Any] | None, str]:
        """The champion pointer and its generation ("0" when there is none)."""
        name = f"{self.prefix}{CHAMPION}"
        info = self.store.stat(self.bucket, name)
        if info is None:
            return None, "0"
        try:
            pointer: dict[str, Any] = json.loads(self.store.read_bytes(self.bucket, name))
        except FileNotFoundError:
            return None, "0"
        return pointer, info.generation

    def set_champion(self, version: str, *, reason: str, at: str) -> dict[str, Any]:
        """Make a complete version champion (compare-and-swap, retried).

        Raises:
            ModelNotFoundError: the version does not exist.
        """
        self.metadata(version)
        for _ in range(20):
            current, generation = self.champion()
            history = list(current.get("history", [])) if current else []
            history.append({"version": version, "at": at, "reason": reason})
            pointer = {
                "model": self.name,
                "version": version,
                "updated_at": at,
                "reason": reason,
                "previous": current["version"] if current else None,
                "history": history[-100:],
            }
            try:
                self._write_json(CHAMPION, pointer, if_generation_match=generation)
                return pointer
            except ConflictError:
                continue
        raise ConflictError("champion pointer keeps changing; try again")

    def _write_json(self, name: str, body: dict[str, Any], *, if_generation_match: str) -> None:
        data = json.dumps(body, indent=2, sort_keys=True, default=str).encode()
        self.store.write_bytes(
            self.bucket, f"{self.prefix}{name}", data, if_generation_match=if_generation_match
        )
