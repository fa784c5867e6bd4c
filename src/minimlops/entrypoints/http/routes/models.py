"""Models: the project, the versions with their live metrics, promotion,
rollback and a training request."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from minimlops.entrypoints.http.request_models import PromoteRequest, TrainRequest
from minimlops.entrypoints.http.routes.common import WEB, Context, json_response, problem
from minimlops.entrypoints.http.routes.reuse import Reuse
from minimlops.errors import ConflictError, ModelNotFoundError
from minimlops.services import admin, monitor


def router(ctx: Context) -> APIRouter:
    api, app, admin_only = APIRouter(tags=["models"]), ctx.app, [ctx.admin_dependency()]
    reuse = Reuse(app.settings.status_cache_seconds)

    @api.get("/project")
    async def project() -> Response:
        """The data set: columns and rules, key, target, task, and a typical row."""
        return json_response(await asyncio.to_thread(admin.project_view, app.deps, app.registry))

    def models_with_live() -> dict[str, Any]:
        app.flush_predictions()  # the served counts include every answered prediction
        live = {v["version"]: v for v in monitor.live_accuracy(app.deps, app.registry)}
        return admin.list_models(app.registry, live)

    @api.get("/models")
    async def models() -> Response:
        return json_response(await reuse.get("models", lambda: asyncio.to_thread(models_with_live)))

    def model_with_live(version: str) -> dict[str, Any]:
        app.flush_predictions()
        live = {v["version"]: v for v in monitor.live_accuracy(app.deps, app.registry)}
        return admin.model_view(app.registry, version, live)

    @api.get("/models/{version}")
    async def model(version: str, request: Request) -> Response:
        """One version in full: metrics on VALIDATION with intervals, the
        baseline, the champion on the same rows and the paired test, the
        gate's decision, the candidates selection compared, and the numbers
        of its plots. A browser asking for HTML gets the evaluation page."""
        accept = request.headers.get("accept", "")
        vary = {"Vary": "Accept"}  # one URL, two forms: a cache must keep them apart
        if "text/html" in accept and "application/json" not in accept:
            try:  # the page says an unknown version itself; the status says it too
                await asyncio.to_thread(app.registry.metadata, version)
                status = 200
            except ModelNotFoundError:
                status = 404
            return FileResponse(WEB / "model.html", status_code=status, headers=vary)
        try:
            found = await asyncio.to_thread(model_with_live, version)
        except ModelNotFoundError as exc:
            found = None
            answer = problem(404, str(exc))
        if found is not None:
            answer = json_response(found)
        answer.headers.update(vary)
        return answer

    @api.post("/models/{version}/promote", dependencies=admin_only)
    async def promote(version: str, body: PromoteRequest | None = None) -> Response:
        reason = body.reason if body else "promoted by a person"
        try:
            pointer = await asyncio.to_thread(
                admin.promote, app.deps, app.registry, version, reason
            )
        except ModelNotFoundError as exc:
            return problem(404, str(exc))
        await asyncio.to_thread(app.predictor.refresh)
        return json_response(pointer)

    @api.post("/models/rollback", dependencies=admin_only)
    async def rollback() -> Response:
        try:
            pointer = await asyncio.to_thread(admin.rollback, app.deps, app.registry)
        except ConflictError as exc:
            return problem(409, str(exc))
        await asyncio.to_thread(app.predictor.refresh)
        return json_response(pointer)

    @api.post("/train", status_code=202, dependencies=admin_only)
    async def train(body: TrainRequest | None = None) -> Response:
        reason = body.reason if body else "requested by a person"
        message = await asyncio.to_thread(admin.request_training, app.deps, reason)
        return json_response({"status": "queued", "message_id": message, "reason": reason}, 202)

    return api
