"""predictions_endpoint and the admin API: an ASGI app over one built App.

``/predict`` reads the body itself (orjson + pydantic) instead of going through
FastAPI's body injection: same validation and messages, a third of the cost.
Domain errors become HTTP codes here and nowhere else.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from minimlops import __version__
from minimlops.bootstrap import App
from minimlops.entrypoints.fastpath import field_errors, predict_answerer
from minimlops.entrypoints.schemas import (
    PromoteRequest,
    QueryRequest,
    TrainRequest,
    request_models,
)
from minimlops.entrypoints.security import key_matches
from minimlops.entrypoints.stats import ServingStats
from minimlops.errors import ConflictError, DerivedFeatureError, ModelNotFoundError, QueryError
from minimlops.services import admin, messagebus, monitor
from minimlops.services.explain import explain as explain_passenger

logger = logging.getLogger(__name__)
WEB = Path(__file__).resolve().parent.parent / "web"
_bearer = HTTPBearer(auto_error=False)
def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body, default=str), status, media_type="application/json")


def _problem(status: int, detail: str, **extra: Any) -> Response:
    return _json({"detail": detail, **extra}, status)


def create_app(app: App, *, admin_tokens: Sequence[str] = (), lifespan_tasks: bool = True,
               peers: Callable[[], list[dict[str, Any]]] = list,
               peer_count: Callable[[], int] = int) -> FastAPI:  # fmt: skip
    """The HTTP API of a running minimlops.

    Args:
        app: the built application (backend, predictor, prediction log).
        admin_tokens: bearer tokens accepted for admin endpoints; with none,
            admin endpoints answer 403 (off, not open).
        lifespan_tasks: run the prediction log's flusher with the server.
        peers: the other serving processes' counters (``/metrics`` and
            ``/stats/serving`` report all of them), each ``{"stats", "log"}``;
        peer_count: how many of them serve (``/healthz``, without asking them).
    """
    s = app.settings
    stats = ServingStats()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(app.log.run()) if lifespan_tasks else None
        await asyncio.to_thread(app.predictor.refresh)
        yield
        if task:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    api = FastAPI(title="minimlops", version=__version__, lifespan=lifespan,
                  description="Predictions, models and pipeline status.")  # fmt: skip
    api_key = s.api_key.get_secret_value() if s.api_key else None

    def keyed(request: Request) -> Response | None:
        if key_matches(request.headers.get("x-api-key"), api_key):
            return None
        return _problem(401, "a valid X-API-Key header is required")

    def require_admin(
        cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if not admin_tokens:
            raise HTTPException(403, "admin endpoints are off: set MINIMLOPS_ADMIN_TOKEN")
        given = (cred.credentials if cred else "").encode()
        if not any(hmac.compare_digest(given, t.encode()) for t in list(admin_tokens)):
            raise HTTPException(401, "a valid admin bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip

    shapes = request_models(app.deps.project)
    noun, target = shapes.name, app.deps.project.target
    answer_predict = predict_answerer(app.predictor, app.log, stats, shapes,
                                      max_body=s.max_body_bytes, max_batch=s.max_batch)  # fmt: skip
    one_or_many = _body({"oneOf": [_ref(noun), {"type": "array", "items": _ref(noun)}]})

    @api.post("/predict", openapi_extra={"requestBody": one_or_many}, tags=["serving"],
              summary=f"Predict {target} for one {noun.lower()} or a list of them")  # fmt: skip
    async def predict(request: Request) -> Response:
        # Served by FastPredict in front of this app; kept for the OpenAPI
        # document and for use without the front (e.g. a test client).
        if (refused := keyed(request)) is not None:
            return refused
        status, body = await answer_predict(await request.body(),
                                            request.headers.get("content-type", ""))  # fmt: skip
        return Response(body, status, media_type="application/json")

    @api.get("/metrics", tags=["operations"], include_in_schema=True)
    async def metrics() -> Response:
        others = await asyncio.to_thread(peers)
        logs = [{"batches": app.log.batches, "rows": app.log.rows,
                 "write_seconds": app.log.write_seconds}, *(o["log"] for o in others)]  # fmt: skip
        lines = [
            "# TYPE minimlops_prediction_log_batches_total counter",
            f"minimlops_prediction_log_batches_total {sum(g['batches'] for g in logs)}",
            "# TYPE minimlops_prediction_log_rows_total counter",
            f"minimlops_prediction_log_rows_total {sum(g['rows'] for g in logs)}",
            "# TYPE minimlops_prediction_log_write_seconds_total counter",
            "minimlops_prediction_log_write_seconds_total "
            f"{sum(g['write_seconds'] for g in logs):.6f}",
        ]
        lines += stats.merged(o["stats"] for o in others).prometheus()
        # per process: how the kernel spread the connections over them
        lines += ["# TYPE minimlops_process_requests_total counter",
                  f'minimlops_process_requests_total{{process="server",kind="predict"}} {stats.requests}']
        for o in others:
            lines += [f'minimlops_process_requests_total{{process="{o["name"]}",kind="predict"}} '
                      f'{o["stats"]["requests"]}',
                      f'minimlops_process_requests_total{{process="{o["name"]}",kind="forwarded"}} '
                      f'{o["forwarded"]}']  # fmt: skip
        return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    @api.post("/explain", tags=["serving"], openapi_extra={"requestBody": _body(_ref(noun))})
    async def explain(request: Request) -> Response:
        """How each input moved this row's answer (not logged)."""
        if (refused := keyed(request)) is not None:
            return refused
        try:
            person = shapes.one.validate_json(await request.body())
        except ValidationError as exc:
            return _problem(422, f"invalid {noun.lower()}", errors=field_errors(exc, False))
        current = app.predictor.current
        if current is None:
            return _problem(503, "no model to serve yet")
        try:
            result = explain_passenger(current[1], person, app.deps.project)
        except DerivedFeatureError as exc:
            return _problem(422, f"invalid {noun.lower()}", errors=[
                {"field": exc.feature, "message": str(exc)}])  # fmt: skip
        return _json({**result, "model_version": current[0]})

    @api.get("/project", tags=["models"])
    async def project() -> Response:
        """The data set: columns and rules, key, target, task, and a typical row."""
        return _json(await asyncio.to_thread(admin.project_view, app.deps, app.registry))

    @api.get("/events", tags=["operations"])
    async def events(limit: int = 100) -> Response:
        """The pipeline's timeline, newest first."""
        limit = max(1, min(limit, 1000))
        return _json(await asyncio.to_thread(admin.timeline, app.deps, app.registry, limit))

    @api.get("/ingestions/{ingestion_id}/report", tags=["operations"])
    async def ingestion_report(ingestion_id: str) -> Response:
        """The JSON report of a rejected file or of skipped rows."""
        report = await asyncio.to_thread(admin.ingestion_report, app.deps, ingestion_id)
        if report is None:
            return _problem(404, f"no report for ingestion {ingestion_id!r}")
        return _json(report)

    @api.get("/stats/serving", tags=["operations"])
    async def serving_stats() -> Response:
        """Per minute (every serving process): requests, predictions, p50/p99 latency."""
        every = stats.merged(o["stats"] for o in await asyncio.to_thread(peers))
        return _json({"minutes": every.series(), "requests": every.requests,
                      "predictions": every.rows})  # fmt: skip

    @api.get("/", include_in_schema=False)
    async def page() -> Response:
        return FileResponse(WEB / "index.html")

    @api.get("/dashboard", include_in_schema=False)
    async def dashboard() -> Response:
        return FileResponse(WEB / "dashboard.html")

    api.mount("/static", StaticFiles(directory=WEB), name="static")

    @api.get("/healthz", tags=["operations"])
    async def healthz() -> Response:
        version, error = app.predictor.version, app.predictor.error
        body = {"status": "ok" if version else "unavailable", "model_version": version,
                "error": error, "serving_processes": 1 + peer_count()}  # fmt: skip
        if version is None:
            body["reason"] = error or "no champion model loaded yet"
        return _json(body, 200 if version else 503)

    def models_with_live() -> dict[str, Any]:
        live = {v["version"]: v for v in monitor.live_accuracy(app.deps, app.registry)}
        return admin.list_models(app.registry, live)

    @api.get("/models", tags=["models"])
    async def models() -> Response:
        return _json(await asyncio.to_thread(models_with_live))

    feedback_body = _body({"oneOf": [_ref("Feedback"), {"type": "array",
                                                          "items": _ref("Feedback")}]})

    @api.post("/feedback", tags=["monitoring"], openapi_extra={"requestBody": feedback_body})
    async def feedback(request: Request) -> Response:
        """True labels for earlier predictions: {"uuid", "<target>"} or a list."""
        if (refused := keyed(request)) is not None:
            return refused
        try:
            data = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return _problem(400, f"invalid JSON: {exc}")
        many = isinstance(data, list)
        try:
            body = (shapes.feedbacks if many else shapes.feedback).validate_python(data)
        except ValidationError as exc:
            return _problem(422, "invalid feedback", errors=field_errors(exc, many))
        items = body if many else [body]
        if len(items) > s.max_batch:
            return _problem(413, f"{len(items)} labels exceed the limit of {s.max_batch}")

        def store() -> dict[str, Any]:
            app.flush_predictions()  # a prediction answered a moment ago is known
            return admin.feedback(app.deps, [(i["uuid"], i[target]) for i in items])

        result = await asyncio.to_thread(store)
        return _json(result, 200 if result["accepted"] else 404)

    @api.get("/monitoring", tags=["monitoring"])
    async def monitoring() -> Response:
        """Live accuracy per version, drift per feature, recorded triggers."""
        def collect() -> dict[str, Any]:
            app.flush_predictions()
            return {"versions": monitor.live_accuracy(app.deps, app.registry),
                    "accuracy_over_time": monitor.accuracy_series(app.deps),
                    "drift": monitor.drift(app.deps, app.registry, app.monitor),
                    "triggers": monitor.triggers(app.deps)[:50],
                    "config": monitor.config_dict(app.monitor)}  # fmt: skip

        return _json(await asyncio.to_thread(collect))

    @api.post("/monitoring/check", tags=["monitoring"], dependencies=[Depends(require_admin)])
    async def monitoring_check() -> Response:
        """Run the automatic triggers now (they also run every MONITOR_EVERY seconds)."""
        def run() -> list[str]:
            app.flush_predictions()
            events = monitor.check(app.deps, app.registry, app.monitor)
            for e in events:
                messagebus.publish(e, app.deps)
            return [e.reason for e in events]

        return _json({"triggered": await asyncio.to_thread(run)})

    @api.get("/status", tags=["operations"])
    async def status() -> Response:
        return _json(await asyncio.to_thread(admin.status, app.deps, app.registry,
                                             app.predictor.version))  # fmt: skip

    @api.post("/models/{version}/promote", tags=["models"], dependencies=[Depends(require_admin)])
    async def promote(version: str, body: PromoteRequest | None = None) -> Response:
        reason = body.reason if body else "promoted by a person"
        try:
            pointer = await asyncio.to_thread(admin.promote, app.deps, app.registry, version, reason)
        except ModelNotFoundError as exc:
            return _problem(404, str(exc))
        await asyncio.to_thread(app.predictor.refresh)
        return _json(pointer)

    @api.post("/models/rollback", tags=["models"], dependencies=[Depends(require_admin)])
    async def rollback() -> Response:
        try:
            pointer = await asyncio.to_thread(admin.rollback, app.deps, app.registry)
        except ConflictError as exc:
            return _problem(409, str(exc))
        await asyncio.to_thread(app.predictor.refresh)
        return _json(pointer)

    @api.post("/train", tags=["models"], status_code=202, dependencies=[Depends(require_admin)])
    async def train(body: TrainRequest | None = None) -> Response:
        reason = body.reason if body else "requested by a person"
        message = await asyncio.to_thread(admin.request_training, app.deps, reason)
        return _json({"status": "queued", "message_id": message, "reason": reason}, 202)

    @api.post("/query", tags=["operations"], dependencies=[Depends(require_admin)])
    async def query(body: QueryRequest) -> Response:
        try:
            table = await asyncio.to_thread(app.deps.warehouse.query, body.sql)
        except QueryError as exc:
            return _problem(400, str(exc))
        return _json({"columns": table.column_names, "rows": table.to_pylist()})

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = get_openapi(title=api.title, version=api.version,
                                 description=api.description, routes=api.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components[noun] = shapes.one.json_schema(ref_template="#/components/schemas/{model}")
            components["Feedback"] = shapes.feedback.json_schema(
                ref_template="#/components/schemas/{model}")
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
    api.state.answer_predict = answer_predict
    api.state.stats = stats
    return api
