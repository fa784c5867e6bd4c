"""``minimlops up`` with two serving processes (MINIMLOPS_SERVING_PROCESSES=2):
either process may take a connection, and a user cannot tell which did."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from minimlops.config import Settings
from tests.e2e.harness import MODEL_FIELDS_ONLY, Server, env_for, free_port, wait_until
from tests.e2e.test_local_flow import need_example_data


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    need_example_data()
    # the promotion test retrains on the same rows and expects the same model: the
    # default budget, so a loaded machine cannot cut selection short
    assert Settings.model_fields["training_budget"].default is None
    srv = Server(
        tmp_path_factory.mktemp("processes") / "home",
        MINIMLOPS_SERVING_PROCESSES="2",
        MINIMLOPS_TRAINING_BUDGET="",  # empty: unset
    )
    srv.wait_healthy()
    srv.wait_for(
        lambda: srv.http.get("/healthz").json()["serving_processes"] == 2,
        what="the second serving process",
    )
    yield srv
    srv.stop()


def _serving_pids(server: Server) -> list[int]:
    return [int(p) for p in re.findall(r"serving process serving-1 \(pid (\d+)\)", server.output())]


def _fresh(server: Server, method: str, path: str, **kw: object) -> httpx.Response:
    """One request on a new connection: the kernel picks the process."""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        return http.request(method, path, **kw)  # type: ignore[arg-type]


def _predictions(server: Server, n: int) -> list[dict]:
    answers = []
    for _ in range(n):
        r = _fresh(server, "POST", "/predict", json=MODEL_FIELDS_ONLY)
        assert r.status_code == 200, r.text
        answers.append(r.json())
    return answers


def _logged(server: Server, uuids: list[str]) -> list[str]:
    listed = ", ".join(f"'{u}'" for u in uuids)
    r = server.http.post(
        "/query",
        headers=server.admin(),
        json={"sql": f"SELECT uuid FROM predictions_data WHERE uuid IN ({listed})"},
    )
    assert r.status_code == 200, r.text
    return [row["uuid"] for row in r.json()["rows"]]


def test_both_processes_answer_and_every_answer_is_logged_once(server: Server) -> None:
    before = server.http.get("/stats/serving").json()["predictions"]
    uuids = [a["uuid"] for a in _predictions(server, 120)]
    journal = server.home / "journal"
    assert any(p.stat().st_size for p in journal.glob("*.jsonl")), "the server answered none"
    assert any(p.stat().st_size for p in (journal / "serving-1").glob("*.jsonl")), (
        "the second serving process answered none of 120 connections"
    )
    found = server.wait_for(
        lambda: (rows := _logged(server, uuids)) and len(rows) == 120 and rows,
        what="120 answered predictions in predictions_data",
    )
    assert sorted(found) == sorted(uuids)  # each once
    after = server.http.get("/stats/serving").json()
    assert after["predictions"] - before == 120  # both processes counted
    metrics = server.http.get("/metrics").text
    assert f"minimlops_predictions_total {after['predictions']}" in metrics


def _per_process(server: Server) -> dict[tuple[str, str], int]:
    """minimlops_process_requests_total by (process, kind), from /metrics."""
    text = server.http.get("/metrics").text
    return {
        (p, k): int(n)
        for p, k, n in re.findall(
            r'minimlops_process_requests_total\{process="([^"]+)",kind="(\w+)"\} (\d+)', text
        )
    }


def test_every_request_is_answered_whichever_process_takes_it(server: Server) -> None:
    before = _per_process(server)
    for _ in range(12):
        assert _fresh(server, "GET", "/healthz").json()["status"] == "ok"
        assert "<html" in _fresh(server, "GET", "/dashboard").text.lower()
        r = _fresh(server, "POST", "/explain", json=MODEL_FIELDS_ONLY)  # a body, forwarded
        assert r.status_code == 200 and r.json()["model_version"], r.text
        r = _fresh(
            server,
            "OPTIONS",
            "/predict",
            headers={"Origin": "http://elsewhere.example", "Access-Control-Request-Method": "POST"},
        )
        assert r.headers.get("access-control-allow-origin") == "*"
        r = _fresh(
            server,
            "POST",
            "/models/rollback",
            json={"reason": "x"},
            headers={"Origin": "http://elsewhere.example"},
        )
        assert r.status_code in (401, 403)  # admin: never from another origin, never open
        r = _fresh(
            server,
            "POST",
            "/predict",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 400 and "invalid JSON" in r.json()["detail"]
    after = _per_process(server)
    took_part = {key for key, n in after.items() if n > before.get(key, 0)}
    # 72 fresh connections: both processes answered /predict, and the second
    # one forwarded what it does not answer itself
    assert {
        ("server", "predict"),
        ("serving-1", "predict"),
        ("serving-1", "forwarded"),
    } <= took_part


def test_a_promotion_reaches_every_process_before_it_is_answered(server: Server) -> None:
    r = server.http.post("/train", headers=server.admin(), json={"reason": "a second version"})
    assert r.status_code == 202, r.text
    # the same rows again: not worse than the champion, so training promotes it
    server.wait_for(
        lambda: server.http.get("/healthz").json()["model_version"] == "2",
        what="a second model version serving",
    )
    for version in ("1", "2", "1"):
        r = server.http.post(
            f"/models/{version}/promote", headers=server.admin(), json={"reason": "test"}
        )
        assert r.status_code == 200, r.text
        served = {a["model_version"] for a in _predictions(server, 16)}
        assert served == {version}


def test_a_killed_serving_process_is_started_again(server: Server) -> None:
    (pid,) = _serving_pids(server)[-1:]
    os.kill(pid, signal.SIGKILL)
    server.wait_for(lambda: len(_serving_pids(server)) == 2, what="the serving process restarted")
    assert "serving process serving-1 exited" in server.output()
    answers = _predictions(server, 20)
    assert all(a["model_version"] for a in answers)
    assert _serving_pids(server)[-1] in server.children()


def test_sigterm_stops_every_process_in_order(tmp_path: Path) -> None:
    need_example_data()
    srv = Server(tmp_path / "home", MINIMLOPS_SERVING_PROCESSES="2")
    srv.wait_healthy()
    srv.wait_for(lambda: _serving_pids(srv), what="the second serving process")
    uuids = [a["uuid"] for a in _predictions(srv, 30)]
    kids = srv.children()
    srv.proc.send_signal(signal.SIGTERM)  # how systemd, Docker and kill stop a service
    assert srv.proc.wait(30) == 0
    srv.log.close()
    assert "stopped" in srv.output()
    assert not (srv.home / "server.json").exists()
    wait_until(lambda: not any(Path(f"/proc/{k}").exists() for k in kids), 5, "children gone")
    import duckdb

    con = duckdb.connect(str(srv.home / "warehouse.duckdb"), read_only=True)
    rows = [r[0] for r in con.execute("SELECT uuid FROM predictions_data").fetchall()]
    con.close()
    assert sorted(set(rows) & set(uuids)) == sorted(uuids) and len(rows) == len(set(rows))


def test_a_port_in_use_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        port = free_port()
        taken.bind(("127.0.0.1", port))
        taken.listen()
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "minimlops", "up", "--port", str(port)],
            env=env_for(tmp_path / "home"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - started < 30
