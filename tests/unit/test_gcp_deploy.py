"""`minimlops gcp deploy --dry-run`: the printed plan, checked against what
Google documents and the emulators never check (limits, locations,
identities, IAM, secrets). Each test names the page it holds the plan to.
Runs nothing (a `gcloud` on PATH would tell)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from minimlops.config import Settings
from minimlops.entrypoints.gcp import limits, permissions
from minimlops.entrypoints.gcp import plan as plans
from minimlops.entrypoints.gcp.bundle import lock_pins

ROLES = json.loads(
    (Path(__file__).parent.parent / "data" / "gcp_predefined_roles.json").read_text()
)["roles"]
ROLES.update(
    {
        f"projects/acme-ml/roles/{name}": {"permissions": list(perms)}
        for name, perms in plans.CUSTOM_ROLES.items()
    }
)
REPO = Path(__file__).resolve().parents[2]
EVENT_FUNCTIONS = ("ingest_data", "train_model")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIMLOPS_")}
    env.update(GOOGLE_CLOUD_PROJECT="acme-ml", **extra)
    return env


def _fake_tools(tmp_path: Path, script: str = "") -> Path:
    """gcloud and bq that record their arguments (and run `script`)."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    for tool in ("gcloud", "bq"):
        path = fake_bin / tool
        path.write_text(f'#!/bin/sh\necho "{tool} $*" >> {tmp_path}/ran\n{script}\n')
        path.chmod(0o755)
    return fake_bin


def _dry_run(
    tmp_path: Path, *flags: str, env: dict[str, str] | None = None, ok: bool = True
) -> tuple[list[list[str]], list[str], str]:
    fake_bin = _fake_tools(tmp_path)
    env = env or _env()
    env["PATH"] = f"{fake_bin}:{os.environ['PATH']}"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "minimlops",
            "gcp",
            "deploy",
            "--dry-run",
            "--bundle",
            str(tmp_path / "bundle"),
            *flags,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
    assert not (tmp_path / "ran").exists(), "a dry run must not run gcloud"
    lines = proc.stdout.splitlines()
    files = [ln.removeprefix("#   ") for ln in lines if ln.startswith("#   ")]
    cmds = [shlex.split(ln) for ln in lines if ln and not ln.startswith("#")]
    return cmds, files, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[list[str]], list[str], Path]:
    tmp = tmp_path_factory.mktemp("plan")
    cmds, files, _ = _dry_run(tmp, "--allow-unauthenticated")
    return cmds, files, tmp / "bundle"


def _deploys(cmds: list[list[str]]) -> dict[str, list[str]]:
    return {c[3]: c for c in cmds if c[:3] == ["gcloud", "functions", "deploy"]}


def _flag(cmd: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in cmd if a.startswith(f"--{name}="))


def _env_of(cmd: list[str]) -> dict[str, str]:
    """--set-env-vars, read as gcloud reads it (`gcloud topic escaping`)."""
    value = _flag(cmd, "set-env-vars")
    sep = ","
    if value.startswith("^"):
        sep, value = value[1:].split("^", 1)
    return dict(kv.split("=", 1) for kv in value.split(sep))


def _flags(cmd: list[str], name: str) -> list[str]:
    return [a.split("=", 1)[1] for a in cmd if a.startswith(f"--{name}=")]


def test_event_driven_functions_stay_within_540_seconds(printed) -> None:
    """https://cloud.google.com/functions/docs/configuring/timeout: 'The maximum
    timeout duration is 60 minutes (3600 seconds) for HTTP functions and 9
    minutes (540 seconds) for event-driven functions.'"""
    deploys = _deploys(printed[0])
    for name, cmd in deploys.items():
        seconds = int(_flag(cmd, "timeout").removesuffix("s"))
        cap = 3600 if "--trigger-http" in cmd else 540
        assert 0 < seconds <= cap, f"{name}: {seconds}s"
    assert {n for n, c in deploys.items() if "--trigger-http" not in c} == set(EVENT_FUNCTIONS)


