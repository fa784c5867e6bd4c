"""Operations: the timeline, ingestion reports, status, read-only SQL, and
the pages (prediction page, dashboard) with their static files."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from minimlops.entrypoints.http.request_models import QueryRequest
from minimlops.entrypoints.http.routes.common import WEB, Context, json_response, problem
from minimlops.entrypoints.http.routes.reuse import Reuse
from minimlops.errors import QueryError
from minimlops.services import admin


def router(ctx: Context) -> APIRouter:
    api, app = APIRouter(tags=["operations"]), ctx.app
    reuse = Reuse(app.settings.status_cache_seconds)
    # A landed file's event: its subject is the gs://bucket/name URI the ledger
    # keys it by; its "where", on the local backend, the file on this machine.
    files = app.settings.buckets_dir if app.settings.backend == "local" else None

    @api.get("/events")
    async def events(limit: int = 100) -> Response:
        """The pipeline's timeline, newest first."""
        limit = max(1, min(limit, 1000))
        return json_response(
            await reuse.get(
                ("events", limit),
                lambda: asyncio.to_thread(admin.timeline, app.deps, app.registry, limit, files),
            )
        )

    @api.get("/ingestions/{ingestion_id}/report")
    async def ingestion_report(ingestion_id: str) -> Response:
        """The JSON report of a rejected file or of skipped rows."""
        report = await asyncio.to_thread(admin.ingestion_report, app.deps, ingestion_id)
        if report is None:
            return problem(404, f"no report for ingestion {ingestion_id!r}")
        return json_response(report)

    # The importer runs every few seconds under load (adapters.journal), so a
    # read of the tables imports what is logged first: its counts and rows
    # hold every prediction answered before it.

    @api.get("/status")
    async def status() -> Response:
        def collect() -> dict[str, Any]:
            app.flush_predictions()
            return admin.status(app.deps, app.registry, app.predictor.version)

        return json_response(await reuse.get("status", lambda: asyncio.to_thread(collect)))

    @api.post("/query", dependencies=[ctx.admin_dependency()])
    async def query(body: QueryRequest) -> Response:
        def run() -> Any:
            app.flush_predictions()
            return app.deps.warehouse.query(body.sql)

        try:
            table = await asyncio.to_thread(run)
        except QueryError as exc:
            return problem(400, str(exc))
        return json_response({"columns": table.column_names, "rows": table.to_pylist()})

    @api.get("/", include_in_schema=False)
    async def page() -> Response:
        return FileResponse(WEB / "index.html")

    @api.get("/dashboard", include_in_schema=False)
    async def dashboard() -> Response:
        return FileResponse(WEB / "dashboard.html")

    return api
