"""uvicorn's protocol with coalesced writes: a response's head and body leave in one write."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn

from minimlops.entrypoints.runtime.coalesce import CoalescingHttpTools, CoalescingTransport


class RecordingTransport(asyncio.Transport):
    """A transport that keeps what was written, as the socket would have sent it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def answer(scope: dict, receive: Any, send: Any) -> None:
    await receive()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"ok":true}'})


def _serve_one(request: bytes) -> RecordingTransport:
    async def main() -> RecordingTransport:
        config = uvicorn.Config(answer, lifespan="off", log_level="warning")
        config.load()
        protocol = CoalescingHttpTools(
            config, uvicorn.server.ServerState(), {}, _loop=asyncio.get_running_loop()
        )
        transport = RecordingTransport()
        protocol.connection_made(transport)
        protocol.data_received(request)
        for _ in range(20):  # a few turns of the loop: the app runs, the write leaves
            await asyncio.sleep(0)
        return transport

    return asyncio.run(main())


def test_the_head_and_body_of_an_answer_leave_in_one_write() -> None:
    sent = _serve_one(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(sent.writes) == 1, sent.writes
    assert sent.writes[0].startswith(b"HTTP/1.1 200 OK") and sent.writes[0].endswith(b'{"ok":true}')
    assert not sent.closed  # keep-alive


def test_closing_writes_what_was_gathered_first() -> None:
    sent = _serve_one(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert sent.closed and len(sent.writes) == 1 and sent.writes[0].endswith(b'{"ok":true}')


def test_writes_of_different_loop_turns_stay_apart() -> None:
    async def main() -> list[bytes]:
        real = RecordingTransport()
        transport = CoalescingTransport(real, asyncio.get_running_loop())
        transport.write(b"a")
        transport.write(b"b")
        await asyncio.sleep(0)
        transport.write(b"c")
        await asyncio.sleep(0)
        return real.writes

    assert asyncio.run(main()) == [b"ab", b"c"]