def test_a_training_budget_that_cannot_finish_in_540_seconds_is_refused(tmp_path: Path) -> None:
    """train_model is event-driven (540 s, same page): the plan refuses a
    selection budget that leaves no time to read, fit and store the model."""
    _, _, out = _dry_run(tmp_path, env=_env(MINIMLOPS_TRAINING_BUDGET="400"), ok=False)
    assert "MINIMLOPS_TRAINING_BUDGET=400" in out and "540" in out and "at most 300" in out


def test_buckets_dataset_and_functions_share_one_region_by_default(printed) -> None:
    """The exercise keeps everything in europe-west3; BigQuery load jobs must
    run where the dataset is (https://cloud.google.com/bigquery/docs/locations)."""
    cmds = printed[0]
    for cmd in _deploys(cmds).values():
        assert "--region=europe-west3" in cmd
        assert _env_of(cmd)["MINIMLOPS_LOCATION"] == "europe-west3"
    settings = Settings.from_env({"GOOGLE_CLOUD_PROJECT": "acme-ml"}, backend="gcp")
    assert settings.gcp_location == settings.region == "europe-west3"


@pytest.mark.parametrize(("location", "trigger"), [(None, "europe-west3"), ("EU", "eu")])
def test_the_storage_trigger_sits_in_the_buckets_location(
    tmp_path: Path, location: str | None, trigger: str
) -> None:
    """https://cloud.google.com/eventarc/docs/understand-locations: 'since the
    Cloud Storage bucket is in the europe-west1 region, the trigger must also
    be located in europe-west1' (a multi-region bucket: its multi-region)."""
    env = _env(**({"MINIMLOPS_LOCATION": location} if location else {}))
    ingest = _deploys(_dry_run(tmp_path, env=env)[0])["ingest_data"]
    assert _flag(ingest, "trigger-location") == trigger
    assert "bucket=acme-ml-data-landing-zone" in _flags(ingest, "trigger-event-filters")


def test_every_trigger_has_a_named_identity_that_may_invoke_its_function(printed) -> None:
    """https://cloud.google.com/run/docs/triggering/trigger-with-events: 'the
    service account for the Eventarc trigger must have the Cloud Run Invoker
    role'; Cloud Storage (not Pub/Sub) triggers also need
    roles/eventarc.eventReceiver
    (https://cloud.google.com/eventarc/standard/docs/functions/roles-permissions)."""
    cmds = printed[0]
    deploys = _deploys(cmds)
    trigger_sa = "mlops-trigger@acme-ml.iam.gserviceaccount.com"
    for name in EVENT_FUNCTIONS:
        assert _flag(deploys[name], "trigger-service-account") == trigger_sa
        assert ["gcloud", "functions", "add-invoker-policy-binding", name] == next(
            c
            for c in cmds
            if c[:3] == ["gcloud", "functions", "add-invoker-policy-binding"]
            and c[3] == name
            and f"--member=serviceAccount:{trigger_sa}" in c
        )[:4]
    retrain = next(c for c in cmds if c[:4] == ["gcloud", "eventarc", "triggers", "create"])
    assert _flag(retrain, "service-account") == trigger_sa
    assert _flag(retrain, "transport-topic") == "projects/acme-ml/topics/retrain_requested"
    receivers = [c for c in cmds if "--role=roles/eventarc.eventReceiver" in c]
    assert [_flag(c, "member") for c in receivers] == [f"serviceAccount:{trigger_sa}"]
    scheduler = next(c for c in cmds if c[:5] == ["gcloud", "scheduler", "jobs", "create", "http"])
    invoker = next(
        c
        for c in cmds
        if c[:4] == ["gcloud", "functions", "add-invoker-policy-binding", "monitor_pipeline"]
    )
    assert _flag(invoker, "member").endswith(_flag(scheduler, "oidc-service-account-email"))
    assert _flag(scheduler, "oidc-token-audience") == _flag(scheduler, "uri")  # the function's URL


