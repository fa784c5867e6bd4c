"""Forward: what an extra serving process does not answer itself (anything
but ``POST /predict``) goes to the server on its private loopback port,
streamed both ways, so a connection can carry any request whichever process
accepted it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger(__name__)
HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
}


class Forward:
    """ASGI: every request this process does not answer itself goes to the
    server, streamed both ways; the lifespan runs this process's prediction log."""

    def __init__(self, primary_url: str, log: Any) -> None:
        self.primary_url, self.log = primary_url, log
        self.forwarded = 0  # requests handed to the server
        self.client: Any = None
        self.on_ready: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._forward(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        import httpx

        task = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.client = httpx.AsyncClient(
                    base_url=self.primary_url,
                    timeout=httpx.Timeout(None, connect=5.0),  # admin actions may take long
                    limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
                )
                task = asyncio.create_task(self.log.run())
                await send({"type": "lifespan.startup.complete"})
                if self.on_ready is not None:
                    asyncio.get_running_loop().call_soon(self.on_ready)
            elif message["type"] == "lifespan.shutdown":
                if task is not None:
                    task.cancel()  # the log writes what is pending, then stops
                    await asyncio.gather(task, return_exceptions=True)
                await self.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _forward(self, scope: Any, receive: Any, send: Any) -> None:
        import httpx

        async def body() -> Any:
            while True:
                message = await receive()
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        self.forwarded += 1
        path = scope["raw_path"].decode("latin-1") if scope.get("raw_path") else scope["path"]
        if scope["query_string"]:
            path += "?" + scope["query_string"].decode("latin-1")
        headers = [(k, v) for k, v in scope["headers"] if k not in HOP_BY_HOP]
        request = self.client.build_request(scope["method"], path, headers=headers, content=body())
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            payload = b'{"detail":"the server behind this serving process is unavailable"}'
            logger.error("forwarding %s %s failed: %s", scope["method"], scope["path"], exc)
            await send(
                {
                    "type": "http.response.start",
                    "status": 502,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(payload)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (k.lower(), v)
                        for k, v in response.headers.raw
                        if k.lower() not in HOP_BY_HOP
                    ],
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()
