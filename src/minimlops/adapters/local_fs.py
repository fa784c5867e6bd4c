"""LocalObjectStore: buckets as directories, every write atomic and durable.

A write goes to a temporary file in the bucket's ``.tmp`` directory, is
fsynced, then renamed into place (``os.replace``), so a reader sees the old
object or the new one, never a half-written one. Object names never leave
their bucket directory.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from minimlops.errors import ConflictError
from minimlops.ports import ObjectInfo

IGNORED_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload")


def is_hidden(name: str) -> bool:
    """Names a writer uses while a file is incomplete are not objects yet."""
    parts = name.split("/")
    return any(p.startswith(".") for p in parts) or name.endswith(IGNORED_SUFFIXES)


class LocalObjectStore:
    """The ObjectStore port on a directory tree: ``root/<bucket>/<name>``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def bucket_dir(self, bucket: str) -> Path:
        path = self.root / _safe_part(bucket)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def path(self, bucket: str, name: str) -> Path:
        """The file behind an object; refuses names that escape the bucket."""
        parts = name.split("/")
        if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"invalid object name {name!r}")
        if "\x00" in name:
            raise ValueError("object names cannot contain NUL")
        return self.bucket_dir(bucket).joinpath(*parts)

    def write_bytes(
        self, bucket: str, name: str, data: bytes, *, if_generation_match: str | None = None
    ) -> ObjectInfo:
        target = self.path(bucket, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp(bucket)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            with self._lock(bucket):
                self._check(bucket, name, if_generation_match)
                os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(target.parent)
        return self._info(bucket, name, target)

    def write_file(self, bucket: str, name: str, source: Path) -> ObjectInfo:
        """Copy a local file in as an object, streamed (like ``gsutil cp``)."""
        target = self.path(bucket, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp(bucket)
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
        return self._info(bucket, name, target)

    def read_bytes(self, bucket: str, name: str) -> bytes:
        return self.path(bucket, name).read_bytes()

    def open(self, bucket: str, name: str) -> IO[bytes]:
        return open(self.path(bucket, name), "rb")

    def stat(self, bucket: str, name: str) -> ObjectInfo | None:
        path = self.path(bucket, name)
        try:
            return self._info(bucket, name, path)
        except (FileNotFoundError, NotADirectoryError):  # a/b/c when a/b is an object
            return None

    def list(self, bucket: str, prefix: str = "") -> list[ObjectInfo]:
        base = self.bucket_dir(bucket)
        found = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for fname in filenames:
                full = Path(dirpath) / fname
                name = full.relative_to(base).as_posix()
                if name.startswith(prefix) and not is_hidden(name):
                    try:
                        found.append(self._info(bucket, name, full))
                    except FileNotFoundError:
                        continue  # removed while listing
        return sorted(found, key=lambda o: o.name)

    def move(self, bucket: str, name: str, new_name: str) -> ObjectInfo:
        source, target = self.path(bucket, name), self.path(bucket, new_name)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        fsync_dir(target.parent)
        return self._info(bucket, new_name, target)

    def delete(self, bucket: str, name: str) -> None:
        self.path(bucket, name).unlink(missing_ok=True)

    def _tmp(self, bucket: str) -> Path:
        tmpdir = self.bucket_dir(bucket) / ".tmp"
        tmpdir.mkdir(exist_ok=True)
        return tmpdir / uuid.uuid4().hex

    def _check(self, bucket: str, name: str, expected: str | None) -> None:
        if expected is None:
            return
        current = self.stat(bucket, name)
        actual = current.generation if current else "0"
        if actual != expected:
            raise ConflictError(f"{bucket}/{name}: generation is {actual}, expected {expected}")

    @contextmanager
    def _lock(self, bucket: str) -> Iterator[None]:
        with open(self.bucket_dir(bucket) / ".lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @staticmethod
    def _info(bucket: str, name: str, path: Path) -> ObjectInfo:
        st = path.stat()
        return ObjectInfo(
            bucket, name, f"{st.st_mtime_ns}{st.st_ino:012d}", st.st_size, st.st_mtime
        )


def _safe_part(bucket: str) -> str:
    if not bucket or "/" in bucket or bucket in (".", ".."):
        raise ValueError(f"invalid bucket name {bucket!r}")
    return bucket


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in a directory durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