def test_service_agents_get_what_triggers_and_dead_letters_need(printed) -> None:
    """https://cloud.google.com/functions/docs/calling/storage: 'the Cloud
    Storage service agent must have the Pub/Sub Publisher role on your project';
    https://cloud.google.com/pubsub/docs/handling-failures: to forward dead
    letters the Pub/Sub service agent needs publisher on the dead-letter topic
    and subscriber on the source subscription."""
    cmds = printed[0]
    storage_agent = next(
        c for c in cmds if "service-agent" in " ".join(c) and "--role=roles/pubsub.publisher" in c
    )
    assert storage_agent[:4] == ["gcloud", "projects", "add-iam-policy-binding", "acme-ml"]
    pubsub_agent = [c for c in cmds if "gcp-sa-pubsub" in " ".join(c)]
    dl_topic = [c for c in pubsub_agent if c[:3] == ["gcloud", "pubsub", "topics"]]
    assert [c[4] for c in dl_topic] == ["minimlops-dead-letter"]
    assert all("--role=roles/pubsub.publisher" in c for c in dl_topic)
    subscribers = [
        c[4]
        for c in pubsub_agent
        if c[:4] == ["gcloud", "pubsub", "subscriptions", "add-iam-policy-binding"]
    ]
    updates = [c[4] for c in cmds if c[:4] == ["gcloud", "pubsub", "subscriptions", "update"]]
    assert len(updates) == 3 and sorted(subscribers) == sorted(updates)


def test_every_subscription_behind_a_trigger_dead_letters(printed) -> None:
    """https://cloud.google.com/eventarc/docs/retry-events: without a dead-letter
    topic an event is retried for 24 h, then dropped. max_delivery_attempts
    must be 5 to 100, backoff 0 to 600 s
    (https://cloud.google.com/pubsub/docs/handling-failures)."""
    cmds = printed[0]
    updates = [c for c in cmds if c[:4] == ["gcloud", "pubsub", "subscriptions", "update"]]
    described = " ".join(u[4] for u in updates)
    for name in EVENT_FUNCTIONS:
        assert f"functions describe {name}" in described
    assert f"triggers describe {plans.RETRAIN_TRIGGER}" in described
    for cmd in updates:
        assert _flag(cmd, "dead-letter-topic") == "minimlops-dead-letter"
        assert 5 <= int(_flag(cmd, "max-delivery-attempts")) <= 100
        for delay in ("min-retry-delay", "max-retry-delay"):
            assert 0 <= int(_flag(cmd, delay).removesuffix("s")) <= 600


def _unmet(plan: plans.Plan) -> tuple[list[str], list[str]]:
    """Calls no grant allows, and grants no call needs."""
    grants = {i.account: i.grants for i in plan.identities}
    missing, used = [], set()
    for account, calls in permissions.calls(plan).items():
        for call in calls:
            by = [
                g
                for g in grants[account]
                if call.permission in ROLES[g.role]["permissions"]
                and permissions.covers(g.scope, g.resource, call, plan)
                and (
                    g.condition is None
                    or (call.object and f'/objects/{call.object}"' in g.condition)
                )
            ]
            used.update((account, g) for g in by)
            if not by:
                missing.append(f"{account}: {call.what} needs {call.permission} on {call.resource}")
    unused = [
        f"{a}: {g.role} on {g.resource}"
        for a, gs in grants.items()
        for g in gs
        if (a, g) not in used
    ]
    return missing, unused


def test_every_call_is_granted_by_a_role_that_holds_its_permission(printed) -> None:
    """The permission map (entrypoints/gcp/permissions.py) against a snapshot
    of the predefined roles (tests/data/gcp_predefined_roles.json, from
    https://cloud.google.com/iam/docs/roles-permissions)."""
    plan = plans.build(Settings.from_env({"GOOGLE_CLOUD_PROJECT": "acme-ml"}, backend="gcp"))
    grants = {i.account: i.grants for i in plan.identities}
    missing, unused = _unmet(plan)
    assert not missing, "\n".join(missing)
    assert not unused, "grants no call needs:\n" + "\n".join(unused)
    # and the plan printed is the plan checked
    bindings = [
        c
        for c in printed[0]
        if (any(a.startswith("--role=") for a in c) or "add-invoker-policy-binding" in c)
        and any(a.startswith("--member=serviceAccount:mlops-") for a in c)
    ]
    bindings += [c for c in printed[0] if c[:2] == ["bq", "query"] and c[-1].startswith("GRANT ")]
    assert len(bindings) == sum(len(gs) for gs in grants.values())


