"""Extra serving processes: POST /predict on more than one core.

One Python process answers at most ~15,000 single-passenger requests a second
on one core of these machines: the event loop and the model call share one
interpreter. With ``MINIMLOPS_SERVING_PROCESSES=N``, ``minimlops up`` starts, beside the server,
``serving_processes - 1`` processes that listen on the same address
(``SO_REUSEPORT``: the kernel spreads new connections over the listening
sockets). Each holds the champion model, answers ``POST /predict`` itself with
the server's own code (``predict_answerer``) and logs its rows to its own
journal directory through its own journal process (durable before the
answer, like the server's), which the
server imports into ``predictions_data``. Every other request is forwarded to
the server on a private loopback port, so a connection can carry any request
whichever process accepted it.

The server is the only process that opens DuckDB and the bus. It tells each
serving process over a pipe to load a new champion before it swaps itself, so
once the server serves a version (``/healthz``), every process does. It asks
them for their counters for ``/metrics`` and ``/stats/serving``. A serving
process that dies is started again; one whose server dies is killed with it
(``PR_SET_PDEATHSIG``) and its pipe closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
from collections.abc import Generator
from multiprocessing.connection import Connection
from typing import Any

import uvicorn

from minimlops.config import Settings
from minimlops.errors import MinimlopsError

logger = logging.getLogger(__name__)
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
              b"transfer-encoding", b"upgrade"}  # fmt: skip
READY_TIMEOUT = 60.0
ANSWER_TIMEOUT = 10.0


def listen(host: str, port: int, *, shared: bool = False, join: bool = False) -> socket.socket:
    """A listening socket. The server's: a plain bind first makes sure nothing
    else listens there (another server would otherwise share the port
    silently) and picks the port when ``port`` is 0; with ``shared`` other
    processes may then listen on the same address. A serving process's
    (``join``): bound beside the server's."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if join:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise MinimlopsError(f"cannot listen on {host}:{port}: {exc.strerror} (another server "
                             "there? choose another with --port or MINIMLOPS_PORT)") from None
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


class _Child:
    """One serving process as the server sees it."""

    def __init__(self, name: str, process: Any, conn: Connection) -> None:
        self.name, self.process, self.conn = name, process, conn
        self.lock = threading.Lock()  # one question at a time on the pipe
        self.asked = 0

    def ask(self, kind: str, timeout: float = ANSWER_TIMEOUT) -> Any:
        """Ask and wait for the answer. Questions are numbered: the late answer
        to a question that timed out is dropped, never taken for the next one's."""
        with self.lock:
            self.asked += 1
            self.conn.send((self.asked, kind))
            deadline = time.monotonic() + timeout
            while self.conn.poll(max(0.0, deadline - time.monotonic())):
                number, answer = self.conn.recv()
                if number == self.asked:
                    return answer
            raise TimeoutError(f"serving process {self.name} did not answer {kind!r}")


