"""The deployment plan: every resource, identity and grant `minimlops gcp
deploy` makes, as data, and the gcloud commands that make them.

The plan is built to hold Google's documented limits (:mod:`.limits`) and is
checked against them by :func:`violations` before anything runs. What each
function may do is the least its calls need (:mod:`.permissions` maps every
adapter call to its permission and the role that grants it).

Identities (one per job, none shared):

- a runtime service account per function (``mlops-<function>``);
- ``mlops-trigger``: the identity Eventarc uses to deliver events to
  ``ingest_data`` and ``train_model`` (``run.invoker`` on those two services,
  ``eventarc.eventReceiver`` on the project for the Cloud Storage trigger);
- ``mlops-scheduler``: Cloud Scheduler's identity, ``run.invoker`` on
  ``monitor_pipeline`` only;
- Google's service agents get what their part needs: the Cloud Storage agent
  publishes bucket events; the Pub/Sub agent forwards dead letters.

Training runs inside ``train_model``, an event-driven function, so within the
540 s such functions may run: model selection has a time budget
(``MINIMLOPS_TRAINING_BUDGET``, 30 s by default) and reads at most
``MINIMLOPS_TRAINING_MAX_ROWS`` rows a split, and the plan refuses a budget
that leaves less than :data:`TRAINING_RESERVE_S` for reading, the final fit,
evaluation, conversion and upload. A Pub/Sub push (which is how Eventarc
delivers) waits at most 600 s for an answer, so an HTTP function behind the
trigger would not run longer without being delivered twice.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from minimlops.config import ConfigError, Settings
from minimlops.entrypoints.gcp import limits
from minimlops.entrypoints.http.security import Access
from minimlops.services.deps import Names

STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
TRAINING_RESERVE_S = 240  # read, final fit, evaluation, ONNX conversion, upload
RETRAIN_TRIGGER = "train-model-retrain"  # train_model's second trigger
SCHEDULER_JOB = "minimlops-monitor"
SECRETS = {
    "MINIMLOPS_API_KEY": "minimlops-api-key",
    "MINIMLOPS_ADMIN_TOKEN": "minimlops-admin-token",
}
PUBLIC_ROUTES = "POST /predict,GET /healthz"  # the default; MINIMLOPS_PUBLIC_ROUTES widens it
RUNTIME = "python311"  # the Python the lock is resolved for
RETRY_DELAYS = (10, 600)  # seconds: a trigger subscription's backoff, first and longest
ENV_DELIMITER = "|"  # between --set-env-vars entries; no value may hold it
# A table's writers get this, not roles/bigquery.dataEditor, which would also
# let them delete or re-schema the table. Created in the project by deploy.
APPENDER = "minimlopsTableAppender"
CUSTOM_ROLES = {
    APPENDER: ("bigquery.tables.get", "bigquery.tables.getData", "bigquery.tables.updateData")
}  # what --allow-unauthenticated opens
APIS = (
    "cloudfunctions",
    "run",
    "cloudbuild",
    "artifactregistry",
    "eventarc",
    "pubsub",
    "storage",
    "bigquery",
    "bigquerystorage",
    "secretmanager",
    "cloudscheduler",
    "iam",
)
# Settings that mean nothing in a function (local paths, the local server) or
# that reach it otherwise (secrets, the resolved names).
NOT_DEPLOYED = {
    "home",
    "backend",
    "host",
    "port",
    "project",
    "gcp_project",
    "region",
    "storage_emulator_host",
    "bigquery_emulator_host",
    "pubsub_emulator_host",
    "bigquery_storage_emulator_host",
    "example_data",
    "example_url",
    "admin_token",
    "api_key",
    "serving_processes",
    "watch_interval",
    "settle_seconds",
    "bus_lease_seconds",
    "dataset",
    "model_name",
    "public_routes",
    "min_instances",
    "max_instances",
    "status_cache_seconds",
    "monitor_every",
}  # Cloud Scheduler calls the monitor (every 15 minutes)


class PlanError(ValueError):
    """The settings would make a plan Google Cloud refuses; the message says why."""


# -- the plan as data ------------------------------------------------------------
@dataclass(frozen=True)
class Lookup:
    """A value known only when the plan runs (a project number, the
    subscription Eventarc made): the command that prints it, and where it goes."""

    argv: tuple[str | Lookup, ...]
    template: str = "{}"

    def shell(self) -> str:
        """As one shell word: pasted into a shell, it runs as deploy runs it."""
        return '"' + self._substitution() + '"'

    def _substitution(self) -> str:
        inner = " ".join(
            a._substitution() if isinstance(a, Lookup) else shlex.quote(a) for a in self.argv
        )
        return self.template.format("$(" + inner + ")")


Arg = str | Lookup


@dataclass(frozen=True)
class Step:
    """One command. ``update`` runs instead when the resource exists already;
    ``exists_ok`` accepts an existing resource as it is (a secret's value, an
    account); ``secret_stdin`` pipes a freshly generated secret, never shown."""

    argv: tuple[Arg, ...]
    why: str
    update: tuple[Arg, ...] | None = None
    exists_ok: bool = False
    secret_stdin: bool = False

    def shell(self) -> str:
        return " ".join(a.shell() if isinstance(a, Lookup) else shlex.quote(a) for a in self.argv)


@dataclass(frozen=True)
class Grant:
    """One role for one principal on one resource, and why."""

    scope: str  # project | bucket | table | dataset | topic | subscription | secret | function
    resource: str
    role: str
    why: str
    condition: str | None = None  # a CEL expression (objects of a bucket)


@dataclass(frozen=True)
class Trigger:
    kind: str  # storage | pubsub | http
    source: str = ""  # bucket or topic
    location: str = ""


@dataclass(frozen=True)
class Function:
    name: str
    memory: str
    cpu: int
    timeout: int  # seconds
    concurrency: int
    max_instances: int
    trigger: Trigger
    grants: tuple[Grant, ...]  # what its runtime account may do, and nothing else
    min_instances: int = 0
    secrets: tuple[str, ...] = ()  # environment variables read from Secret Manager
    public: bool = False
    env: tuple[tuple[str, str], ...] = ()  # settings for this function only

    @property
    def service(self) -> str:
        """The Cloud Run service a Cloud Run function runs as."""
        return self.name.replace("_", "-").lower()

    @property
    def event_driven(self) -> bool:
        return self.trigger.kind != "http"


@dataclass(frozen=True)
class Identity:
    account: str  # the id, before the @
    grants: tuple[Grant, ...]
    display: str


@dataclass
class Plan:
    project: str
    region: str
    location: str
    dataset: str
    names: Names  # buckets, tables, topics, the model's name: as the functions resolve them
    functions: list[Function]
    identities: list[Identity]
    agents: list[tuple[str, Lookup, Grant]]  # Google's service agents: who, member, grant
    env: dict[str, str]
    allow_unauthenticated: bool
    settings: Settings = field(repr=False)

    def email(self, account: str) -> str:
        return f"{account}@{self.project}.iam.gserviceaccount.com"

    def function(self, name: str) -> Function:
        return next(f for f in self.functions if f.name == name)


def runtime_account(fn: str) -> str:
    return "mlops-" + fn.replace("_", "-")


def build(settings: Settings, *, allow_unauthenticated: bool = False) -> Plan:
    """The plan for these settings and the project they name."""
    from minimlops.bootstrap import dataset_of, names_of, project_of

    s, project = settings, project_of(settings)
    names, dataset = names_of(s, project), dataset_of(s, project)
    gcp, location = str(s.gcp_project), s.gcp_location
    t = {
        k: f"{gcp}:{dataset}.{getattr(names, k)}"
        for k in (
            "training_table",
            "predictions_table",
            "feedback_table",
            "ledger_table",
            "triggers_table",
        )
    }
    ds = f"{gcp}:{dataset}"
    champion = (
        f'resource.name == "projects/_/buckets/{names.model_bucket}/objects/'
        f'models/{names.model_name}/champion.json"'
    )

    def job_user(why: str) -> Grant:
        return Grant("project", gcp, "roles/bigquery.jobUser", why)

    def reader(why: str) -> Grant:
        return Grant("dataset", ds, "roles/bigquery.dataViewer", why)

    def writer(table: str, why: str) -> Grant:
        return Grant("table", t[table], f"projects/{gcp}/roles/{APPENDER}", why)

    def publisher(topic: str, why: str) -> Grant:
        return Grant("topic", topic, "roles/pubsub.publisher", why)

    def secret(env: str, why: str) -> Grant:
        return Grant("secret", SECRETS[env], "roles/secretmanager.secretAccessor", why)

    functions = [
        Function(
            "ingest_data",
            "4Gi",
            2,
            limits.EVENT_TIMEOUT.value,
            1,
            10,
            Trigger("storage", names.landing_bucket, limits.trigger_location(location)),
            (
                Grant(
                    "bucket",
                    names.landing_bucket,
                    "roles/storage.objectUser",
                    "read the landed file, move rejects aside, write reports, stage loads",
                ),
                reader("the ledger, and predictions to match labels"),
                writer("training_table", "append validated rows (load job)"),
                writer("ledger_table", "record each file"),
                writer("feedback_table", "labels a file brings for logged predictions"),
                writer("triggers_table", "record the new-data trigger"),
                job_user("run load and query jobs"),
                publisher(names.ingestion_topic, "announce ingestion_complete"),
            ),
        ),
        Function(
            "train_model",
            "4Gi",
            2,
            limits.EVENT_TIMEOUT.value,
            1,
            1,
            Trigger("pubsub", names.ingestion_topic, s.region),
            (
                reader("training rows, feedback and the ledger"),
                job_user("run queries"),
                Grant(
                    "project",
                    gcp,
                    "roles/bigquery.readSessionUser",
                    "read training rows through the Storage Read API",
                ),
                Grant(
                    "bucket",
                    names.model_bucket,
                    "roles/storage.objectUser",
                    "write versions, swap the champion pointer",
                ),
                publisher(names.promoted_topic, "announce a promotion"),
            ),
        ),
        Function(
            "predictions_endpoint",
            "1Gi",
            1,
            60,
            80,
            s.max_instances,
            Trigger("http"),
            (
                Grant(
                    "bucket",
                    names.model_bucket,
                    "roles/storage.objectViewer",
                    "load the champion and read versions",
                ),
                Grant(
                    "bucket",
                    names.model_bucket,
                    "roles/storage.objectUser",
                    "admin: promote and roll back (the champion pointer only)",
                    champion,
                ),
                Grant(
                    "bucket",
                    names.landing_bucket,
                    "roles/storage.objectViewer",
                    "rejected-file reports (API key or admin token)",
                ),
                reader("monitoring, status, models, user SQL"),
                writer("predictions_table", "log every prediction"),
                writer("feedback_table", "store true labels"),
                writer("triggers_table", "admin: record a requested training"),
                job_user("run queries"),
                publisher(names.retrain_topic, "admin: request a training"),
                secret("MINIMLOPS_API_KEY", "check X-API-Key"),
                secret("MINIMLOPS_ADMIN_TOKEN", "check the admin token"),
            ),
            min_instances=s.min_instances,
            secrets=tuple(SECRETS),
            public=allow_unauthenticated,
            env=(
                ("MINIMLOPS_PUBLIC_ROUTES", s.public_routes or PUBLIC_ROUTES),
                ("MINIMLOPS_STATUS_CACHE_SECONDS", "30"),
            ),
        ),
        Function(
            "monitor_pipeline",
            "1Gi",
            1,
            300,
            1,
            1,
            Trigger("http"),
            (
                reader("predictions, labels and training rows"),
                writer("triggers_table", "record a trigger that fired"),
                job_user("run queries"),
                Grant(
                    "bucket",
                    names.model_bucket,
                    "roles/storage.objectViewer",
                    "the champion's metadata",
                ),
                publisher(names.retrain_topic, "request a training"),
            ),
        ),
    ]
    trigger = "mlops-trigger"
    identities = [
        Identity(runtime_account(f.name), f.grants, f"minimlops {f.name}") for f in functions
    ]
    identities.append(
        Identity(
            trigger,
            (
                Grant(
                    "project",
                    gcp,
                    "roles/eventarc.eventReceiver",
                    "receive Cloud Storage events for ingest_data",
                ),
                Grant("function", "ingest_data", "roles/run.invoker", "deliver landed files"),
                Grant(
                    "function",
                    "train_model",
                    "roles/run.invoker",
                    "deliver ingestion_complete and retrain_requested",
                ),
            ),
            "minimlops Eventarc triggers",
        )
    )
    identities.append(
        Identity(
            "mlops-scheduler",
            (Grant("function", "monitor_pipeline", "roles/run.invoker", "call the monitor"),),
            "minimlops Cloud Scheduler",
        )
    )
    number = Lookup(("gcloud", "projects", "describe", gcp, "--format=value(projectNumber)"))
    pubsub_agent = Lookup(
        number.argv, "--member=serviceAccount:service-{}@gcp-sa-pubsub.iam.gserviceaccount.com"
    )
    storage_agent = Lookup(
        ("gcloud", "storage", "service-agent", f"--project={gcp}"), "--member=serviceAccount:{}"
    )
    agents = [
        (
            "the Cloud Storage service agent",
            storage_agent,
            Grant(
                "project",
                gcp,
                "roles/pubsub.publisher",
                "Cloud Storage publishes bucket events for the trigger",
            ),
        ),
        (
            "the Pub/Sub service agent",
            pubsub_agent,
            Grant(
                "topic",
                s.dead_letter_topic,
                "roles/pubsub.publisher",
                "forward messages that keep failing to the dead-letter topic",
            ),
        ),
    ]
    return Plan(
        gcp,
        s.region,
        location,
        dataset,
        names,
        functions,
        identities,
        agents,
        env_vars(s, dataset, names.model_name),
        allow_unauthenticated,
        s,
    )


def env_vars(settings: Settings, dataset: str, model_name: str) -> dict[str, str]:
    """The functions' settings: every setting that means something there, the
    names resolved for the project, the bundled project's directory."""
    from minimlops.entrypoints.gcp.bundle import BUNDLED_PROJECT

    values = {k: getattr(settings, k) for k in type(settings).model_fields if k not in NOT_DEPLOYED}
    values.update(
        dataset=dataset,
        model_name=model_name,
        project=BUNDLED_PROJECT,
        location=settings.gcp_location,
    )
    out = {"MINIMLOPS_BACKEND": "gcp", "GOOGLE_CLOUD_PROJECT": str(settings.gcp_project)}
    out.update(
        {f"MINIMLOPS_{k.upper()}": str(v) for k, v in sorted(values.items()) if v is not None}
    )
    return out


