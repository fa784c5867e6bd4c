"""``minimlops init`` and ``minimlops generate``: making a project and data for it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from minimlops.domain.project import ProjectError
from minimlops.entrypoints.cli.output import console, fail

if TYPE_CHECKING:
    from minimlops import infer

_ORDER = (
    "name",
    "type",
    "required",
    "generated",
    "kind",
    "allowed",
    "min",
    "max",
    "max_length",
    "description",
)


def _toml(
    data: dict[str, Any], checks: infer.Checks, observed: dict[str, str] | None = None
) -> str:
    """The project file: top-level fields, then one [[columns]] table per column;
    each doubtful decision as a CHECK comment above its field or column, and
    what the file held in each column as a comment (tomli-w writes the values)."""
    import tomli_w

    notes, observed = checks.where, observed or {}
    out = [
        "# A minimlops project, drafted by `minimlops init`: review every field,",
        "# especially the ones marked CHECK, then run `minimlops up --project DIR`.",
        "",
    ]
    for key, value in data.items():
        if key == "columns":
            continue
        for note in notes.get(key, []):
            out.append(f"# CHECK {note}")
        out.append(tomli_w.dumps({key: value}).strip())
    out += [
        "",
        '# Columns. "observed" notes are what this file held; they are not rules,',
        "# so a later file's new category loads and a request's new category is scored",
        '# as "other". To refuse anything else, write them as rules: allowed = [...],',
        "# min = ..., max = ...",
    ]
    out += [f"# CHECK {note}" for note in notes.get("", [])]
    for col in data["columns"]:
        out.append("")
        for note in notes.get(col["name"], []):
            out.append(f"# CHECK {note}")
        if col["name"] in observed:
            out.append(f"# {observed[col['name']]}")
        out.append("[[columns]]")
        if unwritten := set(col) - set(_ORDER):
            raise ValueError(f"column fields {sorted(unwritten)} have no place in the file")
        out += [tomli_w.dumps({k: col[k]}).strip() for k in _ORDER if k in col]
    return "\n".join(out) + "\n"


def init(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="a CSV file of your data set"
        ),
    ],
    target: Annotated[str, typer.Option("--target", "-t", help="the column to predict")],
    key: Annotated[str | None, typer.Option(help="the column that identifies a row")] = None,
    task: Annotated[str | None, typer.Option(help="binary, multiclass or regression")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="project directory [./<file name>]")
    ] = None,
    force: Annotated[bool, typer.Option(help="overwrite an existing project.toml")] = False,
) -> None:
    """Draft a project (project.toml) from a CSV file, printing every decision."""
    from minimlops import infer, projects

    if task not in (None, "binary", "multiclass", "regression"):
        fail("--task must be binary, multiclass or regression", 2)
    # named after its directory when one is given (-o churn-model: project
    # "churn-model", whatever the file is called), else after the file
    name = infer.project_name(output.resolve().name) if output is not None else None
    try:
        draft = infer.draft(file, target, key=key, task=task, name=name)
    except ProjectError as exc:
        fail(exc, 2)
    directory = output or Path(draft.data["name"])
    path = directory / projects.FILENAME
    if path.exists() and not force:
        fail(f"{path} exists; pass --force to overwrite it", 2)
    text = _toml(draft.data, draft.checks, draft.observed)
    try:  # the draft must be a valid project before it is written
        projects.from_dict(__import__("tomllib").loads(text), str(directory))
    except ProjectError as exc:
        fail(f"the inferred project is not valid ({exc}); please report it")
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    for line in draft.decisions:
        console.print(f"  {line}", highlight=False)
    if draft.checks:
        console.print("[yellow]check before you start[/] (marked CHECK in the file):")
        for line in draft.checks:
            console.print(f"  - {line}", highlight=False)
    skip = f"MINIMLOPS_MAX_BAD_ROWS={draft.unlabelled} " if draft.unlabelled else ""
    console.print(
        f"wrote {path}. Next:\n  {skip}minimlops up --project {directory} --home "
        f"{directory}/.home &\n  minimlops ingest {file} --home {directory}/.home",
        highlight=False,
    )


def generate(
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV file to write")],
    rows: Annotated[int, typer.Option(min=1)] = 1000,
    seed: int = 0,
    bad_rows: Annotated[int, typer.Option(min=0)] = 0,
    start_id: Annotated[int, typer.Option(min=1)] = 1,
    project: Annotated[
        str | None,
        typer.Option("--project", "-p", help="project directory or example name [titanic]"),
    ] = None,
) -> None:
    """Write synthetic rows from a project's rules (tests, soak, benchmarks);
    the target follows a hidden rule plus noise, so models have something to learn."""
    from minimlops import projects
    from minimlops.generate import write_project_csv

    try:
        p = projects.load(project)
    except ProjectError as exc:
        fail(exc, 2)
    planted = write_project_csv(p, output, rows, seed=seed, bad_rows=bad_rows, start_id=start_id)
    console.print(
        f"wrote {rows:,} rows of {p.name} to {output}" + (f" ({planted} bad)" if planted else "")
    )
