"""Alerts from a running `minimlops up` to a webhook receiver on 127.0.0.1:
signed, one per occurrence, and still delivered after a kill -9."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from minimlops.domain import alerts
from minimlops.generate import write_csv
from tests.e2e.harness import Server, cli, wait_until
from tests.e2e.test_retraining import LAND, shifted

SECRET = "test-secret-0123456789"


class Receiver:
    """A webhook on loopback: keeps what it is sent, answers ``status``."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.tries: list[tuple[str, str]] = []  # every request's (id, type), taken or not
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                doc = json.loads(body)
                outer.tries.append((doc.get("id"), doc.get("type")))
                if outer.status == 200:
                    outer.got.append(
                        {
                            "doc": doc,
                            "body": body,
                            "signature": self.headers.get(alerts.SIGNATURE_HEADER),
                        }
                    )
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def kinds(self) -> list[str]:
        return [g["doc"]["type"] for g in self.got]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _env(receiver: Receiver, **extra: str) -> dict[str, str]:
    return {
        "MINIMLOPS_ALERT_WEBHOOKS": receiver.url,
        "MINIMLOPS_ALERT_SECRET": SECRET,
        "MINIMLOPS_MONITOR_EVERY": "3600",
        "MINIMLOPS_DRIFT_WINDOW": "300",
        **extra,
    }


def test_a_running_server_sends_signed_alerts_for_what_happens(
    tmp_path: Path, receiver: Receiver
) -> None:
    home = tmp_path / "home"
    (home / LAND).mkdir(parents=True)
    write_csv(home / LAND / "passengers.csv", 1500, seed=3)
    # a threshold no model of these passengers reaches: the estimate says so before labels
    server = Server(
        home,
        MINIMLOPS_MAX_BAD_ROWS="20",
        MINIMLOPS_ACCURACY_THRESHOLD="0.97",
        **_env(receiver),
    )
    try:
        server.wait_healthy()
        wait_until(lambda: "model.promoted" in receiver.kinds(), 60, "the first promotion's alert")
        # a file with a few bad rows (loaded), and one that is not a passenger file
        write_csv(home / LAND / "some-bad.csv", 300, seed=4, bad_rows=3, start_id=5000)
        (home / LAND / "wrong.csv").write_text("a,b\n1,2\n")
        wait_until(
            lambda: {"ingestion.skipped_rows", "file.rejected"} <= set(receiver.kinds()),
            60,
            lambda: f"the files' alerts: {receiver.kinds()}",
        )
        # the same passengers' TRAIN rows again with shuffled labels: the challenger
        # learns noise, VALIDATION stays true, and the gate keeps the champion
        _noise_file(home / LAND / "noise.csv", 1500, seed=3)
        wait_until(
            lambda: "model.kept" in receiver.kinds(),
            120,
            lambda: f"the gate's no: {receiver.kinds()}",
        )

        # drift: one alert for every drifted feature, and the retraining it asks
        # for: the rows are those of the version the gate kept out (once every
        # landed file is trained on), which the labels since may change
        def idle() -> bool:
            queues = {q["subscription"]: q for q in server.http.get("/status").json()["queues"]}
            return all(
                not queues[s]["pending"] and not queues[s]["leased"]
                for s in ("ingest_data", "train_model")
            )

        wait_until(idle, 120, "every landed file trained on")
        trained = len(server.http.get("/models").json()["versions"])
        server.http.post("/predict", json=shifted(300, seed=5))
        server.http.post("/monitoring/check", headers=server.admin())
        wait_until(
            lambda: (
                {"drift.detected", "retraining.triggered", "metric.dropped"}
                <= set(receiver.kinds())
            ),
            60,
            lambda: f"the drift alerts: {receiver.kinds()}",
        )
        wait_until(
            lambda: len(server.http.get("/models").json()["versions"]) == trained + 1,
            120,
            "the training the drift asked for",
        )
        champion = server.http.get("/healthz").json()["model_version"]
        newest = server.http.get("/models").json()["versions"][-1]["version"]
        if champion != newest:
            server.http.post(f"/models/{newest}/promote", headers=server.admin())
        server.http.post("/models/rollback", headers=server.admin())
        wait_until(lambda: "model.rolled_back" in receiver.kinds(), 30, lambda: receiver.kinds())
        status = json.loads(cli(home, "status", "--json").stdout)["alerts"]
    finally:
        server.stop()
    kinds = receiver.kinds()
    assert kinds.count("drift.detected") == 1, kinds  # every feature in one alert
    dropped = next(g["doc"] for g in receiver.got if g["doc"]["type"] == "metric.dropped")
    assert "estimated accuracy" in dropped["summary"] and dropped["details"]["estimated"]["rows"]
    drift = next(g["doc"] for g in receiver.got if g["doc"]["type"] == "drift.detected")
    listed = drift["details"]["features"]  # the drifted features the model uses
    assert {"Pclass", "Fare"} <= {f["feature"] for f in listed}
    # each with its share of the model's attributions, for the reader to weigh
    assert all(0.0 <= f["importance_share"] <= 1.0 for f in listed), listed
    kept = next(g["doc"] for g in receiver.got if g["doc"]["type"] == "model.kept")
    assert "worse" in kept["details"]["decision"] or "calibration" in kept["details"]["decision"]
    rejected = next(g["doc"] for g in receiver.got if g["doc"]["type"] == "file.rejected")
    assert rejected["details"]["file"].endswith("wrong.csv") and rejected["details"]["report"]
    for g in receiver.got:
        doc = g["doc"]
        assert set(doc) == {"id", "type", "time", "project", "summary", "details"}
        assert doc["type"] in alerts.KINDS and doc["project"] == "titanic" and doc["summary"]
        assert alerts.verify(SECRET, g["signature"], g["body"]), doc
        assert not alerts.verify("another secret", g["signature"], g["body"])
    ids = [g["doc"]["id"] for g in receiver.got]
    assert len(ids) == len(set(ids)), "each occurrence once"
    assert status["webhooks"] == [alerts.shown(receiver.url)] and status["sent"] == len(ids)
    assert not status.get("failed")


