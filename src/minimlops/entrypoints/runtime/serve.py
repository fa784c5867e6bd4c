"""``minimlops up``: the whole pipeline in one process on 127.0.0.1.

Order on start: open the data home, register subscriptions, put the example
file in the landing zone when the warehouse is empty, start the server; once
it listens, start the watcher and consumers (which redeliver what a previous
run left unacknowledged). Ctrl-C stops the server, then the consumers, then
flushes the prediction log and closes the database.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import sys
from collections.abc import Generator
from typing import Any

import pyarrow as pa
import uvicorn

from minimlops import example_data
from minimlops.bootstrap import App, build
from minimlops.config import ConfigError, Settings
from minimlops.entrypoints.http.app import create_app
from minimlops.entrypoints.http.fastpath import FastPredict
from minimlops.entrypoints.http.security import Access, PublicCORS
from minimlops.entrypoints.runtime.consumers import Runtime
from minimlops.entrypoints.runtime.direct import DirectHttpTools
from minimlops.entrypoints.runtime.home import hold_home, running_server, write_runtime_file
from minimlops.entrypoints.runtime.progress import ThrottledProgress
from minimlops.entrypoints.runtime.sockets import listen
from minimlops.entrypoints.runtime.workers import ServingProcesses
from minimlops.errors import MinimlopsError
from minimlops.process import freeze_long_lived, limit_malloc_arenas
from minimlops.services import admin

logger = logging.getLogger("minimlops")


class _Server(uvicorn.Server):
    """uvicorn, plus our start-up once the socket listens (so port 0 works)."""

    def __init__(self, config: uvicorn.Config, on_listen: Any) -> None:
        super().__init__(config)
        self.on_listen = on_listen

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """uvicorn stops on SIGINT/SIGTERM, then raises the signal again, and a
        re-raised SIGTERM kills the process before ``serve`` can stop the
        consumers, import the last predictions and close the database. The
        orderly stop below is what the signal asks for: it is not re-raised."""
        with super().capture_signals():
            yield
            self._captured_signals.clear()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            self.on_listen(f"http://{host}:{port}")


def hint(app: App, url: str) -> None:
    """Log a request to try, one the project's model answers, in its own
    columns; before a first model, once that model is loaded (a project's own
    example request too: before, the server would answer it with a 503)."""
    serving = app.registry.champion()[0] is not None
    example = admin.example_request(app.deps, app.registry) if serving else None
    if example is None:
        project = app.deps.project
        logger.info(
            "no model yet: one is trained when data lands; then open %s/ for the "
            "form or POST a row of %s to %s/predict",
            url,
            ", ".join(c for c in project.input_columns if c != project.key),
            url,
        )
        before = app.predictor.before_swap

        def first_model(version: str) -> None:
            app.predictor.before_swap = before
            if before is not None:
                before(version)
            hint(app, url)

        app.predictor.before_swap = first_model
        return
    if not logger.isEnabledFor(logging.INFO):
        return
    body = shlex.quote(json.dumps(example, ensure_ascii=False))
    logger.info("try a prediction (the command on the next line):")
    # on a line of its own, unwrapped, so it can be copied into a shell
    print(
        f"curl -X POST -H 'Content-Type: application/json' -d {body} {url}/predict",
        file=sys.stderr,
        flush=True,
    )


def ingest_command(settings: Settings) -> str:
    """``minimlops ingest FILE.csv`` as it works pasted into another shell:
    with ``--home`` (absolute) unless the home is the default one. No
    ``--project``: while this server runs, it ingests the file with its own
    project, and after, the home's record names that project to every
    command (``bootstrap.project_of``)."""
    words = ["minimlops", "ingest", "FILE.csv"]
    if settings.home != Settings.model_fields["home"].default:
        words += ["--home", str(settings.home.resolve())]
    return shlex.join(words)


def seed_example_data(app: App) -> None:
    """On first start (empty warehouse, empty landing zone) land the example
    project's file; a user's own project waits for `minimlops ingest FILE`."""
    s, deps = app.settings, app.deps
    if deps.warehouse.ledger() or deps.store.list(s.landing_bucket):
        return
    project = deps.project
    path = example_data.for_project(
        dict(project.extras), s.cache_dir, local=s.example_data, url=s.example_url
    )
    if path is None and isinstance(project.extras.get("generate"), int):
        path = example_data.generated(project, int(project.extras["generate"]), s.cache_dir)
    if path is None:
        logger.info(
            "project %s has no data yet: land a CSV with the command on the next line "
            "(or copy it into %s)",
            project.name,
            s.buckets_dir.resolve() / s.landing_bucket,
        )
        # on a line of its own, unwrapped, so it can be copied into a shell
        print(ingest_command(s), file=sys.stderr, flush=True)
        return
    info = deps.store.write_file(s.landing_bucket, path.name, path)  # type: ignore[attr-defined]
    logger.info("first start: landed the example data as %s", info.uri)
    if app.announce is not None:  # written whole (renamed into place): no settling
        app.announce(info)


def serve(settings: Settings, compute: Any = None) -> None:
    """Run until interrupted (``compute``: the training process, if started
    earlier by :func:`minimlops.bootstrap.start_training_process`)."""
    try:
        access = Access.parse(settings.public_routes)  # a wrong entry stops here, nothing opened
    except ConfigError as exc:
        raise MinimlopsError(str(exc)) from None
    held = hold_home(settings)  # released by the kernel when this process ends
    if held is None:
        other = running_server(settings)
        where = f" (pid {other.pid}) at {other.url}" if other else ""
        raise MinimlopsError(f"a server{where} already runs on {settings.home}")
    # Arrow's default pool (mimalloc) keeps freed blocks; after each landed
    # file a long-running server would hold on to the peak. The system
    # allocator gives large blocks back.
    pa.set_memory_pool(pa.system_memory_pool())
    limit_malloc_arenas()
    count = settings.serving_processes
    public = listen(settings.host, settings.port, shared=count > 1)  # before building: a
    # taken port fails here, with nothing opened yet
    private = listen("127.0.0.1", 0, shared=False) if count > 1 else None
    app = build(settings, progress=ThrottledProgress(), isolate_training=True, compute=compute)
    runtime = Runtime(app)
    processes: ServingProcesses | None = None
    holder: dict[str, Any] = {}  # "info": the runtime file, once listening
    try:
        seed_example_data(app)
        if changed := admin.retrain_if_project_changed(app.deps, app.registry):
            logger.info("%s: a version for it is being trained", changed)
        tokens = [settings.admin_token.get_secret_value()] if settings.admin_token else []

        def on_listen(url: str) -> None:
            nonlocal processes
            holder["info"] = write_runtime_file(settings, url)
            tokens.append(holder["info"].token)
            app.start_background()
            runtime.start()
            freeze_long_lived()  # the model is loaded by now (lifespan runs first)
            if private is not None:
                inside = f"http://127.0.0.1:{private.getsockname()[1]}"
                processes = ServingProcesses(settings, count, public.getsockname()[:2], inside)
                app.predictor.before_swap = processes.refresh
                processes.start()
            logger.info(
                "predictions_endpoint listening on %s (data home %s; serving processes: %d)",
                url,
                settings.home.resolve(),
                count,
            )
            hint(app, url)

        def peers() -> list[dict[str, Any]]:
            return processes.counters() if processes is not None else []

        def peer_count() -> int:
            return processes.live() if processes is not None else 0

        api = create_app(
            app, admin_tokens=tokens, peers=peers, peer_count=peer_count, access=access
        )  # tokens: filled on listen
        key = settings.api_key.get_secret_value() if settings.api_key else None
        front = FastPredict(
            PublicCORS(api, settings.origins),
            api.state.answer_predict,
            settings.max_body_bytes,
            origins=settings.origins,
            api_key=key,
            access=access,
            admin_tokens=tokens,
        )
        config = uvicorn.Config(
            front,
            log_level="warning",
            access_log=False,
            lifespan="on",
            http=DirectHttpTools,  # POST /predict without ASGI; writes coalesced
            # loopback, no proxy in front: skip per-request header work
            proxy_headers=False,
            server_header=False,
            # longer than clients' and proxies' idle timeouts, so the
            # server is never the side closing a connection in use
            timeout_keep_alive=75,
        )
        # The training process imports scikit-learn (~2.4 s) on the other core
        # while this one starts the server: a file that landed meanwhile is
        # trained on without waiting for it (`up` started it first; a no-op then).
        getattr(app.deps.compute, "prestart", lambda: None)()
        _Server(config, on_listen).run(sockets=[public] + ([private] if private else []))
    finally:
        runtime.stop()
        if processes is not None:  # their last rows reach the journal before it closes
            processes.stop()
        app.close()
        for sock in (public, private):
            if sock is not None:
                sock.close()
        settings.runtime_file.unlink(missing_ok=True)
        os.close(held)
        if "info" in holder:  # (a start that failed says why, not "stopped")
            logger.info("stopped")
