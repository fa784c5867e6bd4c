"""The permission map: every Google Cloud call an adapter makes in a deployed
function, the IAM permission it needs, and where. A test checks that each
function's grants (:mod:`.plan`) cover its calls, against a stored snapshot of
the predefined roles' permissions, and that no grant goes unused.

Sources: https://cloud.google.com/storage/docs/access-control/iam-json,
https://cloud.google.com/bigquery/docs/access-control,
https://cloud.google.com/pubsub/docs/access-control,
https://cloud.google.com/secret-manager/docs/access-control,
https://cloud.google.com/run/docs/securing/managing-access.
"""

from __future__ import annotations

from dataclasses import dataclass

from minimlops.entrypoints.gcp.plan import ALERT_SECRETS, Plan, alert_secrets_of


@dataclass(frozen=True)
class Call:
    """One client call: what it is, the permission, and the resource it acts on.

    ``scope`` is the resource's kind (project, bucket, table, topic, secret,
    function); ``resource`` its name as the plan's grants name it; ``object``
    the object name within a bucket, when a grant may be limited to it.
    """

    what: str
    permission: str
    scope: str
    resource: str
    object: str | None = None


def calls(plan: Plan) -> dict[str, list[Call]]:
    """Service account id -> the calls it makes."""
    p, ds, n = plan.project, f"{plan.project}:{plan.dataset}", plan.names
    table = {
        k: f"{ds}.{getattr(n, k)}"
        for k in (
            "training_table",
            "predictions_table",
            "feedback_table",
            "ledger_table",
            "triggers_table",
        )
    }
    champion = f"models/{n.model_name}/champion.json"

    def query(*tables: str) -> list[Call]:  # a query job reading these tables
        return [
            Call("query job", "bigquery.jobs.create", "project", p),
            *(
                Call(f"query reads {t}", "bigquery.tables.getData", "table", table[t])
                for t in tables
            ),
        ]

    def append(t: str, how: str) -> list[Call]:
        return [
            Call(f"{how} into {t}", "bigquery.tables.updateData", "table", table[t]),
            Call(f"{how}: the table", "bigquery.tables.get", "table", table[t]),
        ]

    every = tuple(table)
    alerting = Call("raise an alert", "pubsub.topics.publish", "topic", n.alerts_topic)
    ingest = [
        Call("read the landed file", "storage.objects.get", "bucket", n.landing_bucket),
        Call(
            "stage validated rows (create only)",
            "storage.objects.create",
            "bucket",
            n.landing_bucket,
        ),
        Call("drop the staged file", "storage.objects.delete", "bucket", n.landing_bucket),
        Call(
            "move a rejected file (copy, delete)",
            "storage.objects.delete",
            "bucket",
            n.landing_bucket,
        ),
        Call("list staged files", "storage.objects.list", "bucket", n.landing_bucket),
        *query("ledger_table", "predictions_table", "training_table"),
        Call("load job", "bigquery.jobs.create", "project", p),
        *append("training_table", "load job"),
        *append("ledger_table", "insertAll"),
        *append("feedback_table", "DML INSERT of labels"),
        *append("triggers_table", "insertAll"),
        Call("insertAll: the dataset", "bigquery.datasets.get", "dataset", ds),
        Call("publish ingestion_complete", "pubsub.topics.publish", "topic", n.ingestion_topic),
        alerting,
    ]
    train = [
        *query(*every),
        Call("Storage Read API session", "bigquery.readsessions.create", "project", p),
        Call("Storage Read API rows", "bigquery.readsessions.getData", "project", p),
        Call("read versions and the pointer", "storage.objects.get", "bucket", n.model_bucket),
        Call("list versions", "storage.objects.list", "bucket", n.model_bucket),
        Call("write a version (create only)", "storage.objects.create", "bucket", n.model_bucket),
        Call(
            "swap the champion pointer (overwrite)",
            "storage.objects.delete",
            "bucket",
            n.model_bucket,
            champion,
        ),
        Call("publish model_promoted", "pubsub.topics.publish", "topic", n.promoted_topic),
        # a trigger that asked for rows the champion already learnt from
        *append("triggers_table", "insertAll"),
        Call("insertAll: the dataset", "bigquery.datasets.get", "dataset", ds),
        alerting,
    ]
    endpoint = [
        Call("load the champion", "storage.objects.get", "bucket", n.model_bucket),
        Call("list versions", "storage.objects.list", "bucket", n.model_bucket),
        Call(
            "admin: swap the champion pointer",
            "storage.objects.create",
            "bucket",
            n.model_bucket,
            champion,
        ),
        Call(
            "admin: swap the champion pointer (overwrite)",
            "storage.objects.delete",
            "bucket",
            n.model_bucket,
            champion,
        ),
        Call("read a rejected file's report", "storage.objects.get", "bucket", n.landing_bucket),
        *query(*every),
        # the Storage Write API needs updateData (https://cloud.google.com/bigquery/docs/write-api);
        # insertAll, its fallback, also the table and the dataset
        *append("predictions_table", "Storage Write API append"),
        *append("feedback_table", "insertAll"),
        *append("triggers_table", "insertAll"),
        Call("insertAll: the dataset", "bigquery.datasets.get", "dataset", ds),
        Call("admin: request a training", "pubsub.topics.publish", "topic", n.retrain_topic),
        alerting,
        Call(
            "MINIMLOPS_API_KEY at start",
            "secretmanager.versions.access",
            "secret",
            "minimlops-api-key",
        ),
        Call(
            "MINIMLOPS_ADMIN_TOKEN at start",
            "secretmanager.versions.access",
            "secret",
            "minimlops-admin-token",
        ),
    ]
    monitor = [
        *query(*every),
        *append("triggers_table", "insertAll"),
        Call("insertAll: the dataset", "bigquery.datasets.get", "dataset", ds),
        Call("the champion's metadata", "storage.objects.get", "bucket", n.model_bucket),
        Call("list versions", "storage.objects.list", "bucket", n.model_bucket),
        Call("request a training", "pubsub.topics.publish", "topic", n.retrain_topic),
        alerting,
    ]
    trigger = [
        Call("receive Cloud Storage events", "eventarc.events.receiveEvent", "project", p),
        Call("deliver to ingest_data", "run.routes.invoke", "function", "ingest_data"),
        Call("deliver to train_model", "run.routes.invoke", "function", "train_model"),
    ]
    send = [
        Call("split an alert per webhook", "pubsub.topics.publish", "topic", n.alerts_topic),
        *(
            Call(f"{env} at start", "secretmanager.versions.access", "secret", name)
            for env, name in ALERT_SECRETS.items()
            if env in alert_secrets_of(plan.settings)
        ),
    ]
    alerting_on = bool(plan.settings.alert_urls)
    if alerting_on:
        trigger.append(Call("deliver to send_alert", "run.routes.invoke", "function", "send_alert"))
    scheduler = [Call("call the monitor", "run.routes.invoke", "function", "monitor_pipeline")]
    return {
        "mlops-ingest-data": ingest,
        "mlops-train-model": train,
        "mlops-predictions-endpoint": endpoint,
        "mlops-monitor-pipeline": monitor,
        "mlops-trigger": trigger,
        "mlops-scheduler": scheduler,
        **({"mlops-send-alert": send} if alerting_on else {}),
    }


def covers(grant_scope: str, grant_resource: str, call: Call, plan: Plan) -> bool:
    """Whether a grant on this resource reaches the call's resource (IAM
    inherits downwards: project > dataset > table)."""
    if grant_scope == "project":
        return grant_resource == plan.project
    if grant_scope == "dataset":
        return call.scope in ("dataset", "table") and call.resource.split(".")[0] == grant_resource
    return grant_scope == call.scope and grant_resource == call.resource