# -- checks ----------------------------------------------------------------------
def violations(plan: Plan) -> list[str]:
    """Every documented limit the plan breaks (empty: Google Cloud accepts it)."""
    out = []
    for fn in plan.functions:
        cap = limits.EVENT_TIMEOUT if fn.event_driven else limits.HTTP_TIMEOUT
        if fn.timeout > cap.value:
            out.append(
                f"{fn.name}: timeout {fn.timeout}s is over the {cap.value}s {cap.what} "
                f"({cap.source})"
            )
        memory = limits.mib(fn.memory)
        if memory > limits.MAX_MEMORY_MIB.value or fn.cpu < limits.min_cpu(memory):
            out.append(
                f"{fn.name}: {fn.memory} needs at least {limits.min_cpu(memory)} vCPU "
                f"({limits.MEMORY_SOURCE})"
            )
        if fn.concurrency > 1 and fn.cpu < limits.CONCURRENCY_NEEDS_ONE_CPU.value:
            out.append(
                f"{fn.name}: concurrency over 1 needs a whole vCPU "
                f"({limits.CONCURRENCY_NEEDS_ONE_CPU.source})"
            )
        if fn.concurrency > limits.MAX_CONCURRENCY.value:
            out.append(
                f"{fn.name}: concurrency {fn.concurrency} is over "
                f"{limits.MAX_CONCURRENCY.value} ({limits.MAX_CONCURRENCY.source})"
            )
        if not limits.FUNCTION_NAME.match(fn.name):
            out.append(f"{fn.name}: not a valid function name ({limits.FUNCTION_NAME_SOURCE})")
        if fn.trigger.kind == "storage" and fn.trigger.location != limits.trigger_location(
            plan.location
        ):
            out.append(
                f"{fn.name}: its trigger is in {fn.trigger.location}, the bucket in "
                f"{plan.location} ({limits.STORAGE_TRIGGER_LOCATION})"
            )
    for ident in plan.identities:
        if not limits.SERVICE_ACCOUNT_ID.match(ident.account):
            out.append(
                f"service account {ident.account!r}: 6 to 30 lowercase letters, digits "
                f"and dashes, starting with a letter ({limits.SERVICE_ACCOUNT_ID_SOURCE})"
            )
    for bucket in (plan.names.landing_bucket, plan.names.model_bucket):
        problem = limits.bucket_name_problem(bucket)
        if problem:
            out.append(f"bucket name {bucket!r}: {problem} ({limits.BUCKET_NAME_SOURCE})")
    budget = plan.settings.training_budget
    if budget + TRAINING_RESERVE_S > limits.EVENT_TIMEOUT.value:
        out.append(
            f"MINIMLOPS_TRAINING_BUDGET={budget:g} cannot finish inside train_model's "
            f"{limits.EVENT_TIMEOUT.value}s ({limits.EVENT_TIMEOUT.source}): at most "
            f"{limits.EVENT_TIMEOUT.value - TRAINING_RESERVE_S}s leaves time to read, fit "
            "and store the model"
        )
    if RUNTIME not in limits.RUNTIMES:
        out.append(f"runtime {RUNTIME}: not one of {limits.RUNTIMES} ({limits.RUNTIMES_SOURCE})")
    low, high = limits.BACKOFF_SECONDS
    if not low <= RETRY_DELAYS[0] <= RETRY_DELAYS[1] <= high:
        out.append(
            f"retry delays {RETRY_DELAYS}: {low} to {high} s ({limits.DELIVERY_ATTEMPTS_SOURCE})"
        )
    s = plan.settings
    if s.min_instances > s.max_instances:
        out.append(
            f"MINIMLOPS_MIN_INSTANCES={s.min_instances} is over "
            f"MINIMLOPS_MAX_INSTANCES={s.max_instances}"
        )
    try:  # checked here: on Cloud Run a wrong entry would only show as a 500
        Access.parse(dict(plan.function("predictions_endpoint").env)["MINIMLOPS_PUBLIC_ROUTES"])
    except ConfigError as exc:
        out.append(str(exc))
    held = [k for k, v in plan.env.items() if ENV_DELIMITER in v]
    if held:
        out.append(f"{', '.join(held)}: a value may not contain {ENV_DELIMITER!r}")
    low, high = limits.DELIVERY_ATTEMPTS
    if not low <= plan.settings.bus_max_attempts <= high:
        out.append(
            f"MINIMLOPS_BUS_MAX_ATTEMPTS={plan.settings.bus_max_attempts}: Pub/Sub "
            f"dead-letters after {low} to {high} attempts ({limits.DELIVERY_ATTEMPTS_SOURCE})"
        )
    return out


