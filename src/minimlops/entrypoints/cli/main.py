"""The ``minimlops`` command line (typer).

Settings come from ``MINIMLOPS_*`` variables; a flag given here wins over the
variable (see ``Settings.from_env``).
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import io
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.logging import RichHandler
from rich.table import Table

from minimlops.config import ConfigError, Settings
from minimlops.entrypoints.cli.output import console, err, fail, warn
from minimlops.errors import MinimlopsError

app = typer.Typer(
    help="A minimal, production-grade MLOps pipeline for tabular data "
    "(Titanic is the built-in example).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List, promote and roll back model versions.", no_args_is_help=True)
app.add_typer(models_app, name="models")
HomeOpt = Annotated[Path | None, typer.Option("--home", help="data home [MINIMLOPS_HOME]")]
ProjectOpt = Annotated[
    str | None,
    typer.Option(
        "--project",
        "-p",
        help="project directory (with project.toml) or example name (titanic, "
        "wine, diabetes, churn) [MINIMLOPS_PROJECT]; default: the data home's, else titanic",
    ),
]


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings.from_env(os.environ, **overrides)
    except ConfigError as exc:
        fail(exc, 2)


# Libraries whose INFO lines are their own plumbing, not something the user
# did: httpx logs every request the commands send to a running server
# ("HTTP Request: POST http://127.0.0.1:8080/train ..."). Their warnings stay.
QUIET_LOGGERS = ("httpx", "httpcore")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=err, show_path=False, rich_tracebacks=True)],
        force=True,
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


def _ops(settings: Settings) -> Any:
    """The operations of a data home: its running server's, else in this
    process; a local home nothing has run in is refused, not created."""
    from minimlops.entrypoints.cli.client import InProcess, Remote
    from minimlops.entrypoints.runtime.home import running_server

    info = running_server(settings)
    if info is not None:
        return Remote(info)
    from minimlops.bootstrap import build, home_in_use, project_of
    from minimlops.entrypoints.runtime.progress import ThrottledProgress

    try:  # a wrong project file, or a home holding another project
        if settings.backend == "local" and not home_in_use(settings):
            project_of(settings)  # its mistakes first: they are what to fix
            fail(
                f"no data home at {settings.home}: nothing has run there yet. Start the "
                "pipeline there with `minimlops up` (or load a file with `minimlops ingest "
                "FILE`), or name the home that holds your data with --home or MINIMLOPS_HOME."
            )
        app = build(settings, progress=ThrottledProgress())
    except MinimlopsError as exc:
        fail(exc)
    atexit.register(app.close)  # moves logged predictions in, releases the database
    return InProcess(app)


def _fail(exc: Exception) -> None:
    if isinstance(exc, typer.Exit):  # a RuntimeError: already said (by fail)
        raise exc
    fail(exc)


@app.command()
def up(
    home: HomeOpt = None,
    project: ProjectOpt = None,
    port: Annotated[int | None, typer.Option(help="port [MINIMLOPS_PORT, 8080]")] = None,
    host: Annotated[str | None, typer.Option(help="address [127.0.0.1]")] = None,
    processes: Annotated[
        int | None,
        typer.Option(
            "--processes", help="processes answering /predict [MINIMLOPS_SERVING_PROCESSES, 1]"
        ),
    ] = None,
) -> None:
    """Run everything: landing-zone watcher, ingest, train and the HTTP server."""
    settings = _settings(
        home=home, port=port, host=host, serving_processes=processes, project=project
    )
    if settings.backend != "local":
        err.print(
            "[red]error:[/] `minimlops up` runs the local backend; on Google Cloud the "
            "functions run the pipeline: `minimlops gcp provision` and `minimlops gcp deploy`"
        )
        raise typer.Exit(2)
    _setup_logging(settings.log_level)
    from minimlops.bootstrap import project_of, start_training_process

    try:  # a wrong project is said before anything starts or is written
        project_of(settings)
    except MinimlopsError as exc:
        _fail(exc)
    compute = start_training_process()  # first: it imports while the server does
    from minimlops.entrypoints.runtime.serve import serve

    try:
        serve(settings, compute=compute)
    except MinimlopsError as exc:  # ProjectError included: a wrong project file
        _fail(exc)


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, readable=True)],
    home: HomeOpt = None,
    project: ProjectOpt = None,
) -> None:
    """Copy files into the landing zone (like `gsutil cp`); the trigger loads them."""
    settings = _settings(home=home, project=project)
    _setup_logging(settings.log_level)
    from minimlops.bootstrap import check_home, home_in_use, open_store, project_of
    from minimlops.entrypoints.cli.client import InProcess
    from minimlops.entrypoints.runtime.home import running_server
    from minimlops.services.deps import local_path

    if settings.backend == "local":
        try:  # a wrong project, or a home of another one, is said before anything lands
            chosen = project_of(settings)
            check_home(settings, chosen, record=False)
        except MinimlopsError as exc:
            fail(exc)
        if settings.project is None and not home_in_use(settings):
            # a new home takes the example: a file of other columns is the user's
            # own data set, said before the home is made the example's for good
            from minimlops.errors import SchemaError
            from minimlops.services.validate import read_header

            for f in files:
                try:  # the header as ingestion would judge it
                    with open(f, "rb") as fh:
                        read_header(fh, chosen)
                except SchemaError as exc:
                    fail(
                        f"{f.name} is not a file of the example project {chosen.name!r} "
                        f"({exc}); for your own data set, draft a project first: "
                        f"minimlops init {f} --target COLUMN -o DIR, then minimlops ingest "
                        f"{f} --project DIR --home NEW_HOME (when `minimlops up --project "
                        "DIR` is starting on this home, run this again once it listens)"
                    )
            err.print(
                f"note: {settings.home} is a new data home, so it gets the built-in example "
                f"project {chosen.name!r}; for your own data set pass --project DIR (or "
                "start `minimlops up --project DIR` on it first)",
                highlight=False,
            )
    store = open_store(settings)
    landed = []
    for f in files:
        info = store.write_file(settings.landing_bucket, f.name, f)
        landed.append(info)
        console.print(f"landed {info.uri} ({info.size:,} bytes)")
    if settings.backend == "gcp":
        console.print(
            "ingest_data runs on the object-finalized event; follow with `minimlops status`"
        )
        return
    if running_server(settings):
        from minimlops.bootstrap import announce_landed

        announce_landed(settings, landed)  # written whole: it needs no settling time
        them = "it" if len(files) == 1 else "them"
        console.print(f"the running server ingests {them}; follow with `minimlops status`")
        return
    from minimlops.bootstrap import build
    from minimlops.entrypoints.runtime.progress import ThrottledProgress

    try:
        built = build(settings, progress=ThrottledProgress())
    except MinimlopsError as exc:
        fail(exc)
    atexit.register(built.close)
    ops = InProcess(built)
    ops.runtime.drain()
    refused = []
    for f, info in zip(files, landed, strict=True):
        ledger = ops.app.deps.warehouse.ledger(source_uri=info.uri)  # newest first
        row = next((r for r in ledger if r["generation"] == info.generation), None)
        if row is None:
            refused.append(
                f"{f.name} was not ingested: the ingestion ledger has no row for it "
                "(`minimlops status` lists the messages that failed)"
            )
            continue
        if row["status"] == "rejected":  # why: on the error line below
            console.print(f"{f.name}: rejected, nothing loaded")
            refused.append(
                f"{f.name} was rejected: {row['message']}"
                + (
                    f" (report: {local_path(row['report_uri'], settings.buckets_dir)})"
                    if row.get("report_uri")
                    else ""
                )
            )
            continue
        console.print(
            f"{f.name}: {row['status']}, {row['rows_loaded']:,} rows loaded"
            + (f" — {row['message']}" if row["message"] else "")
        )
    if refused:  # a script or CI job must see it: not loaded is a failure
        fail("; ".join(refused))


@app.command()
def train(
    reason: Annotated[
        str, typer.Option(help="why; recorded with the version")
    ] = "requested by a person",
    home: HomeOpt = None,
) -> None:
    """Train a new model version now (the champion gate still applies)."""
    settings = _settings(home=home)
    _setup_logging(settings.log_level)
    try:
        result = _ops(settings).train(reason)
    except (MinimlopsError, RuntimeError) as exc:
        _fail(exc)
    console.print_json(json.dumps(result, default=str))


@app.command()
def predict(
    row: Annotated[
        str | None,
        typer.Argument(help="a row (or list) as JSON; one row answers as POST /predict does"),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="CSV or JSON file of rows")
    ] = None,
    home: HomeOpt = None,
    project: ProjectOpt = None,
) -> None:
    """Predict the target; every prediction is logged like the HTTP endpoint's."""
    settings = _settings(home=home, project=project)
    _setup_logging("WARNING")
    people, single = _read_rows(row, file)
    from minimlops.bootstrap import project_of
    from minimlops.entrypoints.http.request_models import request_models

    try:
        the_project = project_of(settings)
        if file is not None and file.suffix.lower() == ".csv":
            people = _as_landed(the_project, people)
        models = request_models(the_project)
        checked = _checked_rows(models, people, single)
        result = _ops(settings).predict(checked)
    except (MinimlopsError, RuntimeError, ValueError) as exc:
        _fail(exc)
    # every warning POST /predict gives, in the answer as it gives them (a field
    # dropped, so imputed; a category never learnt; a value far outside those
    # learnt from), and each said on stderr
    warned = models.unknown_fields(people) + (result.get("warnings") or [])
    for w in warned:
        warn(w["message"] + (f" (in {w['rows']:,} of {len(people):,} rows)" if "rows" in w else ""))
    if single:  # one row in, one answer out, as POST /predict
        result = result["predictions"][0]
    result = {**result, **({"warnings": warned} if warned else {})}
    console.print_json(json.dumps(result, default=str))


