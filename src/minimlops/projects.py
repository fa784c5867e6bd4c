"""Projects on disk: the built-in examples, reading project.toml, and the
derived-feature code a project carries.

TOML, not YAML: Python reads it with the standard library (tomllib), it has
one way to write a string (no "Norway problem": ``NO`` stays a string), and
our users already review it in pyproject.toml.
"""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from minimlops.domain.project import Project, ProjectError, nearest, parse

EXAMPLES = ("titanic", "wine", "diabetes", "churn")
DEFAULT = "titanic"
FILENAME = "project.toml"


def example_dir(name: str) -> Path:
    """The directory of a built-in example project (inside the package)."""
    return Path(str(resources.files("minimlops").joinpath("examples", name)))


def resolve(where: str | Path | None) -> Path:
    """The project directory for a name or path: None is the Titanic example, a
    built-in example's name is that example, anything else a directory or its
    project.toml.

    Raises:
        ProjectError: no project there.
    """
    if where is None or str(where) == "":
        return example_dir(DEFAULT)
    if str(where) in EXAMPLES and not Path(where).exists():
        return example_dir(str(where))
    path = Path(where)
    if path.is_file() and path.name.endswith(".toml"):
        path = path.parent
    if not (path / FILENAME).is_file():
        missing = (
            ""
            if path.is_dir()
            else ": a file, not a directory"
            if path.exists()
            else ": no such directory"
        )
        raise ProjectError(
            f"no {FILENAME} in {path}{missing}{_near(path)} (a directory made by "
            f"`minimlops init`, or one of the examples {list(EXAMPLES)})"
        )
    return path.resolve()


def _near(path: Path) -> str:
    """ " (did you mean 'x'?)": a project directory beside ``path``, or an
    example, spelt like it."""
    parent = path.parent
    try:
        beside = [p.name for p in parent.iterdir() if (p / FILENAME).is_file()]
    except OSError:
        beside = []
    if (found := nearest(path.name, beside)) is not None:
        return f" (did you mean {str(parent / found)!r}?)"
    if (found := nearest(path.name, EXAMPLES)) is not None:
        return f" (did you mean {found!r}?)"
    return ""


def load(
    where: str | Path | None = None,
    *,
    check_code: bool = True,
    rows: Iterable[Mapping[str, Any]] | None = None,
) -> Project:
    """Read, check and return a project (see :func:`resolve` for ``where``).

    With ``check_code`` the derived features are imported and run once on
    ``rows`` (real ones: a champion's typical training row), else on a
    typical row (:func:`check_derived`), so a feature that cannot run is
    refused before anything is written.

    Raises:
        ProjectError: the file is not valid TOML, a field is wrong, or a
            derived feature cannot be imported or raises.
    """
    directory = resolve(where)
    path = directory / FILENAME
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProjectError(f"{path}: not valid TOML: {exc}") from None
    project = parse(data, str(directory))
    if check_code and project.derived:
        check_derived(project, rows)
    return project


def from_dict(data: Mapping[str, Any], directory: str = "") -> Project:
    """A project from plain data (the record in a data home, a test)."""
    return parse(data, directory)


@cache
def _module(path: str) -> Any:
    """The project's derived-feature module, imported once per process."""
    name = f"minimlops_project_{abs(hash(path)):x}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ProjectError(f"derived_module: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ProjectError(
            f"derived_module: {path} fails to import: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def derived_functions(project: Project) -> dict[str, Callable[[Mapping[str, Any]], Any]]:
    """Each derived feature's function, by feature name.

    Raises:
        ProjectError: the module or a function is missing.
    """
    if not project.derived:
        return {}
    path = Path(project.directory) / str(project.derived_module)
    if not path.is_file():
        raise ProjectError(f"derived_module: {path} does not exist")
    module = _module(str(path))
    out = {}
    for d in project.derived:
        fn = getattr(module, d.function, None)
        if not callable(fn):
            raise ProjectError(
                f"derived feature {d.name!r}: {path.name} has no function {d.function!r}"
            )
        # An optional batch form, `<function>_batch(columns) -> values`, builds the
        # feature for many rows at once (training, batches); a test holds it equal
        # to the one-row function on every row.
        batch = getattr(module, f"{d.function}_batch", None)
        if callable(batch):
            fn.minimlops_batch = batch
        out[d.name] = fn
    return out


def typical_row(project: Project) -> dict[str, Any]:
    """A plausible row from the rules alone: the project's own example request
    (``[example] request``) where it gives a value, else the first allowed
    value, the middle of a range, today's date (a timestamp: this hour, in
    UTC), and for text without rules "x", None when optional."""
    given = project.extras.get("request")
    example = given if isinstance(given, Mapping) else {}
    row: dict[str, Any] = {}
    for c in project.columns:
        if example.get(c.name) is not None:
            row[c.name] = _typed(c.type, example[c.name])
        elif c.allowed:
            row[c.name] = c.allowed[0]
        elif c.type in ("integer", "float"):
            lo = c.min if c.min is not None else 0.0
            hi = c.max if c.max is not None else lo + 2
            mid = lo + min(hi - lo, 2.0) / 2
            row[c.name] = int(mid) if c.type == "integer" else mid
        elif c.type == "boolean":
            row[c.name] = False
        elif c.type == "date":
            row[c.name] = datetime.now(UTC).date()
        elif c.type == "timestamp":
            row[c.name] = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        else:
            row[c.name] = "x" if c.required else None
    return row


def _typed(type_: str, value: Any) -> Any:
    """A value as a training row holds it: a date or timestamp (UTC) given
    as ISO 8601 text (a typical row from JSON) becomes one; else as it is."""
    if not isinstance(value, str) or type_ not in ("date", "timestamp"):
        return value
    try:
        if type_ == "date":
            return date.fromisoformat(value)
        t = datetime.fromisoformat(value)
    except ValueError:
        return value
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


_PY_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "float": (int, float),
    "string": (str,),
    "boolean": (bool,),
    "date": (date,),
    "timestamp": (datetime,),
}


def check_derived(project: Project, rows: Iterable[Mapping[str, Any]] | None = None) -> None:
    """Run every derived feature on real rows when given (a champion's typical
    training row, ``spec["reference"]``, or a few training rows), else on
    :func:`typical_row`, and on each with every optional value missing;
    refuse one that raises or returns the wrong type. A given row's missing
    columns are taken from :func:`typical_row`, its dates and timestamps as
    ISO 8601 text are read as training reads them (``date``, ``datetime``).

    Raises:
        ProjectError: names the feature and what went wrong.
    """
    functions = derived_functions(project)
    typical = typical_row(project)
    fulls = [
        {
            **typical,
            **{
                c.name: _typed(c.type, r[c.name])
                for c in project.columns
                if c.name in r and (r[c.name] is not None or not c.required)
            },
        }
        for r in rows or ()
    ] or [typical]
    checked = []
    for full in fulls:
        checked += [full, {k: (v if project.column(k).required else None) for k, v in full.items()}]
    for d in project.derived:
        for row in checked:
            try:
                value = functions[d.name](row)
            except Exception as exc:
                raise ProjectError(
                    f"derived feature {d.name!r} raises on the row {row}: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
            if value is not None and (
                not isinstance(value, _PY_TYPES[d.type])
                or (d.type != "boolean" and isinstance(value, bool))
            ):
                raise ProjectError(
                    f"derived feature {d.name!r} is declared {d.type} but returned {value!r}"
                )