def test_no_function_can_change_data_it_does_not_write(printed) -> None:
    """Least privilege: the endpoint appends predictions and feedback but can
    neither delete nor change training_data; nobody can delete a table or
    administer the project."""
    plan = plans.build(Settings.from_env({"GOOGLE_CLOUD_PROJECT": "acme-ml"}, backend="gcp"))
    training = permissions.Call("", "", "table", "acme-ml:titanic.training_data")
    predictions = permissions.Call("", "", "table", "acme-ml:titanic.predictions_data")
    for ident in plan.identities:
        on_training = {
            p
            for g in ident.grants
            if permissions.covers(g.scope, g.resource, training, plan)
            for p in ROLES[g.role]["permissions"]
        }
        assert not {"bigquery.tables.delete", "bigquery.tables.update"} & on_training
        if ident.account != "mlops-ingest-data":
            assert "bigquery.tables.updateData" not in on_training, ident.account
        for g in ident.grants:
            assert g.role not in {
                "roles/owner",
                "roles/editor",
                "roles/bigquery.admin",
                "roles/bigquery.dataOwner",
                "roles/storage.admin",
                "roles/storage.objectAdmin",
                "roles/pubsub.admin",
            }
    endpoint = next(i for i in plan.identities if i.account == "mlops-predictions-endpoint")
    assert any(
        "bigquery.tables.updateData" in ROLES[g.role]["permissions"]
        and permissions.covers(g.scope, g.resource, predictions, plan)
        for g in endpoint.grants
    )


def test_secrets_come_from_secret_manager_and_are_never_printed(tmp_path: Path) -> None:
    """https://cloud.google.com/functions/docs/env-var#managing_secrets: env vars
    are 'not recommended as a way to store secrets'; --set-secrets reads them
    from Secret Manager (https://cloud.google.com/functions/docs/configuring/secrets)."""
    env = _env(MINIMLOPS_API_KEY="key-that-must-not-show", MINIMLOPS_ADMIN_TOKEN="token-not-shown")
    cmds, _, out = _dry_run(tmp_path, env=env)
    assert "key-that-must-not-show" not in out and "token-not-shown" not in out
    endpoint = _deploys(cmds)["predictions_endpoint"]
    assert set(_flag(endpoint, "set-secrets").split(",")) == {
        "MINIMLOPS_API_KEY=minimlops-api-key:latest",
        "MINIMLOPS_ADMIN_TOKEN=minimlops-admin-token:latest",
    }
    for cmd in _deploys(cmds).values():
        assert not set(_env_of(cmd)) & {"MINIMLOPS_API_KEY", "MINIMLOPS_ADMIN_TOKEN"}
    creates = [c for c in cmds if c[:3] == ["gcloud", "secrets", "create"]]
    assert {c[3] for c in creates} == {"minimlops-api-key", "minimlops-admin-token"}
    assert all("--data-file=-" in c for c in creates)  # the value goes on stdin