# -- commands --------------------------------------------------------------------
def _member(plan: Plan, account: str) -> str:
    return f"--member=serviceAccount:{plan.email(account)}"


def grant_step(plan: Plan, member: Arg, g: Grant) -> Step:
    """The gcloud (or bq) command of one grant, for a member flag or a Lookup."""
    p, role = plan.project, f"--role={g.role}"
    cond = (
        [f"--condition=expression={g.condition},title=champion-pointer-only"] if g.condition else []
    )
    argv: tuple[Arg, ...] = {
        "project": (
            "gcloud",
            "projects",
            "add-iam-policy-binding",
            g.resource,
            member,
            role,
            "--condition=None",
            "--quiet",
        ),
        "bucket": (
            "gcloud",
            "storage",
            "buckets",
            "add-iam-policy-binding",
            f"gs://{g.resource}",
            member,
            role,
            *cond,
        ),
        "topic": (
            "gcloud",
            "pubsub",
            "topics",
            "add-iam-policy-binding",
            g.resource,
            member,
            role,
            f"--project={p}",
        ),
        "subscription": (
            "gcloud",
            "pubsub",
            "subscriptions",
            "add-iam-policy-binding",
            g.resource,
            member,
            role,
            f"--project={p}",
        ),
        "secret": (
            "gcloud",
            "secrets",
            "add-iam-policy-binding",
            g.resource,
            member,
            role,
            f"--project={p}",
        ),
        # `bq add-iam-policy-binding` takes tables, not datasets: a dataset's
        # grant is GoogleSQL's GRANT ... ON SCHEMA
        # (https://cloud.google.com/bigquery/docs/reference/standard-sql/data-control-language)
        "dataset": (
            "bq",
            "query",
            f"--project_id={p}",
            f"--location={plan.location}",
            "--use_legacy_sql=false",
            f"GRANT `{g.role}` ON SCHEMA "
            f'`{str(g.resource).replace(":", ".")}` TO "{str(member).removeprefix("--member=")}"',
        ),
        "table": ("bq", "add-iam-policy-binding", member, role, g.resource),
        "function": (
            "gcloud",
            "functions",
            "add-invoker-policy-binding",
            g.resource,
            f"--region={plan.region}",
            f"--project={p}",
            member,
        ),
    }[g.scope]
    return Step(argv, g.why)


