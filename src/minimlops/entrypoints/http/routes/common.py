"""What every route module shares: the context of one app, JSON answers,
the API key and admin checks."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import Depends, HTTPException, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from minimlops.bootstrap import App
from minimlops.entrypoints.http.fastpath import Answer
from minimlops.entrypoints.http.request_models import RequestModels
from minimlops.entrypoints.http.security import key_matches
from minimlops.entrypoints.http.stats import ServingStats

_bearer = HTTPBearer(auto_error=False)
WEB = Path(__file__).resolve().parents[3] / "web"  # the pages and their scripts


def body_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI request body of JSON with this schema."""
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body, default=str), status, media_type="application/json")


def problem(status: int, detail: str, **extra: Any) -> Response:
    return json_response({"detail": detail, **extra}, status)


@dataclass
class Context:
    """One running app as its routes see it."""

    app: App
    stats: ServingStats
    shapes: RequestModels  # the project's request models
    answer_predict: Answer
    admin_tokens: Sequence[str]
    peers: Callable[[], list[dict[str, Any]]]  # the other serving processes' counters
    peer_count: Callable[[], int]
    api_key: str | None  # X-API-Key for the public endpoints, if set

    @property
    def noun(self) -> str:
        return self.shapes.name

    @property
    def target(self) -> str:
        return self.app.deps.project.target

    def keyed(self, request: Request) -> Response | None:
        """None when the request may pass the API key check, else the 401."""
        if key_matches(request.headers.get("x-api-key"), self.api_key):
            return None
        return problem(401, "a valid X-API-Key header is required")

    def admin_dependency(self) -> Any:
        """A FastAPI dependency: a valid admin bearer token, or 401/403."""
        tokens = self.admin_tokens  # filled on listen: read at each request

        def require_admin(
            cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        ) -> None:
            if not tokens:
                raise HTTPException(403, "admin endpoints are off: set MINIMLOPS_ADMIN_TOKEN")
            given = (cred.credentials if cred else "").encode()
            if not any(hmac.compare_digest(given, t.encode()) for t in list(tokens)):
                raise HTTPException(
                    401,
                    "a valid admin bearer token is required",
                    headers={"WWW-Authenticate": "Bearer"},
                )

        return Depends(require_admin)
