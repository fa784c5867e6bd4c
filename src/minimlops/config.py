"""Settings: the one place that reads configuration from the environment.

Precedence, applied here and in the command line: explicit argument (a flag,
passed as an override) > ``MINIMLOPS_*`` environment variable > default.
Nothing else in the package reads ``os.environ``.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

PREFIX = "MINIMLOPS_"
EXAMPLE_URL = "https://raw.githubusercontent.com/datasciencedojo/datasets/master/titanic.csv"


GCP_BUCKETS = {"landing_bucket": "data-landing-zone", "model_bucket": "model-storage"}
# Variables with our prefix that are not settings, read by the project's own
# scripts and tests (scripts/emulators/, tests/gcp/, tests/e2e/, the Makefile):
# never a typo of a setting. MINIMLOPS_TEST_* is the tests' own knobs.
NOT_SETTINGS = frozenset(
    {
        "MINIMLOPS_EMU_DIR",
        "MINIMLOPS_EMU_STATE",
        "MINIMLOPS_EMULATOR_NOTIFICATIONS",
        "MINIMLOPS_PEERS_PYTHON",
    }
)
NOT_SETTINGS_PREFIXES = ("MINIMLOPS_TEST_",)
logger = logging.getLogger(__name__)
_warned: set[str] = set()


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


class Settings(BaseModel):
    """Every setting of minimlops, with the exercise's names as defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    home: Path = Field(Path(".minimlops"), description="data home")
    backend: Literal["local", "gcp"] = Field(
        "local",
        description="local (embedded parts) or gcp (Cloud Storage, BigQuery, Pub/Sub; "
        "needs the [gcp] extra; `up` is local only)",
    )
    host: str = Field("127.0.0.1", description="the server's address (loopback by default)")
    port: int = Field(8080, ge=0, le=65535, description="the server's port")

    project: str | None = Field(
        None,
        description="the data set's project: a directory with project.toml, or an "
        "example's name (titanic, wine, diabetes, churn); default: the data home's, else titanic",
    )
    gcp_project: str | None = Field(None, description="Google Cloud project (gcp)")
    region: str = Field(
        "europe-west3", description="Cloud Run functions region (gcp); the exercise's region"
    )
    location: str | None = Field(
        None,
        description="bucket and BigQuery dataset location (gcp); default: the region, "
        "so buckets, dataset and functions sit together, as in the exercise",
    )
    max_bytes_billed: int = Field(
        20 * 2**30,
        ge=10 * 2**20,
        description="gcp: the most bytes one BigQuery query may bill; "
        "a query that would read more fails instead of running",
    )
    min_instances: int = Field(
        0,
        ge=0,
        le=100,
        description="gcp: predictions_endpoint instances kept warm (billed "
        "while idle; 1 removes most cold starts)",
    )
    max_instances: int = Field(
        10,
        ge=1,
        le=1000,
        description="gcp: the most predictions_endpoint instances (bounds "
        "cost and BigQuery write load)",
    )
    status_cache_seconds: float = Field(
        0.0,
        ge=0,
        description="how long /status, /models and /events answers are reused; "
        "deployed with 30 on gcp, so the pages' 2 s polling runs no BigQuery job each time",
    )
    dead_letter_topic: str = Field(
        "minimlops-dead-letter",
        description="gcp: where Pub/Sub sets aside messages that keep failing",
    )
    model_check_seconds: float = Field(
        10.0, ge=0, description="gcp serving: how often an instance checks the champion pointer"
    )
    # Emulator endpoints: the client libraries' own variables, read here like
    # every other setting (tests and `make test-gcp` set them).
    storage_emulator_host: str | None = Field(
        None, description="STORAGE_EMULATOR_HOST: a Cloud Storage emulator (tests)"
    )
    bigquery_emulator_host: str | None = Field(
        None, description="BIGQUERY_EMULATOR_HOST: a BigQuery emulator's REST address (tests)"
    )
    bigquery_storage_emulator_host: str | None = Field(
        None,
        description="BIGQUERY_STORAGE_EMULATOR_HOST: its gRPC address, for the Storage Write "
        "API (tests)",
    )
    pubsub_emulator_host: str | None = Field(
        None, description="PUBSUB_EMULATOR_HOST: a Pub/Sub emulator (tests)"
    )
    landing_bucket: str = Field(
        "my-data-landing-zone",
        description="where files land; on gcp the default is "
        "<gcp project>-data-landing-zone (bucket names are global)",
    )
    model_bucket: str = Field(
        "my-model-storage",
        description="model versions; on gcp the default is <gcp project>-model-storage",
    )
    dataset: str = Field(
        "titanic", description="gcp: the BigQuery dataset; default: the project's name"
    )
    training_table: str = Field("training_data", description="the table of ingested rows")
    predictions_table: str = Field(
        "predictions_data", description="the table of logged predictions"
    )
    feedback_table: str = Field("feedback", description="the table of true labels")
    ledger_table: str = Field(
        "ingestion_ledger", description="one row per landed file: loaded, duplicate or rejected"
    )
    triggers_table: str = Field(
        "retrain_triggers",
        description="every retraining trigger and its reason (and each estimate alert, "
        "which asks for none)",
    )
    ingestion_topic: str = Field(
        "ingestion_complete", description="published when a file is loaded"
    )
    promoted_topic: str = Field(
        "model_promoted", description="published when a version becomes champion"
    )
    retrain_topic: str = Field("retrain_requested", description="published to ask for a training")
    alerts_topic: str = Field(
        "alerts", description="alerts on their way to the webhooks (send_alert takes them)"
    )
    model_name: str = Field(
        "titanic",
        description="the model's name in the model bucket (models/<name>/...); default: "
        "the project's name",
    )

    example_data: Path | None = Field(
        None, description="a local copy of the example's titanic.csv; nothing is downloaded"
    )
    example_url: str = Field(
        EXAMPLE_URL,
        description="where the example data is downloaded from (checked against its SHA-256)",
    )

    max_bad_rows: int = Field(
        0,
        ge=0,
        description="load a file with up to this many bad rows (skipped and reported), "
        "like BigQuery's max bad records",
    )
    promotion_tolerance: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="how much worse on the primary metric a challenger may "
        "score and still be promoted",
    )
    cv_folds: int = Field(5, ge=2, le=20, description="cross-validation folds for model selection")
    training_max_rows: int = Field(
        250_000, ge=100, description="rows of each split training reads; beyond it, a sample"
    )
    training_budget: float | None = Field(
        None,
        gt=0,
        description="seconds model selection may take; candidates not started "
        "by then are skipped (listed as such in the version). Unset: every "
        "candidate that fits in 120 s, so a larger table takes what its candidates "
        "need",
    )
    ensembles: bool = Field(
        True,
        description="try a weighted ensemble of the cross-validated candidates and serve it "
        "when its cross-fitted figure beats the best single candidate's; false serves "
        "single candidates only",
    )
    refit: bool = Field(
        True,
        description="after selection and the gate, fit the served model again on TRAIN and "
        "VALIDATION rows with the chosen settings (its figures stay those measured on "
        "VALIDATION by the TRAIN-only fit); false serves the TRAIN-only fit",
    )
    imbalance_threshold: float = Field(
        0.1,
        ge=0,
        le=0.5,
        description="minority-class share under which class weights are tried as well",
    )
    max_batch: int = Field(10_000, ge=1, description="the most rows one POST /predict may hold")
    max_body_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="the largest request body accepted"
    )
    log_flush_ms: float = Field(
        0.0,
        ge=0,
        description="prediction log: extra wait before a flush (rows arriving during "
        "one form the next)",
    )
    serving_processes: int = Field(
        1, ge=1, le=64, description="processes answering /predict under `minimlops up`"
    )
    log_batch_rows: int = Field(
        1024, ge=1, description="prediction log: the most rows one flush writes"
    )
    bus_max_attempts: int = Field(
        5, ge=1, description="deliveries before a message is dead-lettered (Pub/Sub: 5 to 100)"
    )
    bus_lease_seconds: float = Field(
        600.0,
        gt=0,
        description="local bus: a delivery not acknowledged in this time is delivered again",
    )
    watch_interval: float = Field(
        0.2, gt=0, description="seconds between looks at the local landing zone"
    )
    settle_seconds: float = Field(
        0.5,
        ge=0,
        description="a file copied into the local landing zone is read once it has not "
        "changed for this long (`minimlops ingest` needs no wait)",
    )
    admin_token: SecretStr | None = Field(
        None, description="bearer token for the admin endpoints (besides the local server's own)"
    )
    api_key: SecretStr | None = Field(None, description="required on /predict, /explain, /feedback")
    public_routes: str | None = Field(
        None,
        description="comma-separated 'METHOD /path' routes anyone may call; when set, "
        "every other route needs the API key or the admin token (gcp deploy sets it)",
    )
    cors_origins: str = Field(
        "*", description="comma-separated origins allowed to call the public API"
    )

    # The retraining cycle (monitoring, triggers, shadow scoring).
    monitor_every: float = Field(30.0, gt=0, description="seconds between monitor runs")
    drift_window: int = Field(500, ge=10, description="recent predictions compared")
    drift_hours: float | None = Field(None, gt=0, description="or: predictions of the last T hours")
    drift_min_rows: int = Field(
        100, ge=10, description="fewer recent predictions than this: no drift verdict"
    )
    psi_warn: float = Field(
        0.1, gt=0, description="population stability index from which a feature is flagged"
    )
    psi_drift: float = Field(
        0.25,
        gt=0,
        description="population stability index from which a feature has drifted (a "
        "retraining trigger)",
    )
    drift_min_importance: float = Field(
        0.05,
        ge=0,
        le=1,
        description="a drifted feature triggers retraining (and a drift alert) only when "
        "its share of the champion's mean |attribution| on VALIDATION (permutation "
        "importance for versions without attributions) is at least this",
    )
    accuracy_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="classification: retrain when live accuracy (its whole 95 % interval) "
        "falls under this; unset: halfway between the champion's VALIDATION accuracy and "
        "the majority class's there (it lost half its lift)",
    )
    error_ratio: float = Field(
        1.5, gt=1, description="regression: live RMSE over this times VALIDATION's retrains"
    )
    min_labels: int = Field(
        30, ge=1, description="labelled predictions needed before live metrics count"
    )
    retrain_every: float | None = Field(None, gt=0, description="seconds; off by default")
    shadow: bool = Field(
        False, description="also score each request with the newest challenger, logged only"
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")

    # Alerts (docs/alerts.md).
    alert_webhooks: SecretStr | None = Field(
        None,
        description="comma-separated webhook URLs that get alerts (a Slack incoming "
        "webhook gets Slack's format, any other URL signed JSON); a secret, as a Slack "
        "URL holds a token",
    )
    alert_secret: SecretStr | None = Field(
        None,
        description="the key alerts are signed with (X-Minimlops-Signature); required "
        "with any webhook that is not Slack's",
    )
    alert_events: str = Field(
        "*",
        description="comma-separated alert types (shell patterns: model.*,training.failed) "
        "that are sent; every type by default",
    )
    alert_timeout: float = Field(
        10.0, gt=0, le=60, description="seconds a webhook has to answer before it is retried"
    )

    @model_validator(mode="after")
    def _alerts_are_signed(self) -> Settings:
        from minimlops.domain.alerts import is_slack

        for url in self.alert_urls:
            if not url.startswith(("https://", "http://")):
                raise ValueError(f"alert webhook {url[:40]!r} is not an http(s) URL")
            if not is_slack(url) and self.alert_secret is None:
                raise ValueError(
                    "MINIMLOPS_ALERT_SECRET is required with a webhook that is not Slack's: "
                    "without a signature a receiver cannot tell our alerts from anyone's "
                    "(openssl rand -hex 32 makes one)"
                )
        return self

    @property
    def alert_urls(self) -> tuple[str, ...]:
        raw = self.alert_webhooks.get_secret_value() if self.alert_webhooks else ""
        return tuple(u.strip() for u in raw.split(",") if u.strip())

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> Settings:
        """Build settings from ``MINIMLOPS_*`` variables, then explicit overrides.

        Args:
            env: the environment, usually ``os.environ``.
            **overrides: values given on the command line; ``None`` means unset.

        Raises:
            ConfigError: a value is invalid; the message names the variable.
        """
        for line in cls.unknown_variables(env):
            if line not in _warned:  # once per process, however often settings are read
                _warned.add(line)
                logger.warning("warning: %s", line)
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(PREFIX + name.upper())
            if raw not in (None, ""):
                values[name] = raw
        if not values.get("gcp_project") and env.get("GOOGLE_CLOUD_PROJECT"):
            values["gcp_project"] = env["GOOGLE_CLOUD_PROJECT"]
        for name in (
            "storage_emulator_host",
            "bigquery_emulator_host",
            "bigquery_storage_emulator_host",
            "pubsub_emulator_host",
        ):
            if env.get(name.upper()):
                values.setdefault(name, env[name.upper()])
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("backend") == "gcp" and values.get("gcp_project"):
            # Bucket names are global: the exercise's names are someone else's on
            # Google Cloud. The project id (itself globally unique) makes them ours.
            for name, suffix in GCP_BUCKETS.items():
                values.setdefault(name, f"{values['gcp_project']}-{suffix}")
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{PREFIX}{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                if e["loc"]
                else e["msg"].removeprefix("Value error, ")  # a check of several settings
                for e in exc.errors()
            )
            raise ConfigError(f"invalid setting: {problems}") from None

    @classmethod
    def unknown_variables(cls, env: Mapping[str, str]) -> list[str]:
        """A line per ``MINIMLOPS_*`` variable that is no setting (a typo:
        ``MINIMLOPS_PROT``), naming the closest setting.

        Warned about, not refused: the environment is shared (a shell profile,
        a CI job, a container image, another version of minimlops whose
        settings differ), so refusing would stop every command over a variable
        that may not be meant for it; ignoring it without a word hides the
        typo (the server listens on 8080, not on the 9000 asked for). So a
        line names it and goes on, as Cargo does with a key it does not know
        ("warning: unused manifest key"). It goes to the log: stderr on the
        command line, Cloud Logging in a function.
        """
        settings = {name.upper(): name for name in cls.model_fields}
        lines = []
        for var in sorted(env):
            if (
                not var.startswith(PREFIX)
                or var[len(PREFIX) :] in settings
                or var in NOT_SETTINGS
                or var.startswith(NOT_SETTINGS_PREFIXES)
            ):
                continue
            close = difflib.get_close_matches(var[len(PREFIX) :], list(settings), n=1, cutoff=0.6)
            hint = (
                f"did you mean {PREFIX}{close[0]}?"
                if close
                else "the settings are listed in docs/reference/settings.md"
            )
            lines.append(f"{var} is not a setting of minimlops and is ignored; {hint}")
        return lines

    # Derived locations of the local backend, all under the data home.
    @property
    def origins(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def gcp_location(self) -> str:
        """Where buckets and the dataset live: MINIMLOPS_LOCATION, else the region."""
        return self.location or self.region

    @property
    def emulated(self) -> bool:
        """Google Cloud services are emulators on this machine (tests)."""
        return bool(
            self.storage_emulator_host or self.bigquery_emulator_host or self.pubsub_emulator_host
        )

    @property
    def journal_dir(self) -> Path:
        return self.home / "journal"

    @property
    def buckets_dir(self) -> Path:
        return self.home / "buckets"

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def bus_path(self) -> Path:
        return self.home / "bus.sqlite3"

    @property
    def runtime_file(self) -> Path:
        """Written by a running server: its address and a local admin token."""
        return self.home / "server.json"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"
