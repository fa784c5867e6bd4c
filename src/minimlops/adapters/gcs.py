"""GCSObjectStore: the ObjectStore port on Cloud Storage (google-cloud-storage).

Generations are Cloud Storage's own object generations, so compare-and-swap is
a write with an ``ifGenerationMatch`` precondition (``0``: create only), which
Cloud Storage checks atomically on the server. Every call has a bounded
timeout and the library's retry for idempotent calls; conditional writes are
idempotent by their precondition, so they are retried too.
"""

from __future__ import annotations

import contextlib
from typing import IO, Any

from google.api_core import exceptions as gexc
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from minimlops.errors import ConflictError
from minimlops.ports import ObjectInfo

TIMEOUT = 60.0  # seconds per request
RETRY = DEFAULT_RETRY.with_timeout(120.0)  # overall deadline of one call's retries


def _info(blob: Any) -> ObjectInfo:
    updated = blob.updated.timestamp() if blob.updated else 0.0
    return ObjectInfo(
        blob.bucket.name, blob.name, str(blob.generation), int(blob.size or 0), updated
    )


class GCSObjectStore:
    """The ObjectStore port on Cloud Storage; buckets must exist (``gcp provision``)."""

    def __init__(self, client: storage.Client, *, check_location: bool = True) -> None:
        self.client = client
        self.check_location = check_location  # off on the emulator, which keeps no location

    def ensure_bucket(self, bucket: str, location: str, project: str | None = None) -> str:
        """Create a bucket if missing: 'created' or 'found'.

        Bucket names are global: a 409 means the name exists, not that it is
        ours. A found bucket must be one of this project's and in ``location``
        (a Cloud Storage trigger sits in its bucket's location); otherwise this
        raises ConflictError saying what to do. New buckets get uniform
        bucket-level access (IAM only, which the deployment's per-object
        conditions need) and public access prevention.
        """
        new = self.client.bucket(bucket)
        new.iam_configuration.uniform_bucket_level_access_enabled = True
        new.iam_configuration.public_access_prevention = "enforced"
        try:
            self.client.create_bucket(
                new, location=location, project=project, timeout=TIMEOUT, retry=RETRY
            )
            return "created"
        except gexc.Conflict:
            pass
        ours = {
            b.name: b
            for b in self.client.list_buckets(project=project, timeout=TIMEOUT, retry=RETRY)
        }
        if bucket not in ours:
            raise ConflictError(
                f"the bucket name {bucket!r} belongs to another project (bucket names are "
                "global): choose another with MINIMLOPS_LANDING_BUCKET / MINIMLOPS_MODEL_BUCKET"
            )
        found = (ours[bucket].location or "").upper()
        if self.check_location and found and found != location.upper():
            raise ConflictError(
                f"gs://{bucket} is in {found}, the deployment in {location.upper()}: a Cloud "
                "Storage trigger must sit in its bucket's location; set MINIMLOPS_LOCATION="
                f"{found} (and a region in it) or use another bucket"
            )
        return "found"

    def _blob(self, bucket: str, name: str) -> Any:
        if not name or name.startswith("/") or "\x00" in name:
            raise ValueError(f"invalid object name {name!r}")
        return self.client.bucket(bucket).blob(name)

    def write_bytes(
        self, bucket: str, name: str, data: bytes, *, if_generation_match: str | None = None
    ) -> ObjectInfo:
        return self._upload(bucket, name, "upload_from_string", data, if_generation_match)

    def write_file(
        self, bucket: str, name: str, path: str, *, if_generation_match: str | None = None
    ) -> ObjectInfo:
        """Upload a local file (resumable for big files), with the same precondition."""
        return self._upload(bucket, name, "upload_from_filename", str(path), if_generation_match)

    def _upload(
        self, bucket: str, name: str, method: str, source: Any, if_generation_match: str | None
    ) -> ObjectInfo:
        blob = self._blob(bucket, name)
        match = None if if_generation_match is None else int(if_generation_match)
        try:
            getattr(blob, method)(source, if_generation_match=match, timeout=TIMEOUT, retry=RETRY)
        except gexc.PreconditionFailed:
            raise ConflictError(
                f"gs://{bucket}/{name} changed (expected generation {if_generation_match})"
            ) from None
        return _info(blob)

    def read_bytes(self, bucket: str, name: str) -> bytes:
        try:
            return self._blob(bucket, name).download_as_bytes(timeout=TIMEOUT, retry=RETRY)
        except gexc.NotFound:
            raise FileNotFoundError(f"gs://{bucket}/{name}") from None

    def open(self, bucket: str, name: str) -> IO[bytes]:
        blob = self._blob(bucket, name)
        try:
            blob.reload(timeout=TIMEOUT, retry=RETRY)
        except gexc.NotFound:
            raise FileNotFoundError(f"gs://{bucket}/{name}") from None
        # Pinned to the generation just seen: a rewrite while we read cannot mix
        # two versions of the file. Chunks of 8 MiB keep memory bounded.
        pinned = self.client.bucket(bucket).blob(name, generation=blob.generation)
        return pinned.open("rb", chunk_size=8 << 20, timeout=TIMEOUT, retry=RETRY)  # type: ignore[no-any-return]

    def stat(self, bucket: str, name: str) -> ObjectInfo | None:
        blob = self.client.bucket(bucket).get_blob(name, timeout=TIMEOUT, retry=RETRY)
        return _info(blob) if blob is not None else None

    def list(self, bucket: str, prefix: str = "") -> list[ObjectInfo]:
        blobs = self.client.list_blobs(bucket, prefix=prefix or None, timeout=TIMEOUT, retry=RETRY)
        return sorted((_info(b) for b in blobs), key=lambda o: o.name)

    def move(self, bucket: str, name: str, new_name: str) -> ObjectInfo:
        src = self.client.bucket(bucket)
        blob = src.get_blob(name, timeout=TIMEOUT, retry=RETRY)
        if blob is None:
            raise FileNotFoundError(f"gs://{bucket}/{name}")
        # Copy pinned to the generation read, then delete that generation only:
        # a newer upload under the old name is never deleted by mistake.
        copied = src.copy_blob(
            blob, src, new_name, source_generation=blob.generation, timeout=TIMEOUT, retry=RETRY
        )
        with contextlib.suppress(gexc.NotFound):
            src.delete_blob(name, generation=blob.generation, timeout=TIMEOUT, retry=RETRY)
        return _info(copied)

    def delete(self, bucket: str, name: str) -> None:
        with contextlib.suppress(gexc.NotFound):
            self.client.bucket(bucket).delete_blob(name, timeout=TIMEOUT, retry=RETRY)