def test_alerts_are_sent_by_a_function_of_their_own_with_secrets_from_secret_manager(
    tmp_path: Path,
) -> None:
    """send_alert, deployed when there are webhooks: its Pub/Sub trigger on the
    alerts topic, the webhooks (a Slack URL holds a token) and the signing key
    from Secret Manager (https://cloud.google.com/functions/docs/configuring/secrets),
    created from the deployer's settings on stdin and never printed; every
    function that raises alerts may publish to the topic, and nothing more;
    its subscription dead-letters within Pub/Sub's 5 to 100 attempts
    (https://cloud.google.com/pubsub/docs/handling-failures)."""
    hooks = "https://hooks.slack.com/services/T0/B0/tok-not-shown,https://example.test/hook"
    env = _env(MINIMLOPS_ALERT_WEBHOOKS=hooks, MINIMLOPS_ALERT_SECRET="sign-key-not-shown")
    cmds, _, out = _dry_run(tmp_path, env=env)
    assert "tok-not-shown" not in out and "sign-key-not-shown" not in out
    deploys = _deploys(cmds)
    send = deploys["send_alert"]
    assert _flag(send, "trigger-topic") == "alerts"
    assert _flag(send, "trigger-service-account") == "mlops-trigger@acme-ml.iam.gserviceaccount.com"
    assert set(_flag(send, "set-secrets").split(",")) == {
        "MINIMLOPS_ALERT_WEBHOOKS=minimlops-alert-webhooks:latest",
        "MINIMLOPS_ALERT_SECRET=minimlops-alert-secret:latest",
    }
    for cmd in deploys.values():
        assert not set(_env_of(cmd)) & {"MINIMLOPS_ALERT_WEBHOOKS", "MINIMLOPS_ALERT_SECRET"}
    creates = {c[3]: c for c in cmds if c[:3] == ["gcloud", "secrets", "create"]}
    assert {"minimlops-alert-webhooks", "minimlops-alert-secret"} <= set(creates)
    assert all("--data-file=-" in c for c in creates.values())
    steps = plans.steps(plans.build(Settings.from_env(env, backend="gcp")), tmp_path / "bundle")
    piped = {s.argv[3]: s for s in steps if s.argv[:3] == ("gcloud", "secrets", "create")}
    assert piped["minimlops-alert-webhooks"].stdin == hooks  # and a new version when it exists
    assert piped["minimlops-alert-secret"].update[:4] == ("gcloud", "secrets", "versions", "add")
    updates = [c for c in cmds if c[:4] == ["gcloud", "pubsub", "subscriptions", "update"]]
    (alerts_sub,) = [c for c in updates if "functions describe send_alert" in c[4]]
    assert 5 <= int(_flag(alerts_sub, "max-delivery-attempts")) <= 100
    # its second trigger: each dead letter becomes a message.dead_lettered alert;
    # that subscription has no dead-letter policy (it would loop): Eventarc keeps
    # and retries its messages for 24 hours
    # (https://cloud.google.com/eventarc/docs/retry-events); a function has one
    # trigger, so a second topic takes an Eventarc trigger of its own
    # (https://cloud.google.com/eventarc/docs/run/route-trigger-cloud-pubsub)
    (dead,) = [
        c
        for c in cmds
        if c[:5] == ["gcloud", "eventarc", "triggers", "create", plans.DEAD_LETTER_TRIGGER]
    ]
    assert _flag(dead, "destination-run-service") == "send-alert"
    assert _flag(dead, "transport-topic") == "projects/acme-ml/topics/minimlops-dead-letter"
    assert _flag(dead, "service-account") == "mlops-trigger@acme-ml.iam.gserviceaccount.com"
    assert not [c for c in updates if plans.DEAD_LETTER_TRIGGER in " ".join(c)]
    plan = plans.build(Settings.from_env(env, backend="gcp"))
    missing, unused = _unmet(plan)
    assert not missing and not unused, (missing, unused)
    raisers = {
        i.account
        for i in plan.identities
        if any(g.resource == "alerts" and g.role == "roles/pubsub.publisher" for g in i.grants)
    }
    assert raisers == {
        "mlops-ingest-data",
        "mlops-train-model",
        "mlops-predictions-endpoint",
        "mlops-monitor-pipeline",
        "mlops-send-alert",
    }


