"""ingest_data: a landed file -> validated -> loaded in one transaction -> event.

Safe to run twice on the same event (at-least-once delivery): an object
generation that was loaded before only republishes its ``IngestionComplete``;
the same bytes under another name are recorded as a duplicate and load
nothing; a bad file is moved to ``rejected/`` with a JSON report.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from minimlops.domain.events import Event, IngestionComplete, ObjectFinalized, RetrainRequested
from minimlops.errors import ConflictError, SchemaError
from minimlops.ports import ObjectInfo
from minimlops.services import alerts, validate
from minimlops.services.deps import Deps
from minimlops.services.monitor import record_trigger
from minimlops.services.tables import arrow_schema

logger = logging.getLogger(__name__)
RESERVED_PREFIXES = ("rejected/", "reports/", "staging/")  # written by the pipeline


class _TooManyBadRows(Exception):
    pass


def ingest_data(event: ObjectFinalized, *, deps: Deps) -> list[Event]:
    """Handle one landed object; return the events to publish."""
    if event.name.startswith(RESERVED_PREFIXES):
        return []
    info = deps.store.stat(event.bucket, event.name)
    if info is None:
        logger.warning("ingest_data: %s is gone, nothing to do", event.uri)
        return []
    done = [
        r
        for r in deps.warehouse.ledger(source_uri=info.uri)
        if r["generation"] == info.generation and r["status"] == "loaded"
    ]
    if done:
        logger.info("ingest_data: %s was loaded before; republishing", deps.shown(info.uri))
        return [_complete(done[0], deps)]
    digest = _sha256(deps, info)
    ingestion_id = f"{deps.now():%Y%m%dT%H%M%S%fZ}-{digest[:8]}"
    row: dict[str, Any] = {
        "ingestion_id": ingestion_id,
        "source_uri": info.uri,
        "generation": info.generation,
        "content_sha256": digest,
        "rows_loaded": 0,
        "rows_rejected": 0,
        "report_uri": None,
        "message": None,
        "ingested_at": deps.now(),
    }
    earlier = [r for r in deps.warehouse.ledger(content_sha256=digest) if r["status"] == "loaded"]
    if earlier:
        msg = f"same content as {earlier[0]['source_uri']} (loaded before): nothing loaded"
        logger.warning("ingest_data: %s: %s", deps.shown(info.uri), msg)
        _record(deps, row, status="duplicate", message=msg)
        return []
    return _load(deps, info, row)


def _load(deps: Deps, info: ObjectInfo, row: dict[str, Any]) -> list[Event]:
    report = validate.Report()
    ledger_row = dict(row, status="loaded")  # completed by _checked before commit
    try:
        with deps.store.open(info.bucket, info.name) as raw:
            names = validate.read_header(raw, deps.project)
        with deps.store.open(info.bucket, info.name) as raw:
            stream = validate.CountingReader(
                raw, lambda n: deps.progress(f"loading {info.name}", n, info.size)
            )
            rows = deps.warehouse.load(
                deps.names.training_table,
                _checked(deps, info, stream, names, report, ledger_row),
                ledger_row,
            )
    except SchemaError as exc:
        report.file_errors.append(str(exc))
        return _reject(deps, info, row, report)
    except _TooManyBadRows:
        return _reject(deps, info, row, report, _too_many(deps, report))
    except ConflictError:  # the same bytes were loaded by a delivery running alongside?
        if not any(
            r["status"] == "loaded"
            for r in deps.warehouse.ledger(content_sha256=row["content_sha256"])
        ):
            raise  # a conflict of another kind: let the message come back
        logger.warning(
            "ingest_data: %s: loaded concurrently by another delivery", deps.shown(info.uri)
        )
        return []
    labels = deps.warehouse.labels_from_ingestion(
        deps.names.training_table,
        deps.names.predictions_table,
        deps.names.feedback_table,
        ledger_row["ingestion_id"],
        info.uri,  # an identifier, stored: never the shown path
    )
    if labels:
        logger.info(
            "ingest_data: %s: %s rows label every earlier prediction made with their key "
            "(feedback)",
            deps.shown(info.uri),
            f"{labels:,}",
        )
    logger.info(
        "ingest_data: %s: %s rows loaded into %s (%s)%s",
        deps.shown(info.uri),
        f"{rows:,}",
        deps.names.training_table,
        ledger_row["ingestion_id"],
        f"; {report.bad_rows:,} bad rows skipped, report {deps.shown(ledger_row['report_uri'])}"
        if report.bad_rows
        else "",
    )
    done = _complete(dict(ledger_row, rows_loaded=rows), deps)
    skipped = (
        alerts.raised(
            deps,
            "ingestion.skipped_rows",
            f"{info.uri}: {report.bad_rows:,} bad rows skipped, {rows:,} loaded",
            {
                "file": info.uri,
                "rows_loaded": rows,
                "bad_rows": report.bad_rows,
                "max_bad_rows": deps.max_bad_rows,
                "report": ledger_row.get("report_uri"),
                "reason": report.summary()[:2000],
            },
            key=done.ingestion_id,
        )
        if report.bad_rows
        else []
    )
    record_trigger(
        deps,
        RetrainRequested(reason="new data ingested", event_id=done.event_id),
        "new_data",
        {"source_uri": info.uri, "rows": rows},
    )
    return [done, *skipped]


def _checked(
    deps: Deps,
    info: ObjectInfo,
    stream: validate.CountingReader,
    names: list[str],
    report: validate.Report,
    row: dict[str, Any],
) -> Iterator[pa.RecordBatch]:
    """Yield valid typed batches; abort (rolling the load back) past the limit.

    At the end, before the warehouse commits, the ledger row gets the count of
    skipped rows and their report (only when MAX_BAD_ROWS allows any).
    """
    try:
        project = deps.project
        keys = validate.content_keys(project)  # a generated key's, if the file lacks it
        raw = validate.batches(stream, names, report)
        for batch in raw:
            good = validate.check_batch(batch, report.rows + 1, report, project, keys)
            if report.bad_rows > deps.max_bad_rows:
                for rest in raw:  # validate the rest too: the report counts every bad row
                    validate.check_batch(rest, report.rows + 1, report, project, keys)
                raise _TooManyBadRows
            yield from _with_meta(good, row, project).to_batches()
    except pa.ArrowInvalid as exc:
        msg = validate.plain_reason(exc)
        raise SchemaError(f"unreadable data after row {report.rows:,}: {msg}") from None
    if report.rows == 0:
        raise SchemaError("the file has a header but no data rows")
    # before the warehouse commits; a key made of named columns is named by them
    made = deps.project.key_parts if deps.project.key not in names else None
    validate.check_keys(report, deps.project.key, made)
    said = []
    if report.bad_rows:
        row["rows_rejected"] = report.bad_rows
        said.append(f"{report.bad_rows:,} bad rows skipped: {report.summary()}")
        row["report_uri"] = _write_report(deps, info, row, report, prefix="reports/")
    if absent := [
        c.name
        for c in deps.project.columns
        if not c.required and not c.generated and c.name not in names
    ]:  # loaded as empty: said, since a renamed export looks the same
        said.append(
            f"optional column{'s' if len(absent) > 1 else ''} {_listed(absent)} not in "
            "the file: loaded as empty"
        )
        logger.info("ingest_data: %s: %s", deps.shown(info.uri), said[-1])
    if said:
        row["message"] = "; ".join(said)


def _with_meta(good: pa.Table, row: dict[str, Any], project: Any) -> pa.Table:
    n = good.num_rows
    return (
        good.append_column("split", validate.add_split(good, project))
        .append_column("ingestion_id", pa.repeat(pa.scalar(row["ingestion_id"]), n))
        .append_column("source_uri", pa.repeat(pa.scalar(row["source_uri"]), n))
        .append_column(
            "ingested_at", pa.repeat(pa.scalar(row["ingested_at"], pa.timestamp("us", tz="UTC")), n)
        )
    )


def _too_many(deps: Deps, report: validate.Report) -> str:
    if report.bad_rows >= report.rows:  # no row to load: a limit would not help
        return (
            "no row is valid, so nothing was loaded: the file does not write what the "
            "project declares; fix the file, or the column's type or rule in the "
            "project file if the values are right (the first reason above, and the "
            "report, say which)"
        )
    return (
        f"more than MINIMLOPS_MAX_BAD_ROWS={deps.max_bad_rows:,} allows, so nothing was "
        f"loaded: set MINIMLOPS_MAX_BAD_ROWS={report.bad_rows} where the pipeline runs "
        "(a server reads it when it starts) and land the file again to load the valid "
        "rows (the bad ones are reported), or fix the rows, or the column's type or "
        "rule in the project file if the values are right"
    )


def _reject(
    deps: Deps,
    info: ObjectInfo,
    row: dict[str, Any],
    report: validate.Report,
    advice: str = "",
) -> list[Event]:
    moved = deps.store.move(info.bucket, info.name, f"rejected/{info.name}")
    row = dict(row, rows_rejected=report.bad_rows)  # bad rows; a rejected file loads none
    row["report_uri"] = _write_report(deps, moved, row, report, prefix="")
    summary = report.summary() + (f"; {advice}" if advice else "")
    logger.error(
        "ingest_data: %s rejected: %s; moved to %s, report %s",
        deps.shown(info.uri),
        summary,
        deps.shown(moved.uri),
        deps.shown(row["report_uri"]),
    )
    _record(deps, row, status="rejected", message=summary)
    return alerts.raised(
        deps,
        "file.rejected",
        f"{info.uri} rejected: {report.summary()}"[:300],
        {
            "file": info.uri,
            "moved_to": moved.uri,
            "report": row["report_uri"],
            "reason": summary[:2000],
            "bad_rows": report.bad_rows,
            "max_bad_rows": deps.max_bad_rows,
        },
        key=f"{row.get('content_sha256')}/{info.uri}",
    )


def _write_report(
    deps: Deps, info: ObjectInfo, row: dict[str, Any], report: validate.Report, prefix: str
) -> str:
    if any(e["column"] is None for e in report.errors):
        # Arrow skips a row with the wrong number of fields without its number:
        # find the numbers with a second, plain read (only files with such rows)
        with deps.store.open(info.bucket, info.name) as raw:
            validate.number_field_count_errors(raw, report)
    body = {
        "source_uri": row["source_uri"],
        "ingestion_id": row["ingestion_id"],
        "content_sha256": row["content_sha256"],
        "rows": report.rows,
        "bad_rows": report.bad_rows,
        "max_bad_rows": deps.max_bad_rows,
        "file_errors": report.file_errors,
        "errors": report.errors,
        "errors_listed": len(report.errors),
        "summary": report.summary(),
    }
    name = f"{prefix}{info.name}.report.json"
    deps.store.write_bytes(info.bucket, name, json.dumps(body, indent=2, default=str).encode())
    return f"gs://{info.bucket}/{name}"


def _record(deps: Deps, row: dict[str, Any], *, status: str, message: str) -> None:
    ledger = deps.names.ledger_table
    deps.warehouse.append(ledger, _ledger_table(dict(row, status=status, message=message)))


def _ledger_table(row: dict[str, Any]) -> pa.Table:
    return pa.Table.from_pylist([row], schema=arrow_schema("ingestion_ledger"))


def _complete(row: dict[str, Any], deps: Deps) -> IngestionComplete:
    return IngestionComplete(
        ingestion_id=row["ingestion_id"],
        table=deps.names.training_table,
        rows_loaded=int(row["rows_loaded"]),
        source_uri=row["source_uri"],
        content_sha256=row["content_sha256"],
    )


def _sha256(deps: Deps, info: ObjectInfo) -> str:
    h = hashlib.sha256()
    with deps.store.open(info.bucket, info.name) as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _listed(names: list[str], most: int = 12) -> str:
    """Names as a list, the first ``most`` of a long one and how many more."""
    shown = ", ".join(repr(n) for n in names[:most])
    return f"[{shown}{f', and {len(names) - most} more' if len(names) > most else ''}]"