def _noise_file(path: Path, rows: int, seed: int) -> None:
    """The TRAIN rows of write_csv(rows, seed) with their labels shuffled."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from minimlops.domain.schema import split_for
    from minimlops.generate import passengers

    table = passengers(rows, seed=seed)
    train = table.filter(
        pa.array([split_for(i) == "TRAIN" for i in table.column("PassengerId").to_pylist()])
    )
    labels = np.random.default_rng(0).permutation(train.column("Survived").to_numpy())
    noisy = train.set_column(train.schema.get_field_index("Survived"), "Survived", pa.array(labels))
    pacsv.write_csv(noisy, path, pacsv.WriteOptions(quoting_style="needed"))


def test_alerts_pending_when_the_server_is_killed_are_sent_after_a_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Recorded before sent: a receiver that is down when the pipeline acts,
    and a kill -9, lose nothing; every retry carries the same id."""
    home = tmp_path / "home"
    (home / LAND).mkdir(parents=True)
    write_csv(home / LAND / "passengers.csv", 1500, seed=3)
    receiver.status = 503
    server = Server(home, **_env(receiver))
    try:
        server.wait_healthy()
        wait_until(
            lambda: {"training.finished", "model.promoted"} <= {t for _, t in receiver.tries},
            60,
            "the first training's alerts tried",
        )
    finally:
        server.kill9()
    tried = {i for i, _ in receiver.tries}
    assert receiver.got == []
    receiver.status = 200
    again = Server(home, **_env(receiver))
    try:
        again.wait_healthy()
        wait_until(lambda: len(receiver.got) >= 2, 60, lambda: f"redelivery: {receiver.tries}")
    finally:
        again.stop()
    assert {"training.finished", "model.promoted"} <= set(receiver.kinds())
    assert {g["doc"]["id"] for g in receiver.got} >= tried  # the ids tried before the kill


def test_a_training_that_keeps_failing_alerts_then_its_dead_letter_alerts(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The model storage cannot be written (a file where its directory goes):
    training.failed, once for all of a trigger's tries, then
    message.dead_lettered when the bus sets the trigger aside, from a running
    server; status lists the dead letter."""
    home = tmp_path / "home"
    (home / LAND).mkdir(parents=True)
    write_csv(home / LAND / "passengers.csv", 900, seed=3)
    blocked = home / "buckets" / "my-model-storage" / "models" / "titanic"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("not a directory")
    server = Server(home, MINIMLOPS_BUS_MAX_ATTEMPTS="3", **_env(receiver))
    try:  # never healthy: no model can be stored
        wait_until(
            lambda: "message.dead_lettered" in receiver.kinds(),
            120,
            lambda: f"the dead letter's alert: {receiver.kinds()}\n{server.output()[-3000:]}",
        )
        status = json.loads(cli(home, "status", "--json").stdout)
    finally:
        server.stop()
    kinds = receiver.kinds()
    assert kinds.count("training.failed") == 1, kinds  # one id for every try
    failed = next(g["doc"] for g in receiver.got if g["doc"]["type"] == "training.failed")
    dead = next(g["doc"] for g in receiver.got if g["doc"]["type"] == "message.dead_lettered")
    assert "NotADirectoryError" in failed["summary"] + json.dumps(failed["details"]), failed
    assert dead["details"]["subscription"] == "train_model"
    assert dead["details"]["type"] == "IngestionComplete"
    assert "NotADirectoryError" in dead["details"]["error"]
    assert [d["subscription"] for d in status["dead_letters"]] == ["train_model"]
    assert "model.promoted" not in kinds and "training.finished" not in kinds
