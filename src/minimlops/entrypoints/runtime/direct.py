"""``POST /predict`` answered by the HTTP protocol itself, without ASGI.

uvicorn turns each request into an ASGI cycle: a scope, an event, a task
running the app, receive and send messages, a check of every response header.
For a bare ASGI app that answers a constant, that is three quarters of its
CPU (measured on loopback, 32 connections: uvicorn ~16,000 requests/s, the
same parser and a task per request without the cycle ~52,000); for
``/predict`` it was the largest single part of a request's cost. Here,
a request that is exactly ``POST /predict``, with no request before it still
being answered on its connection, no ``Expect: 100-continue`` and one that
:class:`~minimlops.entrypoints.http.fastpath.FastPredict` takes, is read by
uvicorn's own parser into a small record (:class:`_Direct`) and answered by
``FastPredict.respond`` in one task, its head and body in one write. Every
other request (and those cases) goes through uvicorn's ASGI cycle to the same
``FastPredict``, which gives the same answer: keep-alive, pipelining, flow
control and shutdown stay uvicorn's.

The keep-alive time-out is uvicorn's, kept more cheaply: uvicorn arms a timer
after each response and cancels it when the next request's first bytes
arrive, a timer made and cancelled for every request (a fifth of a bare
answer's CPU at 32 connections, measured). Here the timer is armed once per
idle stretch; when it fires it closes the connection only if nothing came
since the last response for the whole time-out, else it waits out the rest.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from minimlops.entrypoints.http.fastpath import FastPredict
from minimlops.entrypoints.runtime.coalesce import CoalescingHttpTools

logger = logging.getLogger(__name__)
ERROR = (
    b"content-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\nconnection: close\r\n\r\n"
    b"Internal Server Error"
)
_written: list[tuple[Any, bytes]] = [
    (None, b"")
]  # uvicorn's default headers last written, as bytes


class _Direct:
    """A ``POST /predict`` being read and answered here. It stands where
    uvicorn keeps its request cycle (``protocol.cycle``), so uvicorn's parser
    callbacks fill ``body`` and ``more_body``, a lost connection sets
    ``disconnected``, a shutdown clears ``keep_alive``, and a request
    pipelined behind it waits for ``response_complete``; each of those calls
    ``message_event.set()``, which is this record's :meth:`set`. Once
    answered (or the connection lost) it lets go of the protocol, so neither
    waits for the cycle collector."""

    __slots__ = (
        "protocol",
        "headers",
        "body",
        "more_body",
        "started",
        "response_complete",
        "keep_alive",
        "disconnected",
    )

    def __init__(self, protocol: DirectHttpTools, headers: list[Any], keep_alive: bool) -> None:
        self.protocol: DirectHttpTools | None = protocol
        self.headers, self.keep_alive = headers, keep_alive
        self.body = bytearray()
        self.more_body, self.started, self.response_complete, self.disconnected = (
            True,
            False,
            False,
            False,
        )

    @property
    def message_event(self) -> _Direct:
        return self

    def set(self) -> None:
        if self.protocol is not None:
            self.protocol.direct_event(self)


class DirectHttpTools(CoalescingHttpTools):
    """uvicorn's httptools protocol (writes coalesced) answering plain
    ``POST /predict`` requests itself (see the module)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        app = self.app
        # (a concurrency limit or a root path: uvicorn's cycle applies them)
        plain = self.limit_concurrency is None and not self.root_path
        self.front: FastPredict | None = app if isinstance(app, FastPredict) and plain else None
        self.idle_since: float | None = None  # when the last response left; None: a request came

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        super().connection_lost(exc)
        if isinstance(cycle, _Direct):
            cycle.protocol = None
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def _unset_keepalive_if_required(self) -> None:
        """uvicorn calls this when bytes arrive (and after each response):
        the connection is busy, and the timer, if armed, will find it so."""
        self.idle_since = None

    def on_response_complete(self) -> None:
        """uvicorn's, but the keep-alive timer is armed only if none is."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:  # a request that waited behind this one
            cycle, app = self.pipeline.pop()
            self._start(cycle, app)
            return
        self.idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self._keep_alive_due
            )

    def _start(self, cycle: Any, app: Any) -> None:
        """uvicorn's ``_start_asgi_task`` where it has one (later releases:
        it also resets context variables when configured), else what it does."""
        start = getattr(super(), "_start_asgi_task", None)
        if start is not None:
            start(cycle, app)
            return
        task = self.loop.create_task(cycle.run_asgi(app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def _keep_alive_due(self) -> None:
        self.timeout_keep_alive_task = None
        idle = self.idle_since
        if idle is None or self.transport.is_closing():
            return  # a request is being answered: its response arms the timer again
        left = idle + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self.timeout_keep_alive_task = self.loop.call_later(left, self._keep_alive_due)
        else:
            self.timeout_keep_alive_handler()

    def on_headers_complete(self) -> None:
        front, cycle, parser = self.front, self.cycle, self.parser
        if (
            front is None
            or self.url != b"/predict"
            or parser.get_method() != b"POST"
            or self.expect_100_continue
            or parser.should_upgrade()
            or not (cycle is None or cycle.response_complete)
            or self.flow.write_paused  # a client not reading: uvicorn's cycle waits for it
            or not front.takes(self.headers)
        ):
            super().on_headers_complete()
            return
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        self.cycle = _Direct(self, self.headers, keep_alive)  # type: ignore[assignment]

    def direct_event(self, cycle: _Direct) -> None:
        """uvicorn read more of the body, all of it, or lost the connection."""
        if cycle.started or cycle.response_complete:
            return
        front = self.front
        assert front is not None
        if cycle.disconnected:  # nothing to answer, nothing predicted
            cycle.response_complete = True
            return
        too_big = len(cycle.body) > front.max_body
        if cycle.more_body and not too_big:
            self.flow.resume_reading()  # (uvicorn pauses at its high-water mark)
            return
        cycle.started = True
        task = self.loop.create_task(
            self._answer(cycle, front, None if too_big else bytes(cycle.body))
        )
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _answer(self, cycle: _Direct, front: FastPredict, body: bytes | None) -> None:
        cycle.body = bytearray()
        try:
            status, payload, headers = await front.respond(cycle.headers, body)
        except BaseException as exc:  # (cancelled too, as uvicorn's cycle answers it)
            logger.error("Exception answering POST /predict", exc_info=exc)
            self._write(cycle, STATUS_LINE[500] + self._defaults() + ERROR, close=True)
            if not isinstance(exc, Exception):
                raise
            return
        if self.flow.write_paused and not cycle.disconnected:
            await self.flow.drain()  # the client reads what it was sent first
        head = [STATUS_LINE[status], self._defaults()]
        for name, value in headers:
            head += (name, b": ", value, b"\r\n")
        if not cycle.keep_alive:
            head.append(b"connection: close\r\n")
        head += (b"\r\n", payload)
        self._write(cycle, b"".join(head), close=not cycle.keep_alive)

    def _defaults(self) -> bytes:
        """uvicorn's default headers (its date, made anew each second), as written."""
        headers = self.server_state.default_headers
        last = _written[0]
        if last[0] is not headers:
            last = (headers, b"".join(b"%s: %s\r\n" % pair for pair in headers))
            _written[0] = last
        return last[1]

    def _write(self, cycle: _Direct, data: bytes, *, close: bool) -> None:
        cycle.response_complete, cycle.protocol = True, None
        if cycle.disconnected or self.transport.is_closing():
            return
        self.transport.write_now(data)  # type: ignore[attr-defined]
        if close:
            self.transport.close()
        self.on_response_complete()