def _checked_rows(models: Any, rows: list[dict[str, Any]], single: bool) -> list[Any]:
    """The rows as the request model reads them; else every bad row's errors
    (the first 20), as the API says them, one per line (``row N: field:
    message``), and nothing is predicted."""
    from pydantic import ValidationError

    from minimlops.entrypoints.http.fastpath import field_errors

    checked, said = [], []
    for number, row in enumerate(rows, 1):
        try:
            checked.append(models.one.validate_python(row))
        except ValidationError as exc:
            where = "" if single else f"row {number}: "
            said += [
                f"{where}{e['field'] or 'row'}: {e['message']}"
                for e in field_errors(exc, False, row, (*models.fields, models.target))
            ]
    if said:
        more = f"\n(and {len(said) - 20:,} more)" if len(said) > 20 else ""
        raise MinimlopsError("\n".join(said[:20]) + more)
    return checked


def _as_landed(project: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A CSV's rows read as ingestion reads a landed file's: names and values
    trimmed, a column's words for no value ("NA") as none, a date written in
    the column's ``format`` as the ISO 8601 a request takes (a value that
    does not read is left for the request's check to name)."""
    from datetime import datetime

    columns = {c.name: c for c in project.columns}
    words = {name: frozenset(project.missing_in(name)) for name in columns}
    out = []
    for row in rows:
        clean: dict[str, Any] = {}
        for name, value in row.items():
            if name is None:  # more values than the header has names: the check says so
                continue
            name = name.strip()
            col = columns.get(name)
            if isinstance(value, str) and col is not None:
                value = value.strip()
                if not value or value in words[name]:
                    value = None
                elif col.format is not None:
                    with contextlib.suppress(ValueError):
                        read = datetime.strptime(value, col.format)
                        value = (read.date() if col.type == "date" else read).isoformat()
            clean[name] = value
        out.append(clean)
    return out


def _read_rows(text: str | None, file: Path | None) -> tuple[list[dict[str, Any]], bool]:
    """The rows to predict, and whether one JSON object (not a list) was given."""
    if file is not None and file.suffix.lower() == ".csv":
        with open(file, newline="", encoding="utf-8-sig") as fh:
            return [
                {k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(fh)
            ], False
    raw = file.read_text() if file is not None else (text or sys.stdin.read())
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        fail(f"invalid JSON: {exc}", 2)
    return (data, False) if isinstance(data, list) else ([data], True)


@models_app.command("list")
def models_list(
    home: HomeOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Versions, the primary metric on VALIDATION, the baseline, each decision
    (in full: `minimlops models show VERSION`)."""
    settings = _settings(home=home)
    data = _ops(settings).models()
    if as_json:
        console.print_json(json.dumps(data, default=str))
        return
    from minimlops.entrypoints.cli.report import models_table

    console.print(models_table(data))


@models_app.command("show")
def models_show(
    version: str, home: HomeOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """One version: its metrics with intervals, baseline, the champion it was
    compared with, the paired test, the gate's decision in words, the
    candidates selection compared and the columns that matter most. The same
    as its evaluation page, /models/VERSION, without the plots."""
    ops = _ops(_settings(home=home))
    known = [v["version"] for v in ops.models()["versions"]]
    if version not in known:
        _fail(MinimlopsError(f"no version {version!r}; versions: {known}"))
    found = ops.model(version)
    if as_json:
        console.print_json(json.dumps(found, default=str))
        return
    from minimlops.entrypoints.cli.report import print_version

    print_version(console, found)


@models_app.command("promote")
def models_promote(
    version: str, reason: str = "promoted by a person", home: HomeOpt = None
) -> None:
    """Make VERSION the champion; a running server switches within seconds."""
    try:
        pointer = _ops(_settings(home=home)).promote(version, reason)
    except (MinimlopsError, RuntimeError) as exc:
        _fail(exc)
    console.print(f"champion is now version {pointer['version']} (was {pointer['previous']})")


@models_app.command("rollback")
def models_rollback(home: HomeOpt = None) -> None:
    """Make the previous champion the champion again."""
    try:
        pointer = _ops(_settings(home=home)).rollback()
    except (MinimlopsError, RuntimeError) as exc:
        _fail(exc)
    console.print(
        f"rolled back: champion is now version {pointer['version']} (was {pointer['previous']})"
    )


@app.command()
def status(
    home: HomeOpt = None,
    project: ProjectOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What is in each table, the champion, the last ingestion and training."""
    data = _ops(_settings(home=home, project=project)).status()
    if as_json:
        console.print_json(json.dumps(data, default=str))
        return
    from minimlops.entrypoints.cli.report import print_status

    print_status(console, data)


@app.command("monitor")
def monitor_cmd(
    check: Annotated[bool, typer.Option(help="run the automatic triggers now")] = False,
    home: HomeOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Live accuracy per version, drift per feature, retraining triggers."""
    try:
        data = _ops(_settings(home=home)).monitoring(check)
    except (MinimlopsError, RuntimeError) as exc:
        _fail(exc)
    if as_json:
        console.print_json(json.dumps(data, default=str))
        return
    from minimlops.entrypoints.cli.report import live_table

    console.print(live_table(data["versions"]))
    d = data["drift"]
    if d["features"]:
        drift = Table(
            "feature",
            "PSI",
            "KS",
            "status",
            "importance share",
            title=f"drift: last {d['window']['rows']} "
            f"predictions vs champion {d['champion']}'s training rows",
        )
        for f in d["features"]:
            ks = f.get("ks_statistic")
            drift.add_row(
                f["feature"],
                f"{f['psi']:.3f}" if f["psi"] is not None else "—",
                "" if ks is None else f"{ks:.3f}",
                f["status"],
                "—"
                if f.get("importance_share") is None
                else _share(f["importance_share"])
                + (
                    f" (of {f['importance_of']}, which it is made from)"
                    if f.get("derived_from")
                    else f" (all of {f['importance_of']})"
                    if f.get("importance_of")
                    else ""
                )
                + ("" if f.get("matters") else " (barely used)"),
            )
        console.print(drift)
    else:
        console.print(f"drift: {d['status']}")
    for reason in data.get("triggered", []):
        console.print(f"[yellow]retraining requested:[/] {reason}")
    for reason in data.get("not_retrained", []):
        console.print(f"[yellow]seen:[/] {reason} (land new rows to retrain)")
    if check and not data.get("triggered") and not data.get("not_retrained"):
        console.print("checked now: no trigger fired")
    for reason in data.get("quiet", []):
        console.print(f"  {reason}")


def _share(value: float) -> str:
    """A share as a percentage: a decimal under 10 % (4.9 % barely used beside
    5.1 % used, not 5 % and 5 %)."""
    return f"{value:.1%}" if value < 0.1 else f"{value:.0%}"


@app.command()
def query(
    sql: str,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    home: HomeOpt = None,
) -> None:
    """Run read-only SQL on the warehouse (works while `up` runs)."""
    if fmt not in ("table", "csv", "json"):
        fail("--format must be table, csv or json", 2)
    try:
        result = _ops(_settings(home=home)).query(sql)
    except (MinimlopsError, RuntimeError) as exc:
        _fail(exc)
    cols, rows = result["columns"], result["rows"]
    if fmt == "json":
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
    elif fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, cols, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        sys.stdout.write(out.getvalue())
    else:
        table = Table(*cols)
        for r in rows:
            table.add_row(*("" if r[c] is None else str(r[c]) for c in cols))
        console.print(table)


@app.command()
def bench(
    out: Annotated[Path, typer.Option(help="where latest.json and latest.md go")] = Path(
        "bench/results"
    ),
    smoke: Annotated[bool, typer.Option(help="tiny sizes and durations: checks it works")] = False,
    peers: Annotated[
        Path | None,
        typer.Option(
            help="Python of the peers' venv: adds mlflow models serve and the exercise's "
            "function to the run (make bench-peers)"
        ),
    ] = None,
    quality: Annotated[
        bool,
        typer.Option(
            help="model quality instead: minimlops' selection against LightGBM, "
            "HistGradientBoosting and linear defaults, and AutoGluon and FLAML given the "
            "same time (their own venv: make bench-automl), on every example and "
            "generated data set, scored on TEST; writes quality.json and quality.md"
        ),
    ] = False,
) -> None:
    """Measure serving and ingestion against baselines run alongside (needs wrk),
    or, with --quality, model quality against well-known defaults and AutoML tools."""
    if quality:
        from minimlops import example_data
        from minimlops.projects import load
        from minimlops_bench.quality import run as run_quality

        settings = _settings()
        try:
            example = example_data.for_project(
                dict(load("titanic").extras),
                settings.cache_dir,
                local=settings.example_data,
                url=settings.example_url,
            )
        except Exception as exc:  # no internet and no MINIMLOPS_EXAMPLE_DATA: Titanic is left out
            console.print(f"[yellow]Titanic left out: {exc}[/yellow]")
            example = None
        report = run_quality(out, example=example, smoke=smoke)
        console.print((out / "quality.md").read_text())
        console.print(
            f"written to {out}/quality.json and quality.md ({len(report['data_sets'])} data sets)"
        )
        return
    from minimlops_bench.benchmark import run

    try:
        report = run(out, smoke=smoke, peers_python=peers)
    except RuntimeError as exc:
        _fail(exc)
    console.print((out / "latest.md").read_text())
    console.print(f"written to {out}/latest.json and latest.md ({len(report['results'])} rows)")


alerts_app = typer.Typer(
    help="Alerts to webhooks and Slack (MINIMLOPS_ALERT_WEBHOOKS; docs/alerts.md).",
    no_args_is_help=True,
)
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("test")
def alerts_test(
    home: HomeOpt = None,
    project: ProjectOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Send a signed test alert to every webhook now; exit 1 if one did not take it."""
    from datetime import UTC, datetime

    from minimlops.bootstrap import alerts_of, names_of, project_of
    from minimlops.services import alerts

    settings = _settings(home=home, project=project)
    if not settings.alert_urls:
        fail("no webhooks: set MINIMLOPS_ALERT_WEBHOOKS (see docs/alerts.md)", 2)
    names = names_of(settings, project_of(settings))
    found = alerts.test(
        alerts_of(settings), names.model_name, datetime.now(UTC).isoformat(timespec="seconds")
    )
    if as_json:
        console.print_json(json.dumps(found))
    else:
        for r in found:
            if r["ok"]:
                console.print(f"[green]sent[/] to {r['webhook']}: it answered {r['status']}")
            else:
                console.print(f"[red]not sent[/] to {r['webhook']}: {r['error']}")
    if not all(r["ok"] for r in found):
        raise typer.Exit(1)


gcp_app = typer.Typer(
    help="Provision and deploy the pipeline on Google Cloud.", no_args_is_help=True
)
app.add_typer(gcp_app, name="gcp")


def _gcp_settings(
    gcp_project: str | None, region: str | None, project: str | None = None
) -> Settings:
    settings = _settings(backend="gcp", gcp_project=gcp_project, region=region, project=project)
    if not settings.gcp_project:
        err.print("[red]error:[/] set GOOGLE_CLOUD_PROJECT or pass --gcp-project")
        raise typer.Exit(2)
    return settings


@gcp_app.command("provision")
def gcp_provision(
    gcp_project: Annotated[str | None, typer.Option(help="[GOOGLE_CLOUD_PROJECT]")] = None,
    project: ProjectOpt = None,
    push_endpoint: Annotated[
        str | None,
        typer.Option(
            help="also push the training topics to this URL (emulators, self-managed endpoints)"
        ),
    ] = None,
) -> None:
    """Create buckets, dataset, tables, topics and subscriptions (idempotent)."""
    settings = _gcp_settings(gcp_project, None, project)
    _setup_logging("WARNING")
    from minimlops.entrypoints.gcp import provision

    try:
        done = provision(settings, push_endpoint=push_endpoint)
    except (MinimlopsError, ImportError, ConfigError) as exc:
        _fail(exc)
    for r in done:
        console.print(f"{r.status:8} {r.kind:13} {r.name}")
    created = sum(r.status != "found" for r in done)
    console.print(
        f"{created} created or updated, {len(done) - created} found (project {settings.gcp_project})"
    )


@gcp_app.command("deploy")
def gcp_deploy(
    gcp_project: Annotated[str | None, typer.Option(help="[GOOGLE_CLOUD_PROJECT]")] = None,
    project: ProjectOpt = None,
    region: Annotated[str | None, typer.Option(help="[MINIMLOPS_REGION]")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print every command; run nothing")
    ] = False,
    allow_unauthenticated: Annotated[
        bool,
        typer.Option(
            "--allow-unauthenticated",
            help="anyone may call POST /predict; every other route needs the API key or admin token",
        ),
    ] = False,
    bundle: Annotated[Path, typer.Option(help="where the source bundle is built")] = Path(
        "build/gcp-bundle"
    ),
) -> None:
    """Check the plan against Google's limits, build the source bundle, deploy
    the four functions, their identities, triggers, secrets and schedule with
    gcloud. Safe to run again: it applies changed settings."""
    settings = _gcp_settings(gcp_project, region, project)
    from minimlops.entrypoints.gcp import PlanError, deploy

    try:
        code = deploy(
            settings,
            bundle.resolve(),
            dry_run=dry_run,
            allow_unauthenticated=allow_unauthenticated,
            echo=lambda line: print(line),
        )
    except (PlanError, MinimlopsError, ConfigError) as exc:
        _fail(exc)
    raise typer.Exit(code)


@gcp_app.command("destroy")
def gcp_destroy(
    gcp_project: Annotated[str | None, typer.Option(help="[GOOGLE_CLOUD_PROJECT]")] = None,
    project: ProjectOpt = None,
    region: Annotated[str | None, typer.Option(help="[MINIMLOPS_REGION]")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print every command; run nothing")
    ] = False,
    delete_data: Annotated[
        bool,
        typer.Option(
            "--delete-data",
            help="also delete the buckets, the dataset and the topics, with all data",
        ),
    ] = False,
) -> None:
    """Remove what deploy made (functions, triggers, schedule, secrets, service
    accounts); with --delete-data also what provision made."""
    settings = _gcp_settings(gcp_project, region, project)
    from minimlops.entrypoints.gcp import destroy

    try:
        code = destroy(
            settings, dry_run=dry_run, delete_data=delete_data, echo=lambda line: print(line)
        )
    except (MinimlopsError, ConfigError) as exc:
        _fail(exc)
    raise typer.Exit(code)


@gcp_app.command("dead-letters")
def gcp_dead_letters(
    gcp_project: Annotated[str | None, typer.Option(help="[GOOGLE_CLOUD_PROJECT]")] = None,
    project: ProjectOpt = None,
    redrive: Annotated[
        bool,
        typer.Option(
            "--redrive", help="publish each again to its topic and remove it from the dead letters"
        ),
    ] = False,
) -> None:
    """List the messages that kept failing; --redrive sends them again."""
    settings = _gcp_settings(gcp_project, None, project)
    _setup_logging("WARNING")
    from minimlops.entrypoints.gcp import redrive as run_redrive

    try:
        n = run_redrive(
            settings, apply=redrive, echo=lambda line: console.print(line, markup=False)
        )
    except (MinimlopsError, ImportError, ConfigError) as exc:
        _fail(exc)
    console.print(f"{n} dead-lettered message(s)" + (" republished" if redrive and n else ""))


from minimlops.entrypoints.cli.project import generate, init  # noqa: E402 (the commands below)

app.command()(init)
app.command()(generate)


def main() -> None:
    """Console script entry point. A wrong project file or setting that a
    command did not catch itself is a message, not a traceback."""
    from rich.markup import escape

    try:
        app()
    except (MinimlopsError, ConfigError) as exc:  # ProjectError is a MinimlopsError
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise SystemExit(1) from None
