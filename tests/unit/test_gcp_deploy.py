"""`minimlops gcp deploy --dry-run`: the commands and the bundle, checked as a
reviewer of a deployment would. Runs nothing (a `gcloud` on PATH would tell)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path


def _dry_run(tmp_path: Path, *flags: str) -> tuple[list[list[str]], list[str], Path]:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for tool in ("gcloud", "bq"):
        script = fake_bin / tool
        script.write_text(f"#!/bin/sh\necho called >> {tmp_path}/ran\n")
        script.chmod(0o755)
    bundle = tmp_path / "bundle"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIMLOPS_")}
    env.update(PATH=f"{fake_bin}:{env['PATH']}", GOOGLE_CLOUD_PROJECT="acme-ml")
    proc = subprocess.run([sys.executable, "-m", "minimlops", "gcp", "deploy", "--dry-run",
                           "--region", "europe-west1", "--bundle", str(bundle), *flags],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "ran").exists(), "a dry run must not run gcloud"
    lines = proc.stdout.splitlines()
    files = [ln.removeprefix("#   ") for ln in lines if ln.startswith("#   ")]
    cmds = [shlex.split(ln) for ln in lines if ln and not ln.startswith("#")]
    return cmds, files, bundle


def _deploys(cmds: list[list[str]]) -> dict[str, list[str]]:
    return {c[3]: c for c in cmds if c[:3] == ["gcloud", "functions", "deploy"]}


def test_each_function_is_deployed_with_its_trigger_runtime_and_own_account(tmp_path: Path) -> None:
    cmds, _, bundle = _dry_run(tmp_path)
    deploys = _deploys(cmds)
    assert set(deploys) == {"ingest_data", "train_model", "predictions_endpoint", "monitor_pipeline"}
    for name, cmd in deploys.items():
        assert "--gen2" in cmd and "--runtime=python311" in cmd
        assert f"--entry-point={name}" in cmd and f"--source={bundle}" in cmd
        assert "--region=europe-west1" in cmd and "--project=acme-ml" in cmd
        env = next(a for a in cmd if a.startswith("--set-env-vars="))
        assert "MINIMLOPS_BACKEND=gcp" in env and "GOOGLE_CLOUD_PROJECT=acme-ml" in env
    accounts = {n: next(a for a in c if a.startswith("--service-account=")) for n, c in deploys.items()}
    assert len(set(accounts.values())) == 4, "one service account per function"
    ingest = deploys["ingest_data"]
    assert "--trigger-event-filters=type=google.cloud.storage.object.v1.finalized" in ingest
    assert "--trigger-event-filters=bucket=my-data-landing-zone" in ingest and "--retry" in ingest
    train = deploys["train_model"]
    assert "--trigger-topic=ingestion_complete" in train and "--retry" in train
    assert "--memory=4Gi" in train and "--timeout=1800s" in train
    assert "--max-instances=1" in train and "--concurrency=1" in train
    serve = deploys["predictions_endpoint"]
    assert "--trigger-http" in serve and "--no-allow-unauthenticated" in serve
    assert "--allow-unauthenticated" not in serve
    retrain = next(c for c in cmds if c[:4] == ["gcloud", "eventarc", "triggers", "create"])
    assert "--transport-topic=retrain_requested" in retrain
    assert "--destination-run-service=train-model" in retrain
    scheduler = next(c for c in cmds if c[:3] == ["gcloud", "scheduler", "jobs"])
    assert any(a.endswith("/monitor_pipeline") for a in scheduler)
    assert any(a.startswith("--oidc-service-account-email=") for a in scheduler)
    dead_letter = [c for c in cmds if c[0] == "sh" and "--dead-letter-topic=minimlops-dead-letter" in c[2]]
    assert len(dead_letter) == 2


def test_public_predictions_only_with_the_flag(tmp_path: Path) -> None:
    cmds, _, _ = _dry_run(tmp_path, "--allow-unauthenticated")
    deploys = _deploys(cmds)
    assert "--allow-unauthenticated" in deploys["predictions_endpoint"]
    assert "--no-allow-unauthenticated" in deploys["monitor_pipeline"]


def test_service_accounts_get_only_their_roles(tmp_path: Path) -> None:
    cmds, _, _ = _dry_run(tmp_path)
    grants: dict[str, set[str]] = {}
    for c in cmds:
        member = next((a for a in c if a.startswith("--member=serviceAccount:")), None)
        role = next((a for a in c if a.startswith("--role=")), None)
        if member and role and "add-iam-policy-binding" in c:
            grants.setdefault(member.split(":")[1].split("@")[0], set()).add(role.split("=")[1])
    assert "roles/storage.objectViewer" in grants["mlops-predictions-endpoint"]
    assert "roles/storage.objectAdmin" not in grants["mlops-predictions-endpoint"]
    assert "roles/storage.objectAdmin" in grants["mlops-train-model"]
    for roles in grants.values():
        assert not roles & {"roles/owner", "roles/editor", "roles/bigquery.admin",
                            "roles/storage.admin", "roles/pubsub.admin"}  # fmt: skip


def test_the_bundle_holds_main_requirements_and_the_package(tmp_path: Path) -> None:
    _, files, bundle = _dry_run(tmp_path)
    assert files[:2] == ["main.py", "requirements.txt"]
    for needed in ("minimlops/entrypoints/functions.py", "minimlops/schemas/training_data.json",
                   "minimlops/web/index.html"):  # fmt: skip
        assert needed in files
        assert (bundle / needed).is_file() and not (bundle / needed).is_symlink()
    reqs = (bundle / "requirements.txt").read_text()
    assert "google-cloud-bigquery" in reqs and "functions-framework" in reqs
    assert "pytest" not in reqs and "pandas" not in reqs
    # the entry points import from the bundle alone, and building builds nothing else
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import main, minimlops; "
             "assert minimlops.__file__.startswith(sys.argv[1]), minimlops.__file__; "
             "print(sorted(n for n in ('ingest_data', 'train_model', 'predictions_endpoint', "
             "'monitor_pipeline') if callable(getattr(main, n))))")
    out = subprocess.run([sys.executable, "-c", probe, str(bundle)], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(sorted(["ingest_data", "train_model", "predictions_endpoint",
                                             "monitor_pipeline"]))  # fmt: skip


def test_deploy_needs_a_project(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MINIMLOPS_") and k != "GOOGLE_CLOUD_PROJECT"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "minimlops", "gcp", "deploy", "--dry-run"],
                          env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2 and "GOOGLE_CLOUD_PROJECT" in proc.stderr


def test_the_local_backend_never_imports_google_cloud(tmp_path: Path) -> None:
    probe = (
        "import sys; from minimlops.config import Settings; from minimlops.bootstrap import build; "
        "app = build(Settings.from_env({}, home=sys.argv[1])); app.close(); "
        "from minimlops.entrypoints import cli, http, serve; "
        "print(sorted(m for m in ('google.cloud.storage', 'google.cloud.bigquery', "
        "'google.cloud.pubsub_v1', 'functions_framework') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "home")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_up_refuses_the_gcp_backend_with_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIMLOPS_")}
    env.update(MINIMLOPS_BACKEND="gcp", GOOGLE_CLOUD_PROJECT="acme-ml", MINIMLOPS_HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "minimlops", "up"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "minimlops gcp deploy" in proc.stderr
