"""``minimlops gcp``: provision, deploy, destroy, and dead letters.

provision: creates, idempotently, what the exercise clicks together by hand
(buckets, dataset, tables, topics, the dead-letter subscription), through the
client libraries, and says for each resource whether it was created or found;
it refuses a bucket name another project owns and a resource in another
location. deploy: checks the plan (:mod:`.plan`) against Google's documented
limits, builds one source bundle (:mod:`.bundle`) and runs ``gcloud``; with
``--dry-run`` it prints every command and the bundle's files and runs nothing.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minimlops.config import Settings
from minimlops.entrypoints.gcp import plan as plans
from minimlops.entrypoints.gcp.bundle import (
    build_bundle,
    check_against_lock,
    repo_lock,
    runtime_requirements,
)
from minimlops.entrypoints.gcp.plan import Lookup, PlanError, Step

__all__ = ["PlanError", "Resource", "deploy", "destroy", "provision", "redrive"]


@dataclass(frozen=True)
class Resource:
    kind: str
    name: str
    status: str  # created | found | updated


def provision(settings: Settings, *, push_endpoint: str | None = None) -> list[Resource]:
    """Buckets, dataset and tables, topics, dead-letter topic and subscription.

    Args:
        push_endpoint: also create push subscriptions that deliver the
            training topics to this base URL, at ``/projects/P/topics/T`` (what
            Eventarc does on Google Cloud; used with emulators).
    """
    from minimlops.bootstrap import build_gcp

    app = build_gcp(settings)
    try:
        deps, s = app.deps, settings
        store, wh, names = deps.store, deps.warehouse, deps.names
        out = [
            Resource("bucket", f"gs://{b}", store.ensure_bucket(b, s.gcp_location, s.gcp_project))  # type: ignore[attr-defined]
            for b in (names.landing_bucket, names.model_bucket)
        ]
        out.append(Resource("dataset", f"{s.gcp_project}.{wh.dataset}", wh.ensure_dataset()))  # type: ignore[attr-defined]
        for table in wh.schemas:  # type: ignore[attr-defined]
            out.append(Resource("table", wh.table_id(table), wh.ensure_table(table)))  # type: ignore[attr-defined]
        bus = deps.bus
        for topic in (
            names.ingestion_topic,
            names.retrain_topic,
            names.promoted_topic,
            names.alerts_topic,
        ):
            out.append(Resource("topic", topic, bus.ensure_topic(topic)))  # type: ignore[attr-defined]
        out.append(Resource("topic", s.dead_letter_topic, bus.ensure_topic(s.dead_letter_topic)))  # type: ignore[attr-defined]
        out.append(Resource("subscription", s.dead_letter_topic, bus.ensure_dead_letter()))  # type: ignore[attr-defined]
        if push_endpoint:
            for topic in (names.ingestion_topic, names.retrain_topic):
                name = f"train_model-{topic}"
                url = f"{push_endpoint.rstrip('/')}/projects/{s.gcp_project}/topics/{topic}"
                status = bus.create_subscription(name, topic, push_endpoint=url)  # type: ignore[call-arg]
                out.append(Resource("subscription", f"{name} -> {url}", status))
    finally:
        app.close()
    return out


def redrive(settings: Settings, *, apply: bool, echo: Any = print) -> int:
    """Dead-lettered messages: list them, or (``apply``) publish each again to
    the topic it came from and acknowledge it. Returns how many there were."""
    from minimlops.bootstrap import build_gcp

    app = build_gcp(settings)
    try:
        moved = app.deps.bus.redrive(apply=apply)  # type: ignore[attr-defined]
    finally:
        app.close()
    for source, topic, attributes in moved:
        what = ", ".join(
            f"{k}={v}" for k, v in sorted(attributes.items()) if not k.startswith("CloudPubSub")
        )
        echo(
            f"{'republished' if apply else 'held'}  from {source or '?'} -> {topic or '?'}  {what}"
        )
    return len(moved)


# -- deploy ----------------------------------------------------------------------
def _print_plan(plan: plans.Plan, echo: Any) -> None:
    echo("# service accounts and why each role:")
    for ident in plan.identities:
        for g in ident.grants:
            cond = " (champion pointer only)" if g.condition else ""
            echo(f"# {ident.account}: {g.role} on {g.scope} {g.resource}{cond} ({g.why})")
    for who, _member, g in plan.agents:
        echo(f"# {who}: {g.role} on {g.scope} {g.resource} ({g.why})")


def _resolve(arg: str | Lookup) -> str:
    if isinstance(arg, str):
        return arg
    argv = [_resolve(a) for a in arg.argv]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()
    if not out:
        raise RuntimeError(f"{' '.join(arg.argv)} printed nothing")
    return arg.template.format(out)


def _run(step: Step) -> int:
    """Run one step (its update when the resource exists); the exit status."""
    stdin = secrets.token_urlsafe(32) if step.secret_stdin else step.stdin
    result = subprocess.run(
        [_resolve(a) for a in step.argv], input=stdin, check=False, capture_output=True, text=True
    )
    sys.stdout.write(result.stdout)
    exists = "already exists" in result.stderr.lower() or "already_exists" in result.stderr.lower()
    if result.returncode and exists and step.update:
        print(f"# exists: updating ({' '.join(map(str, step.update[:5]))} ...)")
        result = subprocess.run(
            [_resolve(a) for a in step.update],
            input=step.stdin,
            check=False,
            capture_output=True,
            text=True,
        )
        sys.stdout.write(result.stdout)
    elif result.returncode and exists and step.exists_ok:
        print("# exists: kept as it is")
        return 0
    if result.returncode:
        sys.stderr.write(result.stderr)
    return result.returncode


def deploy(
    settings: Settings,
    bundle: Path,
    *,
    dry_run: bool,
    allow_unauthenticated: bool = False,
    echo: Any = print,
) -> int:
    """Check the plan, build the bundle, run (or print) every step."""
    from minimlops.bootstrap import project_of

    project = project_of(settings)  # checked, code included, before anything is built
    plan = plans.build(settings, allow_unauthenticated=allow_unauthenticated)
    problems = plans.violations(plan)
    if problems:
        raise PlanError("Google Cloud would refuse this deployment:\n  " + "\n  ".join(problems))
    requirements = runtime_requirements()
    lock = repo_lock()
    drift = check_against_lock(requirements, lock) if lock else []
    if drift:
        raise PlanError(
            "the installed versions are not the lock's (make run installs them): "
            + "; ".join(drift[:5])
        )
    files = build_bundle(bundle, requirements, Path(project.directory))
    echo(
        f"# project {project.name}: {project.task} {project.target} "
        f"({len(project.columns)} columns)"
    )
    echo(
        f"# Google Cloud project {plan.project}: functions in {plan.region}, buckets and "
        f"dataset {plan.dataset} in {plan.location}"
    )
    echo(f"# bundle {bundle} ({len(files)} files; {len(requirements)} pinned requirements):")
    for name in files:
        echo(f"#   {name}")
    _print_plan(plan, echo)
    for step in plans.steps(plan, bundle):
        echo(f"# {step.why}")
        echo(step.shell())
        if dry_run:
            continue
        code = _run(step)
        if code:
            return code
    return 0


def destroy(
    settings: Settings, *, dry_run: bool, delete_data: bool = False, echo: Any = print
) -> int:
    """Remove what deploy made; with ``delete_data``, the buckets, dataset and
    topics provision made too (their data is gone for good)."""
    plan = plans.build(settings)
    steps = plans.teardown(plan)
    if delete_data:
        s, p, n = settings, plan.project, plan.names
        names = (
            n.ingestion_topic,
            n.retrain_topic,
            n.promoted_topic,
            n.alerts_topic,
            s.dead_letter_topic,
        )
        steps += [
            Step(
                (
                    "gcloud",
                    "pubsub",
                    "subscriptions",
                    "delete",
                    s.dead_letter_topic,
                    f"--project={p}",
                    "--quiet",
                ),
                "the dead-letter subscription",
            ),
            Step(
                ("gcloud", "pubsub", "topics", "delete", *names, f"--project={p}", "--quiet"),
                "the topics",
            ),
            Step(
                ("bq", "rm", "-r", "-f", "-d", f"{p}:{plan.dataset}"),
                "the dataset and every table in it",
            ),
            Step(
                (
                    "gcloud",
                    "storage",
                    "rm",
                    "--recursive",
                    f"gs://{plan.names.landing_bucket}",
                    f"gs://{plan.names.model_bucket}",
                ),
                "both buckets and every object in them",
            ),
        ]
    failed = 0
    for step in steps:
        echo(f"# {step.why}")
        echo(step.shell())
        if not dry_run:
            result = subprocess.run(list(step.argv), check=False, capture_output=True, text=True)  # type: ignore[arg-type]
            gone = "not found" in result.stderr.lower() or "not_found" in result.stderr.lower()
            if result.returncode and not gone:
                sys.stderr.write(result.stderr)
                failed += 1
    return 1 if failed else 0