def _subscription_of(plan: Plan, fn: str) -> Lookup:
    """The Pub/Sub subscription behind a function's Eventarc trigger."""
    trigger = Lookup(
        (
            "gcloud",
            "functions",
            "describe",
            fn,
            f"--region={plan.region}",
            f"--project={plan.project}",
            "--format=value(eventTrigger.trigger)",
        )
    )
    return Lookup(
        (
            "gcloud",
            "eventarc",
            "triggers",
            "describe",
            trigger,
            "--format=value(transport.pubsub.subscription)",
        )
    )


def _trigger_subscription(plan: Plan) -> Lookup:
    return Lookup(
        (
            "gcloud",
            "eventarc",
            "triggers",
            "describe",
            RETRAIN_TRIGGER,
            f"--location={plan.region}",
            f"--project={plan.project}",
            "--format=value(transport.pubsub.subscription)",
        )
    )


def deploy_step(plan: Plan, fn: Function, bundle: Path) -> Step:
    p, region = plan.project, plan.region
    env = {**plan.env, **dict(fn.env)}
    argv: list[Arg] = [
        "gcloud",
        "functions",
        "deploy",
        fn.name,
        "--gen2",
        f"--runtime={RUNTIME}",
        f"--project={p}",
        f"--region={region}",
        f"--source={bundle}",
        f"--entry-point={fn.name}",
        f"--memory={fn.memory}",
        f"--cpu={fn.cpu}",
        f"--timeout={fn.timeout}s",
        f"--concurrency={fn.concurrency}",
        f"--max-instances={fn.max_instances}",
        f"--min-instances={fn.min_instances}",
        f"--service-account={plan.email(runtime_account(fn.name))}",
        # gcloud splits a list flag on commas unless told another delimiter
        # (`gcloud topic escaping`); MINIMLOPS_PUBLIC_ROUTES holds commas.
        f"--set-env-vars=^{ENV_DELIMITER}^"
        + ENV_DELIMITER.join(f"{k}={v}" for k, v in env.items()),
    ]
    if fn.secrets:
        argv.append("--set-secrets=" + ",".join(f"{e}={SECRETS[e]}:latest" for e in fn.secrets))
    trigger_sa = f"--trigger-service-account={plan.email('mlops-trigger')}"
    if fn.trigger.kind == "storage":
        argv += [
            f"--trigger-event-filters=type={STORAGE_FINALIZED}",
            f"--trigger-event-filters=bucket={fn.trigger.source}",
            f"--trigger-location={fn.trigger.location}",
            trigger_sa,
            "--retry",
        ]
    elif fn.trigger.kind == "pubsub":
        argv += [
            f"--trigger-topic={fn.trigger.source}",
            f"--trigger-location={fn.trigger.location}",
            trigger_sa,
            "--retry",
        ]
    else:
        argv += [
            "--trigger-http",
            "--allow-unauthenticated" if fn.public else "--no-allow-unauthenticated",
        ]
    return Step(tuple(argv), f"{fn.name}: {fn.trigger.kind} trigger, its own account")


