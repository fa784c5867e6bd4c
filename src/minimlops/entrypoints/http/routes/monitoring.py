"""Monitoring: feedback (true values for earlier predictions), live metrics,
drift and triggers, and running the triggers now."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from minimlops.entrypoints.http.fastpath import field_errors
from minimlops.entrypoints.http.routes.common import (
    Context,
    body_schema,
    json_response,
    problem,
    ref,
)
from minimlops.services import admin, messagebus, monitor


def router(ctx: Context) -> APIRouter:
    api, app, s = APIRouter(tags=["monitoring"]), ctx.app, ctx.app.settings
    feedback_body = body_schema(
        {"oneOf": [ref("Feedback"), {"type": "array", "items": ref("Feedback")}]}
    )

    @api.post("/feedback", openapi_extra={"requestBody": feedback_body})
    async def feedback(request: Request) -> Response:
        """True labels for earlier predictions: {"uuid", "<target>"} or a list."""
        if (refused := ctx.keyed(request)) is not None:
            return refused
        try:
            data = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return problem(400, f"invalid JSON: {exc}")
        many = isinstance(data, list)
        try:
            body = (ctx.shapes.feedbacks if many else ctx.shapes.feedback).validate_python(data)
        except ValidationError as exc:
            known = ("uuid", ctx.target)  # a misspelt one is named, as /predict does
            return problem(
                422, "invalid feedback", errors=field_errors(exc, many, data, known, "labels")
            )
        items = body if many else [body]
        if not items:
            return problem(422, "no labels: the list is empty")
        if len(items) > s.max_batch:
            return problem(413, f"{len(items)} labels exceed the limit of {s.max_batch}")
        target = ctx.target

        def store() -> dict[str, Any]:
            app.flush_predictions()  # a prediction answered a moment ago is known
            return admin.feedback(app.deps, [(i["uuid"], i[target]) for i in items])

        result = await asyncio.to_thread(store)
        if not result["accepted"]:  # say which, as every other refusal does
            unknown = result["unknown"]
            shown = ", ".join(repr(u) for u in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            result = {"detail": f"no prediction has the uuid {shown}", **result}
        return json_response(result, 200 if result["accepted"] else 404)

    @api.get("/monitoring")
    async def monitoring() -> Response:
        """Live accuracy per version, drift per feature, recorded triggers."""

        def collect() -> dict[str, Any]:
            app.flush_predictions()
            return {
                "versions": monitor.live_accuracy(app.deps, app.registry),
                "accuracy_over_time": monitor.accuracy_series(app.deps),
                "drift": monitor.drift(app.deps, app.registry, app.monitor),
                "triggers": monitor.triggers(app.deps)[:50],
                "config": monitor.config_dict(app.monitor),
            }

        return json_response(await asyncio.to_thread(collect))

    @api.post("/monitoring/check", dependencies=[ctx.admin_dependency()])
    async def monitoring_check() -> Response:
        """Run the automatic triggers now (they also run every MONITOR_EVERY seconds)."""

        def run() -> dict[str, list[str]]:
            app.flush_predictions()
            checked = monitor.check(app.deps, app.registry, app.monitor)
            for e in checked.events:
                messagebus.publish(e, app.deps)
            return monitor.check_answer(checked)

        return json_response(await asyncio.to_thread(run))

    return api
