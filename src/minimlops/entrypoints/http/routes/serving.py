"""Serving: /predict (for the OpenAPI document and a test client; the
running server answers it in ``FastPredict``), /explain, /healthz, and the
serving counters (/metrics, /stats/serving)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

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
from minimlops.errors import ArtifactIntegrityError, DerivedFeatureError, ModelNotFoundError
from minimlops.services.explain import MAX_ROWS as EXPLAIN_ROWS
from minimlops.services.explain import Explainer


def router(ctx: Context) -> APIRouter:
    api, app, noun = APIRouter(), ctx.app, ctx.noun
    one_or_many = body_schema({"oneOf": [ref(noun), {"type": "array", "items": ref(noun)}]})

    @api.post(
        "/predict",
        openapi_extra={"requestBody": one_or_many},
        tags=["serving"],
        summary=f"Predict {ctx.target} for one {noun.lower()} or a list of them",
    )
    async def predict(request: Request) -> Response:
        if (refused := ctx.keyed(request)) is not None:
            return refused
        status, body = await ctx.answer_predict(
            await request.body(), request.headers.get("content-type", "")
        )
        return Response(body, status, media_type="application/json")

    explainer = Explainer(app.predictor.registry.load, app.deps.project)  # loads nothing yet
    # explanations on a thread of their own: a few clients explaining 100-row
    # batches of a forest (~1 s each) wait for each other, never for the
    # default pool's threads that /status, /feedback and /query share
    explaining = ThreadPoolExecutor(max_workers=1, thread_name_prefix="explain")

    @api.post(
        "/explain",
        tags=["serving"],
        openapi_extra={"requestBody": one_or_many},
        summary=f"Attributions of {ctx.target} for one {noun.lower()} or a list of them "
        f"(at most {EXPLAIN_ROWS})",
    )
    async def explain(request: Request) -> Response:
        """Shapley attributions per input column that add up, with the base
        value, to the raw output (log-odds, class score, value; before
        calibration). Not logged."""
        if (refused := ctx.keyed(request)) is not None:
            return refused
        body = await request.body()
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return problem(400, f"invalid JSON: {exc}")
        batch = isinstance(data, list)
        if batch and len(data) > EXPLAIN_ROWS:
            return problem(
                413, f"batch of {len(data)} rows exceeds the explanation limit of {EXPLAIN_ROWS}"
            )
        if batch and not data:
            return problem(422, f"empty list: send at least one {noun.lower()}")
        try:
            rows = (
                ctx.shapes.many.validate_python(data)
                if batch
                else [ctx.shapes.one.validate_python(data)]
            )
        except ValidationError as exc:
            return problem(
                422,
                f"invalid {noun.lower()}",
                errors=field_errors(exc, batch, data, (*ctx.shapes.fields, ctx.shapes.target)),
            )
        warned = ctx.shapes.warnings(body, rows)
        current = app.predictor.current
        if current is None:
            return problem(503, "no model to serve yet")
        try:  # the first explanation of a version loads its native model (~1 s)
            found = await asyncio.get_running_loop().run_in_executor(
                explaining, explainer.explain, current[0], current[1], rows
            )
        except DerivedFeatureError as exc:
            where = {"index": exc.where} if batch and exc.where is not None else {}
            return problem(
                422,
                f"invalid {noun.lower()}",
                errors=[{"field": exc.feature, **where, "message": str(exc)}],
            )
        except (ArtifactIntegrityError, ModelNotFoundError) as exc:
            return problem(503, f"version {current[0]} cannot be explained: {exc}")
        except ImportError as exc:  # a forest without shap installed: says what to install
            return problem(501, str(exc))
        extra = {"warnings": warned} if warned else {}
        if batch:
            return json_response({"explanations": found, "model_version": current[0], **extra})
        return json_response({**found[0], "model_version": current[0], **extra})

    @api.get("/healthz", tags=["operations"])
    async def healthz() -> Response:
        version, error = app.predictor.version, app.predictor.error
        body = {
            "status": "ok" if version else "unavailable",
            "model_version": version,
            "error": error,
            "serving_processes": 1 + ctx.peer_count(),
        }
        if version is None:
            body["reason"] = error or "no champion model loaded yet"
        return json_response(body, 200 if version else 503)

    @api.get("/metrics", tags=["operations"], include_in_schema=True)
    async def metrics() -> Response:
        others = await asyncio.to_thread(ctx.peers)
        logs = [
            {
                "batches": app.log.batches,
                "rows": app.log.rows,
                "write_seconds": app.log.write_seconds,
            },
            *(o["log"] for o in others),
        ]
        lines = [
            "# TYPE minimlops_prediction_log_batches_total counter",
            f"minimlops_prediction_log_batches_total {sum(g['batches'] for g in logs)}",
            "# TYPE minimlops_prediction_log_rows_total counter",
            f"minimlops_prediction_log_rows_total {sum(g['rows'] for g in logs)}",
            "# TYPE minimlops_prediction_log_write_seconds_total counter",
            "minimlops_prediction_log_write_seconds_total "
            f"{sum(g['write_seconds'] for g in logs):.6f}",
        ]
        lines += ctx.stats.merged(o["stats"] for o in others).prometheus()
        # per process: how the kernel spread the connections over them
        lines += [
            "# TYPE minimlops_process_requests_total counter",
            f'minimlops_process_requests_total{{process="server",kind="predict"}} '
            f"{ctx.stats.requests}",
        ]
        for o in others:
            lines += [
                f'minimlops_process_requests_total{{process="{o["name"]}",kind="predict"}} '
                f"{o['stats']['requests']}",
                f'minimlops_process_requests_total{{process="{o["name"]}",kind="forwarded"}} '
                f"{o['forwarded']}",
            ]
        return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    @api.get("/stats/serving", tags=["operations"])
    async def serving_stats() -> Response:
        """Per minute (every serving process): requests, predictions, p50/p99 latency."""
        every = ctx.stats.merged(o["stats"] for o in await asyncio.to_thread(ctx.peers))
        return json_response(
            {"minutes": every.series(), "requests": every.requests, "predictions": every.rows}
        )

    return api
