"""Who may call what: admin endpoints same-origin only, CORS for the public API,
an optional API key for the prediction endpoints. Comparisons are constant-time
and no credential is ever logged.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from typing import Any

from starlette.middleware.cors import CORSMiddleware

ADMIN = re.compile(r"^/(models/[^/]+/promote|models/rollback|train|query|monitoring/check)$")
KEYED = ("/predict", "/explain", "/feedback")  # MINIMLOPS_API_KEY guards these


def is_admin(path: str) -> bool:
    return bool(ADMIN.match(path))


def same_origin(origin: bytes | None, host: bytes | None) -> bool:
    if origin is None:
        return True
    return host is not None and origin.split(b"://", 1)[-1] == host


def key_matches(given: str | None, expected: str | None) -> bool:
    """True when no key is configured, or the given one equals it."""
    if not expected:
        return True
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def allow_origin(origin: bytes, origins: Sequence[str]) -> bytes | None:
    """The Access-Control-Allow-Origin value for a request's Origin, if allowed."""
    if "*" in origins:
        return b"*"
    text = origin.decode("latin-1")
    return origin if text in origins else None


class PublicCORS:
    """CORS on the public API; admin endpoints refuse every cross-origin request
    (preflight included), so a web page elsewhere can never drive them."""

    def __init__(self, app: Any, origins: Sequence[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(app, allow_origins=list(origins), allow_credentials=False,
                                   allow_methods=["GET", "POST"],
                                   allow_headers=["Content-Type", "X-API-Key"])  # fmt: skip

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not is_admin(scope["path"]):
            await self.cors(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if not same_origin(headers.get(b"origin"), headers.get(b"host")):
            body = b'{"detail":"admin endpoints do not answer cross-origin requests"}'
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