def steps(plan: Plan, bundle: Path) -> list[Step]:
    """Every command of a deployment, in order; each one safe to run again."""
    p, region, s = plan.project, plan.region, plan.settings
    out = [
        Step(
            (
                "gcloud",
                "services",
                "enable",
                *(f"{a}.googleapis.com" for a in APIS),
                f"--project={p}",
            ),
            "the APIs the deployment uses",
        )
    ]
    for ident in plan.identities:
        out.append(
            Step(
                (
                    "gcloud",
                    "iam",
                    "service-accounts",
                    "create",
                    ident.account,
                    f"--project={p}",
                    f"--display-name={ident.display}",
                ),
                "an identity of its own",
                exists_ok=True,
            )
        )
    for env, name in SECRETS.items():
        out.append(
            Step(
                (
                    "gcloud",
                    "secrets",
                    "create",
                    name,
                    f"--project={p}",
                    "--replication-policy=user-managed",
                    f"--locations={region}",
                    "--data-file=-",
                ),
                f"{env}: generated here, piped on stdin, never printed; kept when it "
                "exists (rotate: see the docs)",
                exists_ok=True,
                secret_stdin=True,
            )
        )
    for role, perms in CUSTOM_ROLES.items():
        args = (
            f"--project={p}",
            f"--permissions={','.join(perms)}",
            "--stage=GA",
            "--title=minimlops table appender",
        )
        out.append(
            Step(
                ("gcloud", "iam", "roles", "create", role, *args),
                "append to a table, and nothing else (no delete, no schema change)",
                update=("gcloud", "iam", "roles", "update", role, *args),
            )
        )
    deploy_later = []
    for ident in plan.identities:
        for g in ident.grants:
            step = grant_step(plan, _member(plan, ident.account), g)
            (deploy_later if g.scope == "function" else out).append(step)
    for _who, member, g in plan.agents:
        out.append(grant_step(plan, member, g))
    out += [deploy_step(plan, fn, bundle) for fn in plan.functions]
    out += deploy_later  # invoker bindings need the services
    trainer = plan.function("train_model")
    retrain = (
        "--location=" + region,
        f"--project={p}",
        f"--destination-run-service={trainer.service}",
        f"--destination-run-region={region}",
        f"--service-account={plan.email('mlops-trigger')}",
    )
    out.append(
        Step(
            (
                "gcloud",
                "eventarc",
                "triggers",
                "create",
                RETRAIN_TRIGGER,
                *retrain,
                f"--event-filters=type={PUBSUB_PUBLISHED}",
                f"--transport-topic=projects/{p}/topics/{plan.names.retrain_topic}",
            ),
            "train_model's second trigger: retrain_requested",
            update=("gcloud", "eventarc", "triggers", "update", RETRAIN_TRIGGER, *retrain),
        )
    )
    attempts = s.bus_max_attempts  # 5 to 100: violations() refuses others
    agent = plan.agents[1][1]
    for sub in (
        _subscription_of(plan, "ingest_data"),
        _subscription_of(plan, "train_model"),
        _trigger_subscription(plan),
    ):
        out.append(
            grant_step(
                plan,
                agent,
                Grant(
                    "subscription",
                    sub,
                    "roles/pubsub.subscriber",  # type: ignore[arg-type]
                    "the Pub/Sub agent removes a dead-lettered message from the subscription",
                ),
            )
        )
        out.append(
            Step(
                (
                    "gcloud",
                    "pubsub",
                    "subscriptions",
                    "update",
                    sub,
                    f"--project={p}",
                    f"--dead-letter-topic={s.dead_letter_topic}",
                    f"--max-delivery-attempts={attempts}",
                    f"--min-retry-delay={RETRY_DELAYS[0]}s",
                    f"--max-retry-delay={RETRY_DELAYS[1]}s",
                ),
                "a message that keeps failing goes to the dead-letter topic",
            )
        )
    uri = Lookup(
        (
            "gcloud",
            "functions",
            "describe",
            "monitor_pipeline",
            f"--region={region}",
            f"--project={p}",
            "--format=value(serviceConfig.uri)",
        )
    )
    schedule = (
        f"--project={p}",
        f"--location={region}",
        "--schedule=*/15 * * * *",
        "--http-method=POST",
        f"--oidc-service-account-email={plan.email('mlops-scheduler')}",
    )
    out.append(
        Step(
            (
                "gcloud",
                "scheduler",
                "jobs",
                "create",
                "http",
                SCHEDULER_JOB,
                *schedule,
                _with(uri, "--uri={}"),
                _with(uri, "--oidc-token-audience={}"),
            ),
            "monitor_pipeline every 15 minutes",
            update=(
                "gcloud",
                "scheduler",
                "jobs",
                "update",
                "http",
                SCHEDULER_JOB,
                *schedule,
                _with(uri, "--uri={}"),
                _with(uri, "--oidc-token-audience={}"),
            ),
        )
    )
    return out


