"""The composition root: settings in, a wired application out.

The only module that chooses a backend. Adapters are named by dotted path and
imported when a backend is built, so the local backend never imports a cloud
SDK (fsspec's registry of lazily imported implementations, in small).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minimlops import projects
from minimlops.config import Settings
from minimlops.domain.events import ObjectFinalized
from minimlops.domain.project import Project, compatible
from minimlops.domain.schema import table_schema
from minimlops.errors import BackendNotInstalled, ProjectMismatchError
from minimlops.services.deps import (
    Alerts,
    Deps,
    Names,
    Progress,
    _no_progress,
    run_here,
    utc_now,
)
from minimlops.services.monitor import MonitorConfig
from minimlops.services.predict import DurableLog, PredictionLog, Predictor
from minimlops.services.registry import ModelRegistry
from minimlops.services.train import registry_of

BACKENDS: dict[str, dict[str, str]] = {
    "local": {
        "store": "minimlops.adapters.local_fs:LocalObjectStore",
        "warehouse": "minimlops.adapters.duckdb_warehouse:DuckDBWarehouse",
        "bus": "minimlops.adapters.sqlite_bus:SQLiteMessageBus",
        "journal": "minimlops.adapters.journal:PredictionJournal",
        "journal_log": "minimlops.adapters.journal:JournalLog",
        "compute": "minimlops.adapters.process_compute:ProcessCompute",
        "webhooks": "minimlops.adapters.webhooks:HttpxWebhookSender",
    },
    "gcp": {
        "clients": "minimlops.adapters.gcp_clients:make_clients",
        "store": "minimlops.adapters.gcs:GCSObjectStore",
        "warehouse": "minimlops.adapters.bigquery_warehouse:BigQueryWarehouse",
        "bus": "minimlops.adapters.pubsub_bus:PubSubMessageBus",
        "webhooks": "minimlops.adapters.webhooks:HttpxWebhookSender",
    },
}
EXTRAS = {"gcp": "pip install 'minimlops[gcp]'"}
SCHEMA_OF = {
    "training_table": "training_data",
    "predictions_table": "predictions_data",
    "feedback_table": "feedback",
    "ledger_table": "ingestion_ledger",
    "triggers_table": "retrain_triggers",
}


def load_class(backend: str, port: str) -> Any:
    """Import an adapter class by its registered dotted path."""
    try:
        path = BACKENDS[backend][port]
    except KeyError:
        raise BackendNotInstalled(f"backend {backend!r} has no {port} adapter") from None
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        hint = EXTRAS.get(backend, "")
        raise BackendNotInstalled(f"the {backend} backend needs {hint} ({exc})") from exc


def names_of(settings: Settings, project: Project | None = None) -> Names:
    """Bucket, table and topic names; the model is named after the project
    unless MINIMLOPS_MODEL_NAME says otherwise."""
    values = {f: getattr(settings, f) for f in Names.__dataclass_fields__}
    if project is not None and "model_name" not in settings.model_fields_set:
        values["model_name"] = project.name
    return Names(**values)


def dataset_of(settings: Settings, project: Project) -> str:
    """The BigQuery dataset: MINIMLOPS_DATASET, else the project's name
    ("titanic" for the example, as before)."""
    if "dataset" in settings.model_fields_set:
        return settings.dataset
    return project.name.replace("-", "_")


def project_of(settings: Settings) -> Project:
    """The project the settings name (MINIMLOPS_PROJECT or --project), checked,
    code included; without one, the project recorded in the data home (so
    every command on a home uses its project), else the Titanic example.

    Raises:
        ProjectError: the project file or its code is wrong.
    """
    where: str | Path | None = settings.project
    if settings.project is None and settings.backend == "local":
        record = settings.home / "project.json"
        if record.exists():
            directory = json.loads(record.read_text(encoding="utf-8")).get("directory")
            if directory and Path(directory).exists():
                where = directory
    project = projects.load(where, check_code=False)
    if project.derived:  # on the champion's typical training row when there is one
        projects.check_derived(project, _champion_rows(settings, project))
    return project


def home_in_use(settings: Settings) -> bool:
    """Whether something has run in the local data home (it records its
    project there: ``check_home``)."""
    return (settings.home / "project.json").exists()


def _champion_rows(settings: Settings, project: Project) -> list[dict[str, Any]] | None:
    """The local champion's typical training row, to run derived features on
    real values at start (None: no champion, not the local backend, or a
    home nothing has run in: its store is not created to find out)."""
    if settings.backend != "local" or not home_in_use(settings):
        return None
    names = names_of(settings, project)
    store = load_class("local", "store")(settings.buckets_dir)
    registry = ModelRegistry(store, names.model_bucket, names.model_name)
    try:
        pointer, _ = registry.champion()
        if pointer is None:
            return None
        spec = (registry.metadata(pointer["version"]).get("serving") or {}).get("spec") or {}
    except Exception:  # an unreadable champion is reported where it is served
        return None
    reference = spec.get("reference")
    return [dict(reference)] if isinstance(reference, dict) else None


def check_home(settings: Settings, project: Project, *, record: bool = True) -> None:
    """Record the project in a new data home; refuse an incompatible one.

    A compatible change (descriptions, rules, features, a new nullable column)
    updates the record; anything else is refused before anything is written.
    ``record=False`` only checks (``minimlops ingest`` before a file lands).

    Raises:
        ProjectMismatchError: the home holds data of an incompatible project.
    """
    path = settings.home / "project.json"
    if path.exists():
        recorded = projects.from_dict(json.loads(path.read_text(encoding="utf-8"))["project"])
        problems = compatible(recorded, project)
        if recorded.name != project.name:
            problems.insert(0, f"the home holds project {recorded.name!r}, not {project.name!r}")
        if problems:
            raise ProjectMismatchError(
                f"data home {settings.home} holds data of project {recorded.name!r}; "
                f"{project.name!r} cannot use it: {'; '.join(problems)}. Use a new home "
                f"(MINIMLOPS_HOME=... or --home), or start it with the recorded project."
            )
    if not record:
        return
    settings.home.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    data = {"project": project.to_dict(), "directory": project.directory}
    tmp.write_text(json.dumps(data, indent=2, default=list), encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class App:
    """Everything a running minimlops needs, built once per process."""

    settings: Settings
    deps: Deps
    registry: ModelRegistry
    predictor: Predictor
    log: DurableLog
    scan_landing_zone: Callable[[float], int]
    monitor: MonitorConfig
    journal: Any = None
    # announce an object minimlops wrote whole itself, without the watcher's
    # settling time (local backend; Cloud Storage notifies on its own)
    announce: Callable[[Any], bool] | None = None

    @property
    def monitor_every(self) -> float:
        return self.settings.monitor_every

    def flush_predictions(self) -> None:
        """Make every logged prediction visible in the warehouse now."""
        if self.journal is not None:
            self.journal.import_pending()

    def start_background(self) -> None:
        """Recover and start moving logged predictions into the warehouse."""
        if self.journal is not None:
            self.journal.start()

    def close(self) -> None:
        for part in (self.deps.compute, self.journal, self.deps.warehouse, self.deps.bus):
            close = getattr(part, "close", None)
            if close:
                close()


def open_store(settings: Settings) -> Any:
    """Only the object store (e.g. to land a file while a server holds the rest)."""
    if settings.backend == "gcp":
        return load_class("gcp", "store")(load_class("gcp", "clients")(settings).storage)
    return load_class(settings.backend, "store")(settings.buckets_dir)


@dataclass
class ServingApp:
    """What an extra serving process of the local backend holds: the model
    (read from the registry), its predictor and its own prediction log."""

    settings: Settings
    registry: ModelRegistry
    predictor: Predictor
    log: DurableLog


def build_serving(settings: Settings, name: str) -> ServingApp:
    """An extra serving process named ``name``: no warehouse, no bus; its
    prediction rows go to its own journal directory, which the server imports."""
    project = project_of(settings)
    names = names_of(settings, project)
    store = open_store(settings)
    registry = ModelRegistry(
        store, names.model_bucket, names.model_name, projects.derived_functions(project)
    )
    log = load_class("local", "journal_log")(
        settings.journal_dir / name,
        flush_ms=settings.log_flush_ms,
        max_rows=settings.log_batch_rows,
    )
    predictor = Predictor(registry, utc_now, project, shadow=settings.shadow)
    return ServingApp(settings, registry, predictor, log)


def monitor_config(settings: Settings) -> MonitorConfig:
    return MonitorConfig(
        drift_window=settings.drift_window,
        drift_hours=settings.drift_hours,
        drift_min_rows=settings.drift_min_rows,
        psi_warn=settings.psi_warn,
        psi_drift=settings.psi_drift,
        drift_min_importance=settings.drift_min_importance,
        accuracy_threshold=settings.accuracy_threshold,
        error_ratio=settings.error_ratio,
        min_labels=settings.min_labels,
        retrain_every=settings.retrain_every,
    )


def schemas_of(settings: Settings, project: Project) -> dict[str, Any]:
    """Configured table name -> its columns (composed from the project)."""
    return {getattr(settings, f): table_schema(s, project) for f, s in SCHEMA_OF.items()}


def build_gcp(settings: Settings, *, progress: Progress = _no_progress) -> App:
    """The Google Cloud backend: Cloud Storage, BigQuery, Pub/Sub.

    Builds clients only (no request is made), so a function instance starts
    fast; tables, buckets and topics are created by ``minimlops gcp provision``.
    Validated files are staged for BigQuery load jobs in the landing bucket,
    under ``staging/`` (ingestion ignores that prefix).
    """
    clients = load_class("gcp", "clients")(settings)
    project = project_of(settings)
    names = names_of(settings, project)
    store = load_class("gcp", "store")(
        clients.storage, check_location=not settings.storage_emulator_host
    )
    warehouse = load_class("gcp", "warehouse")(
        clients.bigquery,
        dataset_of(settings, project),
        schemas_of(settings, project),
        settings.ledger_table,
        key=_key_of(project),
        staging=(clients.storage, names.landing_bucket),
        location=settings.gcp_location,
        storage_api=clients.storage_api,
        max_bytes_billed=settings.max_bytes_billed,
        write_client=clients.bigquery_write,
        # by day, so the recent window reads recent partitions; clustered for
        # reads by version (predictions) and joins on uuid (feedback)
        partitioning={
            names.predictions_table: ("created_at", ("model_version",)),
            names.feedback_table: ("received_at", ("uuid",)),
        },
    )
    bus = load_class("gcp", "bus")(
        settings.gcp_project,
        dead_letter_topic=settings.dead_letter_topic,
        max_attempts=settings.bus_max_attempts,
    )
    deps = Deps(
        store=store,
        warehouse=warehouse,
        bus=bus,
        project=project,
        derive=projects.derived_functions(project),
        names=names,
        max_bad_rows=settings.max_bad_rows,
        cv_folds=settings.cv_folds,
        training_max_rows=settings.training_max_rows,
        training_budget_s=settings.training_budget,
        refit=settings.refit,
        ensembles=settings.ensembles,
        imbalance_threshold=settings.imbalance_threshold,
        promotion_tolerance=settings.promotion_tolerance,
        alerts=alerts_of(settings),
        progress=progress,
        compute=run_here,
    )
    registry = registry_of(deps)

    def write(rows: list[Any]) -> None:
        """One group-committed batch (the request's structs read as dicts:
        ``entrypoints.http.request_models.row_class``), exactly once where it can."""
        warehouse.log_rows(
            names.predictions_table, [r if isinstance(r, dict) else dict(r) for r in rows]
        )

    log = PredictionLog(write, flush_ms=settings.log_flush_ms, max_rows=settings.log_batch_rows)
    predictor = Predictor(registry, deps.now, project, shadow=settings.shadow)
    return App(
        settings, deps, registry, predictor, log, lambda _settle: 0, monitor_config(settings), None
    )


def start_training_process() -> Any:
    """The local server's training compute, its first child process started
    now: it imports scikit-learn and LightGBM (~2.4 s) while the server
    imports and opens its home, so the example file that lands on first start
    does not wait for it (pass it to :func:`build` as ``compute``)."""
    compute = load_class("local", "compute")()
    compute.prestart()
    return compute


def alerts_of(settings: Settings) -> Alerts:
    """Where alerts go, from the settings (a sender only when there are webhooks;
    on Google Cloud they are raised either way: see ``Alerts``)."""
    sender = load_class(settings.backend, "webhooks")() if settings.alert_urls else None
    return Alerts(
        on=bool(settings.alert_urls) or settings.backend == "gcp",
        webhooks=settings.alert_urls,
        secret=settings.alert_secret.get_secret_value() if settings.alert_secret else None,
        events=tuple(e.strip() for e in settings.alert_events.split(",") if e.strip()) or ("*",),
        timeout=settings.alert_timeout,
        sender=sender,
    )


def build(
    settings: Settings,
    *,
    progress: Progress = _no_progress,
    isolate_training: bool = False,
    compute: Any = None,
) -> App:
    """Open the backend's adapters and wire the handlers' dependencies.

    Args:
        isolate_training: run each training's compute in a fresh child process
            (a long-running server: its memory then does not keep the peak of
            the biggest training); one-shot commands train in-process.
        compute: that process compute, if it was started earlier
            (:func:`start_training_process`).
    """
    if settings.backend == "gcp":
        return build_gcp(settings, progress=progress)
    project = project_of(settings)
    check_home(settings, project)
    names = names_of(settings, project)
    store = open_store(settings)
    settings.journal_dir.mkdir(parents=True, exist_ok=True)
    warehouse = load_class("local", "warehouse")(
        settings.warehouse_path,
        schemas_of(settings, project),
        settings.ledger_table,
        key=_key_of(project),
        readable=(settings.journal_dir,),
    )
    warehouse.ensure_tables()
    bus = _local_bus(settings)
    deps = Deps(
        store=store,
        warehouse=warehouse,
        bus=bus,
        project=project,
        derive=projects.derived_functions(project),
        names=names,
        max_bad_rows=settings.max_bad_rows,
        cv_folds=settings.cv_folds,
        training_max_rows=settings.training_max_rows,
        training_budget_s=settings.training_budget,
        refit=settings.refit,
        ensembles=settings.ensembles,
        imbalance_threshold=settings.imbalance_threshold,
        promotion_tolerance=settings.promotion_tolerance,
        alerts=alerts_of(settings),
        progress=progress,
        files=settings.buckets_dir,
        compute=(compute or load_class("local", "compute")()) if isolate_training else run_here,
    )
    registry = registry_of(deps)
    journal = load_class("local", "journal")(
        settings.journal_dir, warehouse, names.predictions_table
    )
    journal.import_pending()  # recovery: rows logged before a crash
    log = load_class("local", "journal_log")(
        settings.journal_dir, flush_ms=settings.log_flush_ms, max_rows=settings.log_batch_rows
    )

    watcher = importlib.import_module("minimlops.adapters.local_watcher")
    topic = ObjectFinalized.default_topic

    def scan(settle_seconds: float) -> int:
        """The local storage trigger: announce new files in the landing zone."""
        return int(
            watcher.scan_once(
                store, bus, names.landing_bucket, topic, settle_seconds=settle_seconds
            )
        )

    def announce(obj: Any) -> bool:
        if not watcher.announce(bus, names.landing_bucket, topic, obj):
            return False
        watcher.log_landed(obj)
        return True

    monitor = monitor_config(settings)
    predictor = Predictor(registry, deps.now, project, shadow=settings.shadow)
    return App(settings, deps, registry, predictor, log, scan, monitor, journal, announce)


def _local_bus(settings: Settings) -> Any:
    return load_class("local", "bus")(
        settings.bus_path,
        max_attempts=settings.bus_max_attempts,
        lease_seconds=settings.bus_lease_seconds,
    )


def announce_landed(settings: Settings, objects: list[Any]) -> None:
    """Announce files that `minimlops ingest` wrote whole into the landing zone
    of a running local server, through that server's bus, so that it loads them
    at once instead of after the watcher's settling time (it would announce
    them then; each object generation is announced once)."""
    watcher = importlib.import_module("minimlops.adapters.local_watcher")
    bus = _local_bus(settings)
    try:
        for obj in objects:
            watcher.announce(bus, settings.landing_bucket, ObjectFinalized.default_topic, obj)
    finally:
        bus.close()


def _key_of(project: Project) -> Any:
    """What the warehouse adapters need of the project: key, its type, target."""
    from minimlops.ports import KeySpec

    return KeySpec(project.key, project.key_column.type, project.target, project.task)