def test_a_slack_webhook_alone_deploys_without_a_signing_key_and_destroy_finds_it(
    tmp_path: Path,
) -> None:
    """Secret Manager refuses an empty secret (a version's payload is required,
    https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets/addVersion):
    with Slack alone there is no key to store or mount. destroy removes
    send_alert and the alert secrets whatever the settings say now, since an
    earlier deploy may have made them."""
    env = _env(MINIMLOPS_ALERT_WEBHOOKS="https://hooks.slack.com/services/T0/B0/x")
    plan = plans.build(Settings.from_env(env, backend="gcp"))
    assert plan.function("send_alert").secrets == ("MINIMLOPS_ALERT_WEBHOOKS",)
    created = [
        st.argv[3]
        for st in plans.steps(plan, tmp_path / "bundle")
        if st.argv[:3] == ("gcloud", "secrets", "create")
    ]
    assert "minimlops-alert-webhooks" in created and "minimlops-alert-secret" not in created
    assert _unmet(plan) == ([], [])
    quiet = plans.build(Settings.from_env(_env(), backend="gcp"))
    gone = [st.argv for st in plans.teardown(quiet)]
    assert ("gcloud", "functions", "delete", "send_alert") in {a[:4] for a in gone}
    assert ("eventarc", "triggers", "delete", plans.DEAD_LETTER_TRIGGER) in {a[1:5] for a in gone}
    guide = (Path(__file__).resolve().parents[2] / "docs" / "alerts.md").read_text()
    assert f"triggers delete {plans.DEAD_LETTER_TRIGGER}" in guide  # how to stop alerts by hand
    assert not any(
        plans.DEAD_LETTER_TRIGGER in st.argv for st in plans.steps(quiet, tmp_path / "b")
    )
    assert {"minimlops-alert-webhooks", "minimlops-alert-secret"} <= {
        a[3] for a in gone if a[:3] == ("gcloud", "secrets", "delete")
    }


def test_only_predictions_are_public_and_instances_are_bounded(printed) -> None:
    """--allow-unauthenticated opens the endpoint to allUsers; the app then
    asks the API key or admin token of every route but POST /predict and
    /healthz. Instances: --max-instances on every function (cost),
    concurrency > 1 only with a whole vCPU
    (https://cloud.google.com/run/docs/about-concurrency), memory over 4 GiB
    only with 2 vCPU (https://cloud.google.com/functions/docs/configuring/memory)."""
    deploys = _deploys(printed[0])
    endpoint = deploys["predictions_endpoint"]
    assert "--allow-unauthenticated" in endpoint
    assert _env_of(endpoint)["MINIMLOPS_PUBLIC_ROUTES"] == "POST /predict,GET /healthz"
    pages = "POST /predict,GET /healthz,GET /,GET /static/*,GET /project"
    wider = plans.build(
        Settings.from_env(
            {"GOOGLE_CLOUD_PROJECT": "acme-ml", "MINIMLOPS_PUBLIC_ROUTES": pages}, backend="gcp"
        )
    )
    assert dict(wider.function("predictions_endpoint").env)["MINIMLOPS_PUBLIC_ROUTES"] == pages
    assert "--no-allow-unauthenticated" in deploys["monitor_pipeline"]
    assert _flag(endpoint, "min-instances") == "0" and _flag(endpoint, "max-instances") == "10"
    assert _flag(deploys["train_model"], "max-instances") == "1"
    for cmd in deploys.values():
        memory, cpu = limits.mib(_flag(cmd, "memory")), int(_flag(cmd, "cpu"))
        assert cpu >= limits.min_cpu(memory) and memory <= 32 * 1024
        if int(_flag(cmd, "concurrency")) > 1:
            assert cpu >= 1
        assert int(_flag(cmd, "max-instances")) >= 1


