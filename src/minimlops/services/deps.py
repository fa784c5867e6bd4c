"""What the handlers depend on, bundled: ports plus the names and knobs they need.

The composition root (``minimlops.bootstrap``) builds one ``Deps`` from the
settings; handlers take it as a keyword argument and never read configuration.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from minimlops.domain.project import Project
from minimlops.ports import MessageBus, ObjectStore, Warehouse, WebhookSender

Progress = Callable[[str, int, int], None]


def _no_progress(step: str, done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class ByName:
    """A function named by its module and name, imported where it is called.

    A compute job crosses to the training process as this name: the server
    that sends it never imports the training code (scikit-learn: ~1 s on the
    way from a landed file to its model, and ~70 MB of the server's memory)."""

    module: str
    name: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(self.module), self.name)(*args, **kwargs)


def run_here(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a compute job in this process (the default; tests, one-shot commands)."""
    return fn(*args, **kwargs)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Names:
    """Names of buckets, tables and topics (the exercise's by default)."""

    landing_bucket: str = "my-data-landing-zone"
    model_bucket: str = "my-model-storage"
    training_table: str = "training_data"
    predictions_table: str = "predictions_data"
    feedback_table: str = "feedback"
    ledger_table: str = "ingestion_ledger"
    triggers_table: str = "retrain_triggers"
    ingestion_topic: str = "ingestion_complete"
    promoted_topic: str = "model_promoted"
    retrain_topic: str = "retrain_requested"
    alerts_topic: str = "alerts"
    model_name: str = "titanic"


@dataclass(frozen=True)
class Alerts:
    """Where alerts go (``MINIMLOPS_ALERT_WEBHOOKS`` and the other alert
    settings). ``on``: alerts are raised (with webhooks locally; always on
    Google Cloud, where only ``send_alert`` holds the webhooks and a topic
    without it drops them)."""

    on: bool = False
    webhooks: tuple[str, ...] = field(default=(), repr=False)  # a Slack URL holds a token
    secret: str | None = field(default=None, repr=False)
    events: tuple[str, ...] = ("*",)
    timeout: float = 10.0
    sender: WebhookSender | None = None  # built on first use (httpx)


@dataclass(frozen=True)
class Deps:
    """Ports and settings handed to every handler."""

    store: ObjectStore
    warehouse: Warehouse
    bus: MessageBus
    project: Project  # the data set: columns, key, target, task
    derive: Mapping[str, Callable[[Mapping[str, Any]], Any]] = field(default_factory=dict)
    names: Names = field(default_factory=Names)
    max_bad_rows: int = 0
    promotion_tolerance: float = 0.0
    cv_folds: int = 5
    training_max_rows: int = 250_000  # rows per split training reads; a sample beyond it
    seed: int = 0
    training_budget_s: float | None = (
        None  # seconds model selection may take (None: every candidate that fits in 120 s)
    )
    ensembles: bool = True  # try (and serve, when better) a weighted ensemble
    refit: bool = True  # serve a fit on TRAIN + VALIDATION (figures: the TRAIN-only fit's)
    imbalance_threshold: float = 0.1  # minority share under which class weights are tried
    progress: Progress = _no_progress
    now: Callable[[], datetime] = utc_now
    compute: Callable[..., Any] = run_here  # where training's compute runs (may offer cancel())
    alerts: Alerts = field(default_factory=Alerts)
    files: Path | None = None  # the local backend's buckets directory (see shown)

    def shown(self, uri: str) -> str:
        """How a log line names an object: its file on the local backend."""
        return local_path(uri, self.files)


def local_path(uri: str, files: Path | None) -> str:
    """How a page or a log line shows an object: the file under ``files``
    (the local backend's buckets directory, written ``~/…`` under the home
    directory), else the URI itself. For display only: never an identifier."""
    if files is None or not uri.startswith("gs://"):
        return uri
    bucket, _, name = uri[len("gs://") :].partition("/")
    path = Path(files, bucket, *name.split("/")).absolute()  # not the server's working directory
    try:
        return str(Path("~") / path.relative_to(Path.home()))
    except (ValueError, RuntimeError):  # not under the home directory, or no home
        return str(path)
