"""How the command line reaches minimlops: the running server, or in process.

DuckDB lets one process write a database file, and ``minimlops up`` holds it.
So while a server runs, commands ask it over HTTP (authenticated with the
token it wrote to ``server.json``, readable only by its owner); otherwise they
open the data home themselves. Both paths call the same service functions.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from minimlops.bootstrap import App
from minimlops.config import Settings
from minimlops.services import admin, messagebus, monitor

HOME_LOCK = "server.lock"


@dataclass(frozen=True)
class ServerInfo:
    url: str
    token: str
    pid: int


def write_runtime_file(settings: Settings, url: str) -> ServerInfo:
    """Record a running server's address and a fresh local admin token (0600)."""
    info = ServerInfo(url, secrets.token_urlsafe(32), os.getpid())
    path = settings.runtime_file
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": info.url, "token": info.token, "pid": info.pid}, fh)
    os.replace(tmp, path)
    return info


def hold_home(settings: Settings) -> int | None:
    """Hold the data home for a server: an exclusive lock on ``server.lock``
    that the kernel drops when the process ends, however it ends (kill -9
    included). Returns the descriptor to keep open, or None when another
    process holds the home. A pid in ``server.json`` cannot tell this: after
    a crash or a reboot it may name any other process."""
    settings.home.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.home / HOME_LOCK, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _home_held(settings: Settings) -> bool:
    try:
        fd = os.open(settings.home / HOME_LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # granted only when no server holds it
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def running_server(settings: Settings) -> ServerInfo | None:
    """The server that holds this data home, if one runs (a ``server.json``
    left by a server that died is ignored)."""
    if not _home_held(settings):
        return None
    try:
        data = json.loads(Path(settings.runtime_file).read_text())
        return ServerInfo(data["url"], data["token"], int(data["pid"]))
    except (OSError, ValueError, KeyError):
        return None  # holding the home, not yet listening


class RemoteError(RuntimeError):
    """The server answered with an error; the message is its detail."""


class Remote:
    """Operations through a running server's HTTP API."""

    def __init__(self, info: ServerInfo) -> None:
        self.http = httpx.Client(base_url=info.url, timeout=120,
                                 headers={"Authorization": f"Bearer {info.token}"})  # fmt: skip

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.http.request(method, path, **kw)
        if resp.status_code >= 400:
            try:
                detail = resp.json()
            except ValueError:
                detail = resp.text
            raise RemoteError(f"{resp.status_code}: {detail}")
        return resp.json()

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status")  # type: ignore[no-any-return]

    def models(self) -> dict[str, Any]:
        return self._call("GET", "/models")  # type: ignore[no-any-return]

    def model(self, version: str) -> dict[str, Any]:
        return self._call("GET", f"/models/{version}")  # type: ignore[no-any-return]

    def promote(self, version: str, reason: str) -> dict[str, Any]:
        return self._call("POST", f"/models/{version}/promote", json={"reason": reason})  # type: ignore[no-any-return]

    def rollback(self) -> dict[str, Any]:
        return self._call("POST", "/models/rollback")  # type: ignore[no-any-return]

    def train(self, reason: str) -> dict[str, Any]:
        return self._call("POST", "/train", json={"reason": reason})  # type: ignore[no-any-return]

    def query(self, sql: str) -> dict[str, Any]:
        return self._call("POST", "/query", json={"sql": sql})  # type: ignore[no-any-return]

    def predict(self, passengers: list[dict[str, Any]]) -> dict[str, Any]:
        return self._call("POST", "/predict", json=passengers)  # type: ignore[no-any-return]

    def monitoring(self, check: bool = False) -> dict[str, Any]:
        triggered = self._call("POST", "/monitoring/check")["triggered"] if check else []
        return {**self._call("GET", "/monitoring"), "triggered": triggered}


class InProcess:
    """The same operations on a data home no server holds."""

    def __init__(self, app: App) -> None:
        from minimlops.entrypoints.runtime import Runtime

        # On Google Cloud the functions consume the topics; here we only publish.
        self.app = app
        self.runtime = Runtime(app) if app.settings.backend == "local" else None

    def _drain(self) -> None:
        if self.runtime is not None:
            self.runtime.drain(scan=False)

    def status(self) -> dict[str, Any]:
        self.app.predictor.refresh()
        return admin.status(self.app.deps, self.app.registry, None)

    def models(self) -> dict[str, Any]:
        return admin.list_models(self.app.registry)

    def model(self, version: str) -> dict[str, Any]:
        return admin.model_view(self.app.registry, version)

    def promote(self, version: str, reason: str) -> dict[str, Any]:
        return admin.promote(self.app.deps, self.app.registry, version, reason)

    def rollback(self) -> dict[str, Any]:
        return admin.rollback(self.app.deps, self.app.registry)

    def train(self, reason: str) -> dict[str, Any]:
        message = admin.request_training(self.app.deps, reason)
        self._drain()
        status = "done" if self.runtime is not None else "requested (train_model runs it)"
        return {"status": status, "message_id": message, "reason": reason}

    def monitoring(self, check: bool = False) -> dict[str, Any]:
        deps, registry, cfg = self.app.deps, self.app.registry, self.app.monitor
        triggered = []
        if check:
            for event in monitor.check(deps, registry, cfg):
                messagebus.publish(event, deps)
                triggered.append(event.reason)
            self._drain()
        return {"versions": monitor.live_accuracy(deps, registry),
                "drift": monitor.drift(deps, registry, cfg),
                "triggers": monitor.triggers(deps)[:50], "triggered": triggered}

    def query(self, sql: str) -> dict[str, Any]:
        table = self.app.deps.warehouse.query(sql)
        return {"columns": table.column_names, "rows": table.to_pylist()}

    def predict(self, passengers: list[dict[str, Any]]) -> dict[str, Any]:
        self.app.predictor.refresh()
        rows = self.app.predictor.predict(passengers)

        async def _log() -> None:
            task = asyncio.create_task(self.app.log.run())
            await asyncio.sleep(0)  # the log starts (it refuses rows before), then takes ours
            try:
                await self.app.log.log(rows)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        asyncio.run(_log())
        answers = [{k: r[k] for k in ("prediction", "probability", "uuid", "model_version")}
                   for r in rows]  # fmt: skip
        return {"predictions": answers, "model_version": rows[0]["model_version"]}
