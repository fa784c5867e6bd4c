"""The example Titanic file: a local copy, or downloaded once and verified.

Never committed to the repository. ``MINIMLOPS_EXAMPLE_DATA=PATH`` uses a local
copy and downloads nothing; otherwise the exercise's public copy is downloaded
once into the data home's cache. Either way the bytes must have the known
SHA-256, so a changed upstream file or a wrong path is caught.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from minimlops.errors import ExampleDataError

SHA256 = "4a437fde05fe5264e1701a7387ac6fb75393772ba38bb2c9c566405af5af4bd7"
SIZE = 60_302
FILENAME = "titanic.csv"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def ensure(cache_dir: Path, *, local: Path | None, url: str, timeout: float = 30) -> Path:
    """A verified copy of the example file; downloads at most once.

    Args:
        cache_dir: where a download is kept.
        local: a local copy to use instead (MINIMLOPS_EXAMPLE_DATA).
        url: where to download from.

    Raises:
        ExampleDataError: with what to do, when neither source works.
    """
    if local is not None:
        if not local.is_file():
            raise ExampleDataError(f"MINIMLOPS_EXAMPLE_DATA={local}: no such file")
        if _sha256(local) != SHA256:
            raise ExampleDataError(
                f"MINIMLOPS_EXAMPLE_DATA={local} is not the Titanic training file "
                f"(SHA-256 differs from {SHA256[:12]}…); to load your own data use "
                "`minimlops ingest FILE`")  # fmt: skip
        return local
    cached = cache_dir / FILENAME
    if cached.is_file() and _sha256(cached) == SHA256:
        return cached
    return _download(url, cached, timeout)


def _download(url: str, target: Path, timeout: float) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".download-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out, 1 << 16)
        digest = _sha256(tmp)
        if digest != SHA256:
            raise ExampleDataError(
                f"downloaded {url} but its SHA-256 is {digest[:12]}…, expected "
                f"{SHA256[:12]}…; refusing it. Set MINIMLOPS_EXAMPLE_DATA=PATH to a "
                "verified copy.")  # fmt: skip
        os.replace(tmp, target)
        return target
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ExampleDataError(
            f"cannot download the example data from {url} ({exc}). Without internet "
            "access, set MINIMLOPS_EXAMPLE_DATA=/path/to/titanic.csv (the "
            f"datasciencedojo train file, {SIZE:,} bytes, SHA-256 {SHA256}).") from None
    finally:
        tmp.unlink(missing_ok=True)
