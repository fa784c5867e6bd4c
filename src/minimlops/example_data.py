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
                "`minimlops ingest FILE`"
            )
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
                "verified copy."
            )
        os.replace(tmp, target)
        return target
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ExampleDataError(
            f"cannot download the example data from {url} ({exc}). Without internet "
            "access, set MINIMLOPS_EXAMPLE_DATA=/path/to/titanic.csv (the "
            f"datasciencedojo train file, {SIZE:,} bytes, SHA-256 {SHA256})."
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def bundled(name: str, cache_dir: Path) -> Path:
    """A CSV of a data set that ships inside scikit-learn (wine, diabetes),
    written once into the cache in the shape of its example project."""
    target = cache_dir / f"{name}.csv"
    if target.is_file():
        return target
    from sklearn import datasets  # only for these examples, on their first start

    if name == "wine":
        data = datasets.load_wine()
        names = [
            n.replace("od280/od315_of_diluted_wines", "od280_od315") for n in data.feature_names
        ]
        header = ["sample_id", "cultivar", *names]
        rows = [
            [f"wine-{i + 1:03d}", f"cultivar_{int(t) + 1}", *(f"{v:g}" for v in x)]
            for i, (x, t) in enumerate(zip(data.data, data.target, strict=True))
        ]
    elif name == "diabetes":
        data = datasets.load_diabetes(scaled=False)
        header = ["patient_id", "progression", *data.feature_names]
        rows = [
            [str(i + 1), f"{t:g}", *(f"{int(v)}" if j == 1 else f"{v:g}" for j, v in enumerate(x))]
            for i, (x, t) in enumerate(zip(data.data, data.target, strict=True))
        ]
    else:
        raise ExampleDataError(f"no bundled data set {name!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def for_project(
    extras: dict[str, object], cache_dir: Path, *, local: Path | None, url: str
) -> Path | None:
    """The example file of an example project (None for a user's own project)."""
    if extras.get("data") == "titanic":
        return ensure(cache_dir, local=local, url=url)
    if isinstance(extras.get("sklearn"), str):
        return bundled(str(extras["sklearn"]), cache_dir)
    return None


def generated(project: object, rows: int, cache_dir: Path) -> Path:
    """A generated example's file (churn): its rows, written once into the cache."""
    from minimlops.generate import write_project_csv

    target = cache_dir / f"{project.name}.csv"  # type: ignore[attr-defined]
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        write_project_csv(project, tmp, rows, seed=0)
        os.replace(tmp, target)
    return target
