"""``minimlops init`` and ``minimlops generate``: making a project and data for it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from minimlops.domain.project import ProjectError
from minimlops.entrypoints.cli.output import console, fail

if TYPE_CHECKING:
    from minimlops import infer

# The [split] table's options, as comments: above a proposed split, and as a
# commented-out example when the rows are split at random (the default).
_SPLIT_HELP = [
    "# How the labelled rows are split: 70 % TRAIN, 15 % VALIDATION, 15 % TEST",
    "# unless fractions says otherwise.",
    "#   TRAIN fits the candidates; VALIDATION scores them and gates a new version",
    "#   against the champion; the served model is then refitted on both. TEST is",
    "#   held back: each version reports what its served model does there.",
    "#   fractions = [0.85, 0.15, 0] serves a fit of every row, with no TEST figure.",
    "# strategy:",
    "#   random  (the default) by a hash of the key: rows independent of each other",
    "#   time    the oldest rows TRAIN, the newest TEST: rows that change over time",
    "#   group   every row of one customer, patient... on the same side",
    "#   column  a column of the file says TRAIN, VALIDATION or TEST",
]
_SPLIT_EXAMPLE = [
    "# [split]",
    '# strategy = "random"            # random | time | group | column',
    '# column = "order_date"          # time: a date or timestamp column; group: an id',
    "#                                # that repeats (customer_id); column: a column",
    '#                                # whose values are "TRAIN", "VALIDATION", "TEST"',
    "# fractions = [0.7, 0.15, 0.15]  # TRAIN / VALIDATION / TEST",
    '# validation_from = "2026-01-01" # time only: cut-off dates instead of fractions',
    '# test_from = "2026-04-01"',
]

_ORDER = (
    "name",
    "type",
    "format",
    "required",
    "generated",
    "from",
    "kind",
    "allowed",
    "min",
    "max",
    "max_length",
    "missing_values",
    "description",
)


def _toml(
    data: dict[str, Any], checks: infer.Checks, observed: dict[str, str] | None = None
) -> str:
    """The project file: top-level fields, then one [[columns]] table per column;
    each doubtful decision as a CHECK comment above its field or column, and
    what the file held in each column as a comment (tomli-w writes the values)."""
    import tomli_w

    notes, fields, observed = checks.where, checks.fields, observed or {}
    out = [
        "# A minimlops project, drafted by `minimlops init`: review every field,",
        "# especially the ones marked CHECK, then run `minimlops up --project DIR`.",
        "",
    ]
    for key, value in data.items():
        if key in ("columns", "split"):
            continue
        for note in fields.get(key, []):
            out.append(f"# CHECK {note}")
        out.append(tomli_w.dumps({key: value}).strip())
    # [split] comes after every top-level field (a table takes the lines below it)
    out += ["", *_SPLIT_HELP]
    split = data.get("split")
    if split is None:
        out += _SPLIT_EXAMPLE
    else:
        out += [f"# CHECK {note}" for note in fields.get("split", [])]
        out.append("[split]")
        for k, v in split.items():
            if k == "fractions":  # one line, said what each share is
                shares = ", ".join(f"{f:g}" for f in v)
                out.append(f"fractions = [{shares}]  # TRAIN / VALIDATION / TEST")
            else:
                out.append(tomli_w.dumps({k: v}).strip())
        out += [f"# {line}" for line in observed.get("split", "").splitlines()]
    out += [
        "",
        '# Columns. "observed" notes are what this file held; they are not rules,',
        "# so a later file's new category loads and a request's new category is scored",
        '# as "other". To refuse anything else, write them as rules: allowed = [...],',
        "# min = ..., max = ... The rules drafted here are checked on every row and",
        "# request, among them: required, min = 0 where no value was negative,",
        "# max_length (at least twice the longest text seen, and 64), the target's",
        "# classes; loosen any that later data may break.",
    ]
    out += [f"# CHECK {note}" for note in notes.get("", [])]
    for col in data["columns"]:
        out.append("")
        for note in notes.get(col["name"], []):
            out.append(f"# CHECK {note}")
        if col["name"] in observed:
            out += [f"# {line}" for line in observed[col["name"]].splitlines()]
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
    leaks = [c for n in draft.leaks for c in draft.checks if c.startswith(f"{n}: possible leakage")]
    if leaks:
        console.print(
            "[red]possible leakage[/]: these columns alone predict the target almost "
            "perfectly, so they are left out of the features (marked CHECK in the file):"
        )
        for line in leaks:
            console.print(f"  - {line}", highlight=False)
    if rest := [c for c in draft.checks if c not in leaks]:
        console.print("[yellow]check before you start[/] (marked CHECK in the file):")
        for line in rest:
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
