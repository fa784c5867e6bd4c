"""The benchmark floor: a bare ASGI app that parses the JSON body and answers a
constant. Nothing can serve HTTP faster on the same stack; every other server
is measured as a fraction of it."""

from __future__ import annotations

from typing import Any

import orjson

ANSWER = orjson.dumps({"prediction": 0, "probability": 0.1, "uuid": "x", "model_version": "1"})
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI: read the body, parse it, answer the constant."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    orjson.loads(body or b"{}")
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})
