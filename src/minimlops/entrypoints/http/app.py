"""predictions_endpoint and the admin API: an ASGI app over one built App.

The routes live in ``entrypoints/http/routes/`` by part (serving, models,
monitoring, operations); this module builds their shared context, runs the
prediction log with the app, and writes the OpenAPI document from the
project's request models. ``/predict`` reads the body itself (pydantic-core
on the raw bytes) instead of going through FastAPI's body injection: same
validation and messages, a third of the cost. Domain errors become HTTP codes
in the routes and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles

from minimlops import __version__
from minimlops.bootstrap import App
from minimlops.entrypoints.http.fastpath import predict_answerer
from minimlops.entrypoints.http.request_models import request_models
from minimlops.entrypoints.http.routes import models, monitoring, operations, serving
from minimlops.entrypoints.http.routes.common import WEB, Context
from minimlops.entrypoints.http.security import Access, Credentials, RequireCredential
from minimlops.entrypoints.http.stats import ServingStats

logger = logging.getLogger(__name__)


def create_app(
    app: App,
    *,
    admin_tokens: Sequence[str] = (),
    lifespan_tasks: bool = True,
    peers: Callable[[], list[dict[str, Any]]] = list,
    peer_count: Callable[[], int] = int,
    access: Access | None = None,
) -> FastAPI:
    """The HTTP API of a running minimlops.

    Args:
        app: the built application (backend, predictor, prediction log).
        admin_tokens: bearer tokens accepted for admin endpoints; with none,
            admin endpoints answer 403 (off, not open). Read at each request,
            so a list filled once the server listens works.
        lifespan_tasks: run the prediction log's flusher with the server.
        peers: the other serving processes' counters (``/metrics`` and
            ``/stats/serving`` report all of them), each ``{"stats", "log"}``;
        peer_count: how many of them serve (``/healthz``, without asking them).
        access: ``MINIMLOPS_PUBLIC_ROUTES`` parsed (default: parsed from the
            settings). When on, :class:`RequireCredential` checks every request
            and the routes' own API key check is off (a listed route is public).
    """
    s = app.settings
    access = Access.parse(s.public_routes) if access is None else access
    key = s.api_key.get_secret_value() if s.api_key else None
    stats = ServingStats()
    shapes = request_models(app.deps.project)
    answer_predict = predict_answerer(
        app.predictor, app.log, stats, shapes, max_body=s.max_body_bytes, max_batch=s.max_batch
    )
    ctx = Context(
        app,
        stats,
        shapes,
        answer_predict,
        admin_tokens,
        peers,
        peer_count,
        None if access.on else key,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(app.log.run()) if lifespan_tasks else None
        await asyncio.to_thread(app.predictor.refresh)
        yield
        if task:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    api = FastAPI(
        title="minimlops",
        version=__version__,
        lifespan=lifespan,
        description="Predictions, models and pipeline status.",
    )
    for part in (serving, models, monitoring, operations):
        api.include_router(part.router(ctx))
    api.mount("/static", StaticFiles(directory=WEB), name="static")
    if access.on:  # inside the CORS layer its callers add: a page elsewhere reads the 401
        api.add_middleware(
            RequireCredential, access=access, credentials=Credentials(key, admin_tokens)
        )

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = get_openapi(
                title=api.title, version=api.version, description=api.description, routes=api.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            ref_template = "#/components/schemas/{model}"
            components[shapes.name] = shapes.one.json_schema(ref_template=ref_template)
            components["Feedback"] = shapes.feedback.json_schema(ref_template=ref_template)
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
    api.state.answer_predict = answer_predict
    api.state.stats = stats
    return api
