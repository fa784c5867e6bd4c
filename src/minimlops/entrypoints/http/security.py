"""Who may call what: admin endpoints same-origin only, CORS for the public API,
an optional API key for the prediction endpoints, and with
``MINIMLOPS_PUBLIC_ROUTES`` a credential on every route not listed.
Comparisons are constant-time and no credential is ever logged or echoed.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.middleware.cors import CORSMiddleware

from minimlops.config import ConfigError

ADMIN = re.compile(r"^/(models/[^/]+/promote|models/rollback|train|query|monitoring/check)$")
KEYED = ("/predict", "/explain", "/feedback")  # MINIMLOPS_API_KEY guards these
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


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
        self.cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_credentials=False,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key"],
        )

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
            await send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class Access:
    """``MINIMLOPS_PUBLIC_ROUTES``, parsed once: the routes anyone may call.

    Off (the setting unset): nothing changes, admin routes need the admin
    token and ``MINIMLOPS_API_KEY`` guards ``KEYED``. On: a request whose
    method and path are listed needs no credential (a listed ``POST /predict``
    is public even with an API key set); admin routes still need the admin
    token; every other request needs a valid ``X-API-Key`` or admin token.

    An entry is ``METHOD /path``; the path matches exactly, except that a
    trailing ``*`` matches every path under a prefix, so the pages' scripts
    and styles can be public with ``GET /static/*`` (a path with a ``..``
    segment never matches a prefix). Admin routes cannot be listed.
    """

    on: bool = False
    routes: frozenset[tuple[str, str]] = frozenset()
    prefixes: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> Access:
        """The setting's value (None: off). Raises ConfigError naming it."""
        if text is None:
            return cls()
        routes, prefixes = set(), []
        for entry in (e.strip() for e in text.split(",")):
            if not entry:
                continue
            parts = entry.split()
            if len(parts) != 2 or not parts[1].startswith("/"):
                raise _refused(entry, "is not 'METHOD /path' (e.g. 'POST /predict,GET /healthz')")
            method, path = parts[0].upper(), parts[1]
            if method not in METHODS:
                raise _refused(entry, f"has an unknown method; one of {', '.join(sorted(METHODS))}")
            if "*" in path[:-1]:
                raise _refused(entry, "may have '*' only at the end of its path (a prefix)")
            if is_admin(path):
                raise _refused(entry, "is an admin route: it always needs the admin token")
            if path.endswith("*"):
                prefixes.append((method, path[:-1]))
            else:
                routes.add((method, path))
        return cls(True, frozenset(routes), tuple(prefixes))

    def public(self, method: str, path: str) -> bool:
        """Anyone may call this route (always False when off)."""
        if (method, path) in self.routes:
            return True
        return any(
            method == m and path.startswith(p) and "/.." not in path for m, p in self.prefixes
        )


def _refused(entry: str, why: str) -> ConfigError:
    return ConfigError(f"invalid setting: MINIMLOPS_PUBLIC_ROUTES: {entry!r} {why}")


class Credentials:
    """The API key and the admin tokens a request may carry; ``admin_tokens``
    is read at each request (the local token is added once the server listens)."""

    def __init__(self, api_key: str | None, admin_tokens: Sequence[str]) -> None:
        self.key = api_key.encode() if api_key else None
        self.admin_tokens = admin_tokens
        wanted = ["an admin token (Authorization: Bearer <token>)"]
        if self.key is not None:
            wanted.insert(0, "a valid X-API-Key header")
        self.refusal = b'{"detail":"this route needs %s"}' % " or ".join(wanted).encode()

    def given(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        """A valid X-API-Key or admin bearer token is among these headers."""
        for name, value in headers:
            if name == b"x-api-key" and self.key is not None:
                if hmac.compare_digest(value, self.key):
                    return True
            elif name == b"authorization" and value[:7].lower() == b"bearer ":
                token = value[7:].strip()
                if any(
                    t and hmac.compare_digest(token, t.encode()) for t in list(self.admin_tokens)
                ):
                    return True
        return False


class RequireCredential:
    """ASGI, with ``MINIMLOPS_PUBLIC_ROUTES`` on: listed routes pass, admin
    routes go on to their own token check, any other request without a valid
    API key or admin token gets a 401 saying which header to send. Placed
    inside the CORS layer, so a page elsewhere can read the 401."""

    def __init__(self, app: Any, access: Access, credentials: Credentials) -> None:
        self.app, self.access, self.credentials = app, access, credentials

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or self.access.public(scope["method"], scope["path"])
            or is_admin(scope["path"])
            or self.credentials.given(scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        body = self.credentials.refusal
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