def test_the_bundle_pins_the_lock_and_holds_only_what_functions_run(printed) -> None:
    """https://cloud.google.com/functions/docs/writing/specifying-dependencies-python:
    pip installs the latest versions a requirement allows; every line is
    therefore `==` the lock's version."""
    _, files, bundle = printed
    assert files[:2] == ["main.py", "requirements.txt"]
    reqs = (bundle / "requirements.txt").read_text().split()
    locked = lock_pins(REPO / "requirements.lock")
    assert reqs and all("==" in r for r in reqs)
    assert {r.split("==")[0]: r.split("==")[1] for r in reqs}.items() <= locked.items()
    names = {r.split("==")[0] for r in reqs}
    assert {
        "scikit-learn",
        "skops",
        "onnxruntime",
        "google-cloud-bigquery",
        "functions-framework",
    } <= names
    assert not names & {"pytest", "pandas", "playwright", "ruff"}
    assert not [f for f in files if "minimlops_bench" in f or "bench" in Path(f).name]
    for needed in (
        "minimlops/entrypoints/gcp/functions.py",
        "minimlops/schemas/training_data.json",
        "minimlops/web/index.html",
    ):
        assert (
            needed in files and (bundle / needed).is_file() and not (bundle / needed).is_symlink()
        )
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import main, minimlops; "
        "assert minimlops.__file__.startswith(sys.argv[1]), minimlops.__file__; "
        "print(sorted(n for n in ('ingest_data', 'train_model', 'predictions_endpoint', "
        "'monitor_pipeline') if callable(getattr(main, n))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(bundle)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=bundle.parent,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(
        sorted(["ingest_data", "train_model", "predictions_endpoint", "monitor_pipeline"])
    )


def test_another_project_is_deployed_with_access_to_its_own_dataset(tmp_path: Path) -> None:
    """The dataset the functions are told is the dataset they are granted."""
    cmds, _, out = _dry_run(tmp_path, "--project", "wine")
    assert "project wine: multiclass cultivar" in out
    env = _env_of(_deploys(cmds)["train_model"])
    assert env["MINIMLOPS_DATASET"] == "wine" and env["MINIMLOPS_MODEL_NAME"] == "wine"
    tables = {c[-1].split(".")[0] for c in cmds if c[:2] == ["bq", "add-iam-policy-binding"]}
    schemas = {c[-1].split(" ON SCHEMA ")[1].split()[0] for c in cmds if c[:2] == ["bq", "query"]}
    assert tables == {"acme-ml:wine"} and schemas == {"`acme-ml.wine`"}


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {"MINIMLOPS_LANDING_BUCKET": "google-landing"},
            "may not start with 'goog' or contain 'google'",
        ),
        ({"MINIMLOPS_MODEL_BUCKET": "Models"}, "3 to 63 characters"),
        ({"MINIMLOPS_BUS_MAX_ATTEMPTS": "200"}, "5 to 100 attempts"),
        (
            {"MINIMLOPS_PUBLIC_ROUTES": "GET/healthz"},
            "MINIMLOPS_PUBLIC_ROUTES: 'GET/healthz' is not",
        ),
        (
            {"MINIMLOPS_MIN_INSTANCES": "20"},
            "MINIMLOPS_MIN_INSTANCES=20 is over MINIMLOPS_MAX_INSTANCES=10",
        ),
    ],
)
def test_a_plan_google_would_refuse_is_refused_before_anything_runs(
    tmp_path: Path, env: dict[str, str], says: str
) -> None:
    """https://cloud.google.com/storage/docs/buckets#naming,
    https://cloud.google.com/pubsub/docs/handling-failures."""
    _, _, out = _dry_run(tmp_path, env=_env(**env), ok=False)
    assert "Google Cloud would refuse this deployment" in out and says in out


def test_the_default_bucket_names_are_the_projects_own() -> None:
    """Bucket names are global (https://cloud.google.com/storage/docs/buckets#naming):
    the exercise's names are taken; the project id makes them unique."""
    s = Settings.from_env({"GOOGLE_CLOUD_PROJECT": "acme-ml"}, backend="gcp")
    assert (s.landing_bucket, s.model_bucket) == (
        "acme-ml-data-landing-zone",
        "acme-ml-model-storage",
    )
    local = Settings.from_env({})
    assert local.landing_bucket == "my-data-landing-zone"
    chosen = Settings.from_env(
        {"GOOGLE_CLOUD_PROJECT": "p", "MINIMLOPS_LANDING_BUCKET": "mine"}, backend="gcp"
    )
    assert chosen.landing_bucket == "mine"