class ServingProcesses:
    """The server's side: start, refresh, ask, restart and stop its serving processes."""

    def __init__(self, settings: Settings, count: int, address: tuple[str, int],
                 primary_url: str) -> None:  # fmt: skip
        self.settings, self.count = settings, count
        self.address, self.primary_url = address, primary_url
        self.children: dict[str, _Child] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start them in the background; the server answers everything meanwhile."""
        self._thread = threading.Thread(target=self._supervise, name="serving-processes",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def _spawn(self, name: str) -> _Child | None:
        ctx = mp.get_context("spawn")
        ours, theirs = ctx.Pipe()
        process = ctx.Process(target=_serve, name=f"minimlops-{name}", daemon=True,
                              args=(theirs, self.settings, name, self.address,
                                    self.primary_url, logging.getLogger().level))  # fmt: skip
        process.start()
        theirs.close()
        child = _Child(name, process, ours)
        try:
            if not ours.poll(READY_TIMEOUT):
                raise TimeoutError(f"not ready after {READY_TIMEOUT:.0f} s")
            ready = ours.recv()
        except (OSError, EOFError, TimeoutError) as exc:
            logger.error("serving process %s failed to start: %s", name, exc)
            process.kill()
            process.join()
            return None
        logger.info("serving process %s (pid %d) answers /predict with model version %s",
                    name, process.pid, ready.get("version"))  # fmt: skip
        return child

    def _supervise(self) -> None:
        names = [f"serving-{i}" for i in range(1, self.count)]
        backoff = 1.0
        while not self._stopping.is_set():
            for name in names:
                child = self.children.get(name)
                if child is not None and child.process.is_alive():
                    continue
                if child is not None:
                    logger.error("serving process %s exited (code %s); starting it again",
                                 name, child.process.exitcode)  # fmt: skip
                    with self._lock:
                        del self.children[name]
                started = self._spawn(name)
                if started is None:
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                backoff = 1.0
                with self._lock:
                    if self._stopping.is_set():  # stop() ran while it started
                        started.process.kill()
                        continue
                    self.children[name] = started
            self._stopping.wait(0.5)

    def _each(self) -> list[_Child]:
        with self._lock:
            return list(self.children.values())

    def refresh(self, version: str) -> None:
        """Make every serving process serve the champion (called before the
        server swaps to ``version``); one that cannot is logged, not waited for."""
        for child in self._each():
            try:
                served = child.ask("refresh")
            except (OSError, EOFError, TimeoutError) as exc:
                logger.error("serving process %s: refresh failed: %s", child.name, exc)
                continue
            if served != version:
                logger.error("serving process %s serves %s, not %s", child.name, served, version)

    def live(self) -> int:
        """How many serving processes answer now (the server not counted)."""
        return sum(1 for child in self._each() if child.process.is_alive())

    def counters(self) -> list[dict[str, Any]]:
        """Each live serving process's statistics and prediction-log counters."""
        out = []
        for child in self._each():
            with contextlib.suppress(OSError, EOFError, TimeoutError):
                out.append(child.ask("counters"))
        return out

    def stop(self, timeout: float = 15.0) -> None:
        """Stop them: each finishes its requests and its prediction log first."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        for child in self._each():
            with contextlib.suppress(OSError, EOFError, TimeoutError):
                child.ask("stop")
        deadline = time.monotonic() + timeout
        for child in self._each():
            child.process.join(max(0.0, deadline - time.monotonic()))
            if child.process.is_alive():
                logger.error("serving process %s did not stop; killing it", child.name)
                child.process.kill()
                child.process.join()
        self.children.clear()


# --- the serving process itself ---------------------------------------------


def _serve(conn: Connection, settings: Settings, name: str, address: tuple[str, int],
           primary_url: str, log_level: int) -> None:  # fmt: skip
    """A serving process: answer /predict, forward the rest, obey the pipe."""
    from minimlops.bootstrap import build_serving
    from minimlops.entrypoints.coalesce import CoalescingHttpTools
    from minimlops.entrypoints.fastpath import FastPredict, predict_answerer
    from minimlops.entrypoints.stats import ServingStats
    from minimlops.process import die_with_parent, freeze_long_lived, limit_malloc_arenas

    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the server stops us
    limit_malloc_arenas()
    logging.basicConfig(level=log_level, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    part = build_serving(settings, name)
    part.predictor.refresh()
    stats = ServingStats()
    from minimlops.entrypoints.schemas import request_models

    answer = predict_answerer(part.predictor, part.log, stats,
                              request_models(part.predictor.project),
                              max_body=settings.max_body_bytes, max_batch=settings.max_batch)  # fmt: skip
    key = settings.api_key.get_secret_value() if settings.api_key else None
    forward = Forward(primary_url, part.log)
    front = FastPredict(forward, answer, settings.max_body_bytes, origins=settings.origins,
                        api_key=key)  # fmt: skip
    sock = listen(*address, join=True)
    config = uvicorn.Config(front, log_level="warning", access_log=False, lifespan="on",
                            http=CoalescingHttpTools, proxy_headers=False, server_header=False,
                            timeout_keep_alive=75)  # fmt: skip
    server = _Quiet(config)

    def counters() -> dict[str, Any]:
        log = part.log
        return {"name": name, "stats": stats.snapshot(), "forwarded": forward.forwarded, "log": {
            "batches": log.batches, "rows": log.rows, "write_seconds": log.write_seconds}}

    def answer(kind: str, loop: asyncio.AbstractEventLoop) -> Any:
        if kind == "refresh":
            return part.predictor.follow()
        if kind == "counters":  # read on the event loop, which writes them
            async def read() -> dict[str, Any]:
                return counters()

            return asyncio.run_coroutine_threadsafe(read(), loop).result(ANSWER_TIMEOUT)
        if kind == "stop":
            server.should_exit = True
            return "stopping"
        raise ValueError(f"unknown question {kind!r}")

    def obey(loop: asyncio.AbstractEventLoop) -> None:
        """Answer the server's questions until it says stop or goes away."""
        while True:
            try:
                number, kind = conn.recv() if conn.poll(1.0) else (0, "tick")
            except (EOFError, OSError):
                server.should_exit = True
                return
            if kind == "tick":  # also catch what a missed message would have said
                try:
                    part.predictor.follow()
                except Exception:
                    logger.exception("%s: checking the champion failed", name)
                continue
            try:
                reply = answer(kind, loop)
            except Exception:  # answered (None), logged; the process goes on serving
                logger.exception("%s: %s failed", name, kind)
                reply = None
            conn.send((number, reply))
            if kind == "stop":
                return

    def on_ready() -> None:
        freeze_long_lived()
        conn.send({"version": part.predictor.version, "pid": os.getpid()})
        threading.Thread(target=obey, args=(asyncio.get_running_loop(),), name="control",
                         daemon=True).start()  # fmt: skip

    forward.on_ready = on_ready
    server.run(sockets=[sock])


class _Quiet(uvicorn.Server):
    """uvicorn without signal handlers: the server stops this process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


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
                    limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))
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
        request = self.client.build_request(scope["method"], path, headers=headers,
                                            content=body())  # fmt: skip
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            payload = b'{"detail":"the server behind this serving process is unavailable"}'
            logger.error("forwarding %s %s failed: %s", scope["method"], scope["path"], exc)
            await send({"type": "http.response.start", "status": 502, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})
            return
        try:
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": [(k.lower(), v) for k, v in response.headers.raw
                                    if k.lower() not in HOP_BY_HOP]})  # fmt: skip
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

