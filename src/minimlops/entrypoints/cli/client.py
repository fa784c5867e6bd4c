"""How the command line reaches minimlops: the running server, or in process.

DuckDB lets one process write a database file, and ``minimlops up`` holds it.
So while a server runs, commands ask it over HTTP (authenticated with the
token it wrote to ``server.json``, readable only by its owner); otherwise they
open the data home themselves. Both paths call the same service functions.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson

from minimlops.bootstrap import App
from minimlops.entrypoints.http.fastpath import answer_keys
from minimlops.entrypoints.runtime.home import ServerInfo
from minimlops.services import admin, messagebus, monitor


class RemoteError(RuntimeError):
    """The server answered with an error; the message is its detail."""


class Remote:
    """Operations through a running server's HTTP API."""

    def __init__(self, info: ServerInfo) -> None:
        self.http = httpx.Client(
            base_url=info.url, timeout=120, headers={"Authorization": f"Bearer {info.token}"}
        )

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
        # checked rows hold dates and timestamps: ISO 8601, as a client writes them
        return self._call(  # type: ignore[no-any-return]
            "POST",
            "/predict",
            content=orjson.dumps(passengers),
            headers={"Content-Type": "application/json"},
        )

    def monitoring(self, check: bool = False) -> dict[str, Any]:
        checked = self._call("POST", "/monitoring/check") if check else {}
        return {**self._call("GET", "/monitoring"), **checked}


class InProcess:
    """The same operations on a data home no server holds."""

    def __init__(self, app: App) -> None:
        from minimlops.entrypoints.runtime.consumers import Runtime

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
        answer: dict[str, list[str]] = {}
        if check:
            checked = monitor.check(deps, registry, cfg)
            for event in checked.events:
                messagebus.publish(event, deps)
            answer = monitor.check_answer(checked)
            self._drain()
        return {
            "versions": monitor.live_accuracy(deps, registry),
            "drift": monitor.drift(deps, registry, cfg),
            "triggers": monitor.triggers(deps)[:50],
            **answer,
        }

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
        # the fields POST /predict answers for the task (a multiclass row keeps
        # its probabilities as JSON text, for the log)
        keys = answer_keys(self.app.predictor.task)
        answers = [
            {k: orjson.loads(r[k]) if k == "probabilities" else r[k] for k in keys} for r in rows
        ]
        out = {"predictions": answers, "model_version": rows[0]["model_version"]}
        if warned := self.app.predictor.unseen(rows):  # as /predict says (a category, a far value)
            out["warnings"] = warned
        return out
