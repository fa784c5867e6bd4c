"""One extra serving process (``MINIMLOPS_SERVING_PROCESSES``): it answers
``POST /predict`` with the server's own code, logs through its own journal
process, forwards every other request to the server, and obeys the server's
questions on a pipe (load the new champion, counters, stop). Started and
supervised by :class:`minimlops.entrypoints.runtime.workers.ServingProcesses`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Generator
from multiprocessing.connection import Connection
from typing import Any

import uvicorn

from minimlops.config import Settings
from minimlops.entrypoints.runtime.forward import Forward
from minimlops.entrypoints.runtime.sockets import listen

logger = logging.getLogger(__name__)
ANSWER_TIMEOUT = 10.0


def serve_process(
    conn: Connection,
    settings: Settings,
    name: str,
    address: tuple[str, int],
    primary_url: str,
    log_level: int,
) -> None:
    """A serving process: answer /predict, forward the rest, obey the pipe."""
    from minimlops.bootstrap import build_serving
    from minimlops.entrypoints.http.fastpath import FastPredict, predict_answerer
    from minimlops.entrypoints.http.stats import ServingStats
    from minimlops.entrypoints.runtime.direct import DirectHttpTools
    from minimlops.process import die_with_parent, freeze_long_lived, limit_malloc_arenas

    die_with_parent()
    # Ctrl-C and a SIGTERM to the process group reach us too: the server stops
    # us in order (our last rows reach our journal), so neither ends us here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    limit_malloc_arenas()
    logging.basicConfig(level=log_level, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    part = build_serving(settings, name)
    part.predictor.refresh()
    stats = ServingStats()
    from minimlops.entrypoints.http.request_models import request_models
    from minimlops.entrypoints.http.security import Access

    answer = predict_answerer(
        part.predictor,
        part.log,
        stats,
        request_models(part.predictor.project),
        max_body=settings.max_body_bytes,
        max_batch=settings.max_batch,
    )
    key = settings.api_key.get_secret_value() if settings.api_key else None
    tokens = [settings.admin_token.get_secret_value()] if settings.admin_token else []
    forward = Forward(primary_url, part.log)
    # MINIMLOPS_PUBLIC_ROUTES: what this process cannot let in (no credential, or the
    # server's local token, which it does not know) is forwarded: the server decides.
    front = FastPredict(
        forward,
        answer,
        settings.max_body_bytes,
        origins=settings.origins,
        api_key=key,
        access=Access.parse(settings.public_routes),
        admin_tokens=tokens,
    )
    sock = listen(*address, join=True)
    config = uvicorn.Config(
        front,
        log_level="warning",
        access_log=False,
        lifespan="on",
        http=DirectHttpTools,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=75,
    )
    server = _Quiet(config)

    def counters() -> dict[str, Any]:
        log = part.log
        return {
            "name": name,
            "stats": stats.snapshot(),
            "forwarded": forward.forwarded,
            "log": {"batches": log.batches, "rows": log.rows, "write_seconds": log.write_seconds},
        }

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
        threading.Thread(
            target=obey, args=(asyncio.get_running_loop(),), name="control", daemon=True
        ).start()

    forward.on_ready = on_ready
    server.run(sockets=[sock])


class _Quiet(uvicorn.Server):
    """uvicorn without signal handlers: the server stops this process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