def test_running_deploy_again_updates_what_exists(tmp_path: Path) -> None:
    """A second deploy applies changed settings: `gcloud functions deploy`
    creates or updates; a trigger or schedule that exists is updated; an
    account or secret that exists is kept; values only known then are looked up."""
    script = (
        'case "$*" in\n'
        '  *"triggers create"*|*"jobs create"*|*"service-accounts create"*|*"secrets create"*)'
        ' echo "ERROR: (gcloud) resource already exists" >&2; exit 1;;\n'
        '  *"describe"*|*"service-agent"*) echo "looked-up-value";;\n'
        "esac\nexit 0"
    )
    fake_bin = _fake_tools(tmp_path, script)
    env = _env(PATH=f"{fake_bin}:{os.environ['PATH']}")
    proc = subprocess.run(
        [sys.executable, "-m", "minimlops", "gcp", "deploy", "--bundle", str(tmp_path / "bundle")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = (tmp_path / "ran").read_text().splitlines()
    assert any(
        r.startswith(f"gcloud eventarc triggers update {plans.RETRAIN_TRIGGER}") for r in ran
    )
    assert any(r.startswith("gcloud scheduler jobs update http minimlops-monitor") for r in ran)
    assert sum(r.startswith("gcloud functions deploy") for r in ran) == 4
    assert any("subscriptions update looked-up-value" in r for r in ran)
    assert (
        "--member=serviceAccount:service-looked-up-value@gcp-sa-pubsub.iam.gserviceaccount.com"
        in "\n".join(ran)
    )


def test_destroy_removes_what_deploy_made(tmp_path: Path) -> None:
    fake_bin = _fake_tools(tmp_path)
    env = _env(PATH=f"{fake_bin}:{os.environ['PATH']}")
    proc = subprocess.run(
        [sys.executable, "-m", "minimlops", "gcp", "destroy", "--dry-run", "--delete-data"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    cmds = [shlex.split(ln) for ln in proc.stdout.splitlines() if ln and not ln.startswith("#")]
    deleted = {
        (c[1], c[2] if c[1] != "functions" else c[3]) for c in cmds if "delete" in c or "rm" in c
    }
    for fn in ("ingest_data", "train_model", "predictions_endpoint", "monitor_pipeline"):
        assert ("functions", fn) in deleted
    assert {
        ("scheduler", "jobs"),
        ("eventarc", "triggers"),
        ("secrets", "delete"),
        ("iam", "service-accounts"),
        ("pubsub", "topics"),
        ("storage", "rm"),
    } <= deleted
    assert any(c[:2] == ["bq", "rm"] and c[-1] == "acme-ml:titanic" for c in cmds)
    assert any(c[:4] == ["gcloud", "iam", "roles", "delete"] for c in cmds)
    unbound = {
        _flag(c, "role")
        for c in cmds
        if c[:3] == ["gcloud", "projects", "remove-iam-policy-binding"]
    }
    assert {"roles/bigquery.jobUser", "roles/eventarc.eventReceiver"} <= unbound
    assert not (tmp_path / "ran").exists()


def test_deploy_needs_a_project(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MINIMLOPS_") and k != "GOOGLE_CLOUD_PROJECT"
    }
    proc = subprocess.run(
        [sys.executable, "-m", "minimlops", "gcp", "deploy", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "GOOGLE_CLOUD_PROJECT" in proc.stderr


def test_the_local_backend_never_imports_google_cloud(tmp_path: Path) -> None:
    probe = (
        "import sys; from minimlops.config import Settings; from minimlops.bootstrap import build; "
        "app = build(Settings.from_env({}, home=sys.argv[1])); app.close(); "
        "import minimlops.entrypoints.cli.main, minimlops.entrypoints.http.app, "
        "minimlops.entrypoints.runtime.serve; "
        "print(sorted(m for m in ('google.cloud.storage', 'google.cloud.bigquery', "
        "'google.cloud.pubsub_v1', 'functions_framework') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "home")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_up_refuses_the_gcp_backend_with_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIMLOPS_")}
    env.update(
        MINIMLOPS_BACKEND="gcp", GOOGLE_CLOUD_PROJECT="acme-ml", MINIMLOPS_HOME=str(tmp_path)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "minimlops", "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "minimlops gcp deploy" in proc.stderr
