"""Models: the project, the versions with their live metrics, promotion,
rollback and a training request."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from minimlops.entrypoints.routes.common import Context, json_response, problem
from minimlops.entrypoints.schemas import PromoteRequest, TrainRequest
from minimlops.errors import ConflictError, ModelNotFoundError
from minimlops.services import admin, monitor


def router(ctx: Context) -> APIRouter:
    api, app, admin_only = APIRouter(tags=["models"]), ctx.app, [ctx.admin_dependency()]

    @api.get("/project")
    async def project() -> Response:
        """The data set: columns and rules, key, target, task, and a typical row."""
        return json_response(await asyncio.to_thread(admin.project_view, app.deps, app.registry))

    def models_with_live() -> dict[str, Any]:
        live = {v["version"]: v for v in monitor.live_accuracy(app.deps, app.registry)}
        return admin.list_models(app.registry, live)

    @api.get("/models")
    async def models() -> Response:
        return json_response(await asyncio.to_thread(models_with_live))

    @api.post("/models/{version}/promote", dependencies=admin_only)
    async def promote(version: str, body: PromoteRequest | None = None) -> Response:
        reason = body.reason if body else "promoted by a person"
        try:
            pointer = await asyncio.to_thread(admin.promote, app.deps, app.registry, version, reason)
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
