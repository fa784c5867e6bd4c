"""Crash safety: ``kill -9`` during a burst of predictions, and restarts."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from minimlops.generate import write_csv
from tests.e2e.harness import MODEL_FIELDS_ONLY, Server, alive, wait_until

LAND = "buckets/my-data-landing-zone"


def prepared_home(tmp_path: Path) -> Path:
    """A data home whose landing zone already holds generated passengers."""
    home = tmp_path / "home"
    (home / LAND).mkdir(parents=True)
    write_csv(home / LAND / "passengers.csv", 1500, seed=4)
    return home


def burst_then_kill(server: Server, seed: int, clients: int = 4) -> list[str]:
    """Concurrent clients predict until the server is killed at a random moment."""
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not stop.is_set():
                try:
                    r = http.post("/predict", json=MODEL_FIELDS_ONLY)
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    with lock:
                        answered.append(r.json()["uuid"])

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(answered) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.Random(seed).uniform(0.0, 0.5))  # then a random moment
    server.kill9()
    stop.set()
    for t in threads:
        t.join()
    return answered


def logged(home: Path) -> tuple[set[str], int]:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    rows = [r[0] for r in con.execute("SELECT uuid FROM predictions_data").fetchall()]
    con.close()
    return set(rows), len(rows)


def _trial(tmp_path: Path, seed: int, processes: int = 1) -> None:
    home = prepared_home(tmp_path)
    server = Server(home, MINIMLOPS_SERVING_PROCESSES=str(processes))
    server.wait_healthy()
    if processes > 1:
        server.wait_for(
            lambda: "serving process serving-1 (pid" in server.output(),
            what="the second serving process",
        )
    kids = server.children()
    answered = burst_then_kill(server, seed, clients=4 * processes)
    assert len(answered) > 20, "the burst should have been answered for a while"
    wait_until(
        lambda: not [k for k in kids if alive(k)],
        2.0,
        "the server's child processes to die with it",
    )
    again = Server(home)  # restart on the same data home: recovers, serves, retrains nothing
    try:
        health = again.wait_healthy()
        assert health["model_version"] == "1"
        after = again.http.post("/predict", json=MODEL_FIELDS_ONLY).json()["uuid"]
        assert len(again.http.get("/models").json()["versions"]) == 1
    finally:
        again.stop()
    uuids, total = logged(home)
    missing = set(answered) - uuids
    assert not missing, f"{len(missing)} predictions answered 200 are not in predictions_data"
    assert after in uuids
    assert total == len(uuids), "a prediction is logged twice"


@pytest.mark.parametrize(
    ("seed", "processes"), [pytest.param(1, 1, marks=pytest.mark.smoke), (2, 2)]
)
def test_kill9_during_a_burst_loses_no_answered_prediction(
    tmp_path: Path, seed: int, processes: int
) -> None:
    _trial(tmp_path, seed, processes)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 120))
def test_kill9_during_a_burst_many_trials(tmp_path: Path, seed: int) -> None:
    _trial(tmp_path, seed, processes=1 + seed % 2)


def test_files_that_land_while_down_are_loaded_at_start(tmp_path: Path) -> None:
    home = prepared_home(tmp_path)
    server = Server(home)
    server.wait_healthy()
    server.stop()
    write_csv(home / LAND / "while-down.csv", 500, seed=8, start_id=50_000)
    again = Server(home)
    try:
        again.wait_healthy()

        def loaded() -> bool:
            status = again.http.get("/status").json()
            return status["tables"]["training_data"] == 2000

        again.wait_for(loaded, what="the file that landed while down")
        again.wait_for(
            lambda: len(again.http.get("/models").json()["versions"]) == 2,
            what="a model trained on it",
        )
    finally:
        again.stop()


def test_a_restart_right_after_kill9_and_a_stale_runtime_file_are_not_refused(
    tmp_path: Path,
) -> None:
    """The home is held by a lock the kernel drops when the server dies: a
    supervisor's restart within 100 ms of kill -9 starts, and a server.json
    naming a live unrelated process blocks nothing (the pid alone cannot tell)."""
    import json
    import subprocess
    import sys

    from tests.e2e.harness import cli

    home = prepared_home(tmp_path)
    first = Server(home)
    first.wait_healthy()
    first.wait_for(lambda: first.http.get("/status").json()["champion"], what="a champion")
    first.kill9()
    killed = time.monotonic()
    second = Server(home)  # at once, as a supervisor restarts it (most of the time is the harness)
    assert second.proc.pid and time.monotonic() - killed < 0.5
    try:
        second.wait_healthy()
        assert "already runs" not in second.output()
    finally:
        second.stop()
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (home / "server.json").write_text(
            json.dumps({"url": "http://127.0.0.1:9", "token": "t", "pid": unrelated.pid})
        )
        status = cli(home, "status", "--json")  # not sent to the dead address
        assert json.loads(status.stdout)["champion"] is not None
        third = Server(home)
        try:
            third.wait_healthy()
        finally:
            third.stop()
    finally:
        unrelated.kill()
        unrelated.wait()


def test_ctrl_c_during_a_training_stops_promptly_and_quietly_and_the_next_start_trains(
    tmp_path: Path,
) -> None:
    """Ctrl-C (SIGINT to the whole process group) while a training runs:
    the server stops in seconds, not when the training ends; it says the
    training runs again at the next start, promotes nothing and prints no
    traceback. The next start trains it; a supervisor's SIGTERM to the group
    then stops it without an alarming line."""
    import signal

    home = tmp_path / "home"
    (home / LAND).mkdir(parents=True)
    write_csv(home / LAND / "passengers.csv", 30_000, seed=4)
    first = Server(home, own_group=True, MINIMLOPS_TRAINING_BUDGET="120")
    first.wait_for(lambda: "cross-validating" in first.output(), what="the training to start")
    time.sleep(1.0)
    took = first.signal_group(signal.SIGINT)
    out = first.output()
    assert "runs again at the next start" in out, out
    assert took < 15, f"stopped {took:.1f} s after Ctrl-C:\n{out}"
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    assert "exited (code" not in out and "PROMOTED" not in out, out
    again = Server(home, own_group=True)
    again.wait_healthy()
    again.wait_for(
        lambda: again.http.get("/status").json()["champion"],
        what="the interrupted training, run at the next start",
    )
    assert again.http.post("/predict", json=MODEL_FIELDS_ONLY).status_code == 200
    again.signal_group(signal.SIGTERM)
    out = again.output()
    assert "Traceback" not in out and "exited (code" not in out and "ERROR" not in out, out
    assert again.proc.returncode == 0, out
