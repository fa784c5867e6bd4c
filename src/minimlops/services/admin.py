"""Operations a person runs: status, model list, promote, rollback, retrain.

The HTTP API and the command line both call these, so the two always agree.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from minimlops.domain.events import ModelPromoted, RetrainRequested
from minimlops.domain.project import shape_changes
from minimlops.errors import ConflictError
from minimlops.services import alerts, messagebus
from minimlops.services.deps import Deps, local_path
from minimlops.services.registry import ModelRegistry

logger = logging.getLogger(__name__)


def list_models(
    registry: ModelRegistry, live: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Every version with its metrics and decision, and which one is champion.

    Args:
        live: live accuracy per version (monitor.live_accuracy), when known.
    """
    pointer, _ = registry.champion()
    versions = [_version_entry(meta, pointer, live or {}) for meta in registry.versions()]
    return {
        "model": registry.name,
        "champion": pointer["version"] if pointer else None,
        "versions": versions,
    }


def _version_entry(
    meta: dict[str, Any], pointer: dict[str, Any] | None, live: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    v, seen = meta["version"], live.get(meta["version"]) or {}
    return {
        "version": v,
        "champion": bool(pointer and pointer["version"] == v),
        "algorithm": meta["algorithm"],
        "created_at": meta["created_at"],
        "trigger": meta.get("trigger"),
        "metrics": meta["metrics"]["validation"],
        "baseline": meta.get("baseline"),
        "decision": meta.get("decision"),
        "training_rows": meta["training"]["rows"],
        "fit_rows": meta["training"].get("fit_rows", meta["training"].get("train_rows")),
        "fitted_on": meta["training"].get("fitted_on", ["TRAIN"]),
        "sha256": meta["sha256"],
        "evaluation": meta["metrics"].get("evaluation"),
        # the model that serves, on TEST (None: no TEST rows, or trained before it was kept)
        "test": meta["metrics"].get("test"),
        "project": meta.get("project"),
        "champion_compared": meta.get("champion_compared"),
        "serving": {k: x for k, x in (meta.get("serving") or {}).items() if k != "spec"},
        "live_accuracy": seen.get("live_accuracy"),
        "live_mae": seen.get("live_mae"),
        "live_rmse": seen.get("live_rmse"),
        "labelled": seen.get("labelled", 0),
        "label_coverage": seen.get("label_coverage"),
        "predicted_after_landing": seen.get("predicted_after_landing", 0),
        "label_delay_s": seen.get("label_delay_s"),
        "estimated": seen.get("estimated"),
        "served": seen.get("served", 0),
        "champion_periods": [h for h in (pointer or {}).get("history", []) if h["version"] == v],
    }


def model_view(
    registry: ModelRegistry, version: str, live: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """One version in full, for its evaluation page and ``models show``: what
    :func:`list_models` lists, plus the selection's leaderboard, the training
    data, the live metrics with their interval, and the plots' numbers stored
    at training (``report``; None for a version trained before they were).

    Raises:
        ModelNotFoundError: no such version.
    """
    meta = registry.metadata(version)  # raises for an unknown version
    listed = _version_entry(meta, registry.champion()[0], live or {})
    live_row = (live or {}).get(version) or {}
    return {
        **listed,
        "selection": meta.get("selection") or {},
        "training": meta.get("training"),
        "evaluation_rows": meta["metrics"].get("evaluation_rows"),
        "live": {
            k: live_row.get(k)
            for k in (
                "served",
                "labelled",
                "predicted_after_landing",
                "live_accuracy",
                "interval_95",
                "live_mae",
                "live_rmse",
                "mae_interval_95",
                "label_coverage",
                "label_delay_s",
                "estimated",
            )
        },
        "calibration": meta.get("calibration") or {},
        "warnings": meta.get("warnings") or [],
        "libraries": meta.get("libraries"),
        "report": registry.evaluation(version),
    }


def promote(
    deps: Deps,
    registry: ModelRegistry,
    version: str,
    reason: str,
    *,
    alert: str = "model.promoted",
) -> dict[str, Any]:
    """Make a version champion by hand; serving instances pick it up."""
    pointer = registry.set_champion(version, reason=reason, at=deps.now().isoformat())
    event = ModelPromoted(
        model=registry.name, version=version, previous=pointer["previous"], reason=reason
    )
    messagebus.publish(event, deps)
    alerts.publish(
        deps,
        alert,
        f"version {version} serves ({reason}); it replaces {pointer['previous'] or 'none'}",
        {"version": version, "previous": pointer["previous"], "reason": reason, "by": "a person"},
        key=event.event_id,
    )
    return pointer


def rollback(deps: Deps, registry: ModelRegistry, reason: str = "rollback") -> dict[str, Any]:
    """Make the previous champion champion again.

    Raises:
        ConflictError: there is no earlier champion to return to.
    """
    pointer, _ = registry.champion()
    if not pointer or not pointer.get("previous"):
        raise ConflictError("there is no previous champion to roll back to")
    return promote(
        deps,
        registry,
        pointer["previous"],
        f"{reason} from {pointer['version']}",
        alert="model.rolled_back",
    )


def request_training(deps: Deps, reason: str) -> str:
    """Ask for a new model; the training worker takes it (one at a time)."""
    from minimlops.services.monitor import record_trigger

    event = RetrainRequested(reason=f"requested by a person: {reason}")
    record_trigger(deps, event, "person", {})
    return messagebus.publish(event, deps)


def retrain_if_project_changed(deps: Deps, registry: ModelRegistry) -> str | None:
    """On start: when the project's features or split changed since the
    champion was trained, and no version was trained for them yet, ask for
    a version that uses them. Returns the reason, or None."""
    pointer, _ = registry.champion()
    if pointer is None:
        return None
    now = deps.project.model_shape()
    versions = registry.versions()
    if any(not shape_changes(v.get("project") or {}, now) for v in versions[-1:]):
        return None  # the newest version was trained for this project already
    try:
        champion = registry.metadata(pointer["version"])
    except Exception:  # unreadable: the server reports it; nothing to compare
        return None
    changes = shape_changes(champion.get("project") or {}, now)
    if not changes:
        return None
    reason = f"the project changed since version {pointer['version']}: {'; '.join(changes)}"
    from minimlops.services.monitor import record_trigger

    event = RetrainRequested(reason=reason)
    record_trigger(deps, event, "project", {})
    messagebus.publish(event, deps)
    return reason


def feedback(deps: Deps, labels: list[tuple[str, Any]]) -> dict[str, Any]:
    """Store true labels of earlier predictions; unknown ids are reported, not stored.

    The newest label of a prediction is the one that counts: ``replaced``
    names the ids that had a label sent before (or twice in these labels:
    the last one is kept).
    """
    from collections import Counter

    import pyarrow as pa

    from minimlops.services.tables import arrow_schema

    ids = [u for u, _ in labels]
    last = dict(labels)  # one label per id: the last one given
    known = deps.warehouse.known_uuids(deps.names.predictions_table, list(last))
    earlier = deps.warehouse.known_uuids(deps.names.feedback_table, [u for u in last if u in known])
    twice = {u for u, n in Counter(ids).items() if n > 1 and u in known}
    now = deps.now()
    key, target = deps.project.key, deps.project.target
    keyed = _generated_keys(deps, {u: y for u, y in last.items() if u in known})
    rows = [
        {"uuid": u, key: keyed.get(u), target: y, "received_at": now, "source": "api"}
        for u, y in last.items()
        if u in known
    ]
    if rows:
        schema = arrow_schema("feedback", deps.project)
        deps.warehouse.append(deps.names.feedback_table, pa.Table.from_pylist(rows, schema=schema))
    return {
        "accepted": len(rows),
        "unknown": [u for u in last if u not in known],
        "replaced": [u for u in last if u in earlier or u in twice],
    }


def _generated_keys(deps: Deps, labels: dict[str, Any]) -> dict[str, str]:
    """With a generated key (a hash of a row's values, its label among them),
    a prediction has no key of its own: each labelled one gets the key a row
    of its inputs and this label gets when it lands, so that once such a row
    lands, live figures and the gate know the model may have learnt it. A
    prediction whose key the request carried keeps it. A failure to read
    them stores the labels without keys (as before there were any), never
    loses them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from minimlops.services.content_keys import first_keys
    from minimlops.services.tables import arrow_schema

    project = deps.project
    if not labels or not project.key_is_row_hash:
        return {}  # (a key made of columns is logged with each prediction)
    try:
        logged = deps.warehouse.predictions_of(deps.names.predictions_table, list(labels))
    except Exception:
        logger.warning("feedback: the labelled predictions could not be keyed", exc_info=True)
        return {}
    logged = logged.filter(pc.is_null(logged.column(project.key)))
    if logged.num_rows == 0:
        return {}
    uuids = logged.column("uuid").to_pylist()
    schema = arrow_schema("training_data", project)
    columns = [c.name for c in project.columns if not c.generated]
    row = pa.table(
        {
            name: pa.array([labels[u] for u in uuids], schema.field(name).type)
            if name == project.target
            else logged.column(name).cast(schema.field(name).type)
            if name in logged.column_names
            else pa.nulls(len(uuids), schema.field(name).type)
            for name in columns
        }
    )
    return dict(zip(uuids, first_keys(row, columns), strict=True))


def status(deps: Deps, registry: ModelRegistry, serving: str | None = None) -> dict[str, Any]:
    """Tables, champion, last ingestion and training, and the message queues."""
    pointer, _ = registry.champion()
    ledger = deps.warehouse.ledger()
    versions = registry.versions()
    last = versions[-1] if versions else None
    bus_stats: list[dict[str, Any]] = getattr(deps.bus, "stats", lambda: [])()
    dead: list[dict[str, Any]] = getattr(deps.bus, "dead_letters", lambda: [])()[:20]
    return {
        "tables": deps.warehouse.counts(),
        "champion": pointer and {k: pointer[k] for k in ("version", "updated_at", "reason")},
        "serving": serving,
        "last_ingestion": ledger[0] if ledger else None,
        "last_training": last
        and {
            "version": last["version"],
            "created_at": last["created_at"],
            "algorithm": last["algorithm"],
            "accuracy": last["metrics"]["validation"].get("accuracy"),
            "metric": last["decision"].get("metric"),
            # its VALIDATION figure, as `models list` shows (the gate's are on the
            # rows both versions share: in the decision)
            "score": last["metrics"]["validation"].get(
                last["decision"].get("metric") or "accuracy", last["decision"].get("challenger")
            ),
            "decision": last["decision"],
        },
        "queues": bus_stats,
        "dead_letters": dead,
        "alerts": alerts.status(deps),
    }


def timeline(
    deps: Deps, registry: ModelRegistry, limit: int = 100, files: Path | None = None
) -> list[dict[str, Any]]:
    """Pipeline events, newest first: files landed and their fate, trainings,
    promotions and rollbacks, each with its reason.

    Args:
        files: the local backend's buckets directory. A landed file's event
            then shows (``where``, and in its detail) the file on this machine
            rather than its ``gs://bucket/name`` URI, which stays its
            ``subject``: the ledger keys ingestions by that URI, so that a
            file is loaded once. Without it, ``where`` is the URI.
    """
    events: list[dict[str, Any]] = []
    ledger = deps.warehouse.ledger()
    shown = {r["source_uri"]: local_path(r["source_uri"], files) for r in ledger}
    for row in ledger:
        where = shown[row["source_uri"]]
        if row["status"] == "rejected":  # set aside: where it is now
            bucket, _, name = row["source_uri"].removeprefix("gs://").partition("/")
            where = local_path(f"gs://{bucket}/rejected/{name}", files)
        kind = {"loaded": "ingested", "rejected": "rejected", "duplicate": "duplicate"}
        detail = row["message"] or f"{row['rows_loaded']:,} rows loaded"
        if row["status"] == "loaded" and row["message"]:  # bad rows skipped, a column absent
            detail = f"{row['rows_loaded']:,} rows loaded; {row['message']}"
        if files is not None and "gs://" in detail:  # "same content as gs://… (loaded before)"
            for uri in sorted(shown, key=len, reverse=True):
                detail = detail.replace(uri, shown[uri])
        events.append(
            {
                "at": _iso(row["ingested_at"]),
                "kind": kind.get(row["status"], row["status"]),
                "subject": row["source_uri"],
                "where": where,
                "rows": row["rows_loaded"],
                "detail": detail,
                "report": f"/ingestions/{row['ingestion_id']}/report"
                if row["report_uri"]
                else None,
            }
        )
    for meta in registry.versions():
        d = meta.get("decision") or {}
        metric = d.get("metric") or "accuracy"
        score = meta["metrics"]["validation"].get(metric)
        value = "—" if score is None else f"{score:.3f}" if abs(score) < 1000 else f"{score:,.0f}"
        events.append(
            {
                "at": meta["created_at"],
                "kind": "trained",
                "subject": f"version {meta['version']}",
                "detail": f"{meta['algorithm']}, {metric} {value} on VALIDATION; "
                f"{'promoted' if d.get('promote') else 'kept champion'}: {d.get('reason', '')}"
                f" (trigger: {(meta.get('trigger') or {}).get('reason', '?')})",
                "report": None,
                "rows": meta["training"]["rows"],
                "version": meta["version"],
            }
        )
    from minimlops.services.monitor import ESTIMATE

    pointer, _ = registry.champion()
    previous = None
    for t in _triggers(deps):
        events.append(
            {
                "at": _iso(t["requested_at"]),
                "kind": "alert" if t["kind"] == ESTIMATE else "trigger",
                "subject": t["kind"],
                "detail": t["reason"],
                "report": None,
                "rows": None,
            }
        )
    for h in (pointer or {}).get("history", []):
        moved = "rolled back" if h["reason"].startswith("rollback") else "promoted"
        events.append(
            {
                "at": h["at"],
                "kind": moved,
                "subject": f"version {h['version']}",
                "detail": h["reason"] + (f" (was {previous})" if previous else ""),
                "report": None,
                "rows": None,
                "version": h["version"],
            }
        )
        previous = h["version"]
    events.sort(key=lambda e: e["at"], reverse=True)
    return events[:limit]


def _triggers(deps: Deps) -> list[dict[str, Any]]:
    from minimlops.services.monitor import triggers

    # ingestions show new_data; estimate alerts show as alerts
    return [t for t in triggers(deps, estimates=True) if t["kind"] != "new_data"]


def ingestion_report(deps: Deps, ingestion_id: str) -> dict[str, Any] | None:
    """The report of an ingestion (rejected file or skipped rows), by ledger id."""
    rows = [r for r in deps.warehouse.ledger() if r["ingestion_id"] == ingestion_id]
    uri = rows[0]["report_uri"] if rows else None
    if not uri or not uri.startswith("gs://"):
        return None
    bucket, _, name = uri[len("gs://") :].partition("/")
    try:
        report: dict[str, Any] = json.loads(deps.store.read_bytes(bucket, name))
    except FileNotFoundError:
        return None
    return report


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _champion_spec(registry: ModelRegistry) -> dict[str, Any]:
    """The champion's serving spec (its typical row, categories), or {}."""
    pointer, _ = registry.champion()
    if pointer is None:
        return {}
    try:
        return dict((registry.metadata(pointer["version"]).get("serving") or {}).get("spec") or {})
    except Exception:  # a page or a hint must not fail on an unreadable champion
        return {}


def example_request(deps: Deps, registry: ModelRegistry) -> dict[str, Any] | None:
    """A request the server answers, for the start-up hint: the project's own
    (``[example] request``, Titanic's is the exercise's), else the champion's
    typical training row without key and target; None before a first model."""
    p = deps.project
    own = p.extras.get("request")
    if isinstance(own, dict):
        return dict(own)
    typical = _champion_spec(registry).get("reference") or {}
    row = {c: typical[c] for c in p.input_columns if c != p.key and typical.get(c) is not None}
    return row or None


def project_view(deps: Deps, registry: ModelRegistry) -> dict[str, Any]:
    """The data set as the pages need it: columns with their rules, key,
    target, task, classes, metrics, and a typical row (from the champion's
    training rows when there is one) to fill a form with."""
    from minimlops.domain.project import METRICS

    p = deps.project
    spec = _champion_spec(registry)
    typical = dict(spec.get("reference") or {})
    # the values to choose from in a form; not for a column of hundreds of
    # values (a ticket number), which is typed
    seen = {
        c["name"]: c["categories"]
        for c in spec.get("columns", [])
        if c.get("kind") == "categorical" and not c.get("derived") and c.get("one_hot", True)
    }
    if not typical:
        from minimlops.projects import typical_row

        typical = {k: v for k, v in typical_row(p).items() if k != p.target}
    columns = [
        {
            "name": c.name,
            "type": c.type,
            "required": c.required and c.name != p.key,
            "description": c.description,
            "kind": c.kind,
            "allowed": list(c.allowed) if c.allowed is not None else None,
            "min": c.min,
            "max": c.max,
            "max_length": c.max_length,
            "feature": c.name in p.features or any(c.name in d.inputs for d in p.derived),
            "default": typical.get(c.name),
            "categories": seen.get(c.name),
        }
        for c in p.columns
        if c.name != p.target
    ]
    return {
        "name": p.name,
        "description": p.description,
        "key": p.key,
        "target": p.target,
        "target_description": p.target_column.description,
        "task": p.task,
        "classes": list(p.classes) if p.classes else None,
        "positive_class": p.positive_class,
        "primary_metric": p.primary_metric,
        "metrics": list(METRICS[p.task]),
        "columns": columns,
        "row_name": p.extras.get("request_name", "Row"),
        "verdicts": dict(p.extras.get("verdicts", {})),
        "probability_label": p.extras.get("probability_label"),
        "derived": [
            {"name": d.name, "inputs": list(d.inputs), "description": d.description}
            for d in p.derived
        ],
    }