def _with(lookup: Lookup, template: str) -> Lookup:
    return Lookup(lookup.argv, template)


def teardown(plan: Plan) -> list[Step]:
    """What `minimlops gcp destroy` removes: everything deploy and provision
    made. Buckets and the dataset only with ``--delete-data``."""
    p, region = plan.project, plan.region
    out = [
        Step(
            (
                "gcloud",
                "scheduler",
                "jobs",
                "delete",
                SCHEDULER_JOB,
                f"--project={p}",
                f"--location={region}",
                "--quiet",
            ),
            "the monitor's schedule",
        ),
        Step(
            (
                "gcloud",
                "eventarc",
                "triggers",
                "delete",
                RETRAIN_TRIGGER,
                f"--project={p}",
                f"--location={region}",
                "--quiet",
            ),
            "train_model's second trigger",
        ),
    ]
    out += [
        Step(
            (
                "gcloud",
                "functions",
                "delete",
                fn.name,
                f"--region={region}",
                f"--project={p}",
                "--quiet",
            ),
            f"{fn.name} and its trigger",
        )
        for fn in plan.functions
    ]
    out += [
        Step(("gcloud", "secrets", "delete", name, f"--project={p}", "--quiet"), env)
        for env, name in SECRETS.items()
    ]
    # project-level bindings first: a deleted account's would stay as 'deleted:...'
    out += [
        Step(
            (
                "gcloud",
                "projects",
                "remove-iam-policy-binding",
                p,
                f"--member=serviceAccount:{plan.email(i.account)}",
                f"--role={g.role}",
                "--condition=None",
                "--quiet",
            ),
            f"{i.account}: {g.role}",
        )
        for i in plan.identities
        for g in i.grants
        if g.scope == "project"
    ]
    out += [
        Step(
            (
                "gcloud",
                "iam",
                "service-accounts",
                "delete",
                plan.email(i.account),
                f"--project={p}",
                "--quiet",
            ),
            i.display,
        )
        for i in plan.identities
    ]
    out += [
        Step(
            ("gcloud", "iam", "roles", "delete", role, f"--project={p}", "--quiet"),
            "the table appender role",
        )
        for role in CUSTOM_ROLES
    ]
    return out
