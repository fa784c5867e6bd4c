"""FastPredict: ``POST /predict`` answered by a bare ASGI handler.

The FastAPI app behind it wraps every request in seven middlewares and a
router; on a request whose real work (validation, model, log) costs tens of
microseconds, that wrapping is most of the cost. This front handles exactly
``POST /predict`` itself, with the same code (``answer_predict``) and the same
CORS answer, and hands everything else (preflight included) to the app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from minimlops.entrypoints.security import allow_origin, key_matches

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Answer = Callable[[bytes, str], Awaitable[tuple[int, bytes]]]
JSON = (b"content-type", b"application/json")


class FastPredict:
    """ASGI app: POST /predict here, everything else to ``app``."""

    def __init__(self, app: Any, answer: Answer, max_body: int, *,
                 origins: Sequence[str] = ("*",), api_key: str | None = None) -> None:  # fmt: skip
        self.app, self.answer, self.max_body = app, answer, max_body
        self.origins, self.api_key = tuple(origins), api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        ctype, origin, key = "", None, None
        for name, value in scope["headers"]:
            if name == b"content-type":
                ctype = value.decode("latin-1")
            elif name == b"origin":
                origin = value
            elif name == b"x-api-key":
                key = value.decode("latin-1")
        body = await self._body(receive)
        if not key_matches(key, self.api_key):
            status, payload = 401, b'{"detail":"a valid X-API-Key header is required"}'
        elif body is None:
            status, payload = 413, b'{"detail":"body larger than %d bytes"}' % self.max_body
        else:
            status, payload = await self.answer(body, ctype)
        headers = [JSON, (b"content-length", str(len(payload)).encode())]
        allowed = allow_origin(origin, self.origins) if origin is not None else None
        if allowed is not None:
            headers.append((b"access-control-allow-origin", allowed))
            if allowed != b"*":
                headers.append((b"vary", b"Origin"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _body(self, receive: Receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None  # stop reading: never buffer more than the limit
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
