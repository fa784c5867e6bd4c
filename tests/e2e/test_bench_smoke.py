"""The benchmarks keep working (a smoke run: tiny sizes, no assertion on time)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.harness import cli


def test_bench_smoke_writes_every_measurement(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install wrk (apt-get install wrk)")
        pytest.skip("wrk is not installed")
    out = tmp_path / "results"
    cli(tmp_path / "home", "bench", "--smoke", "--out", str(out))
    report = json.loads((out / "latest.json").read_text())
    names = [r["name"] for r in report["results"]]
    assert any("floor" in n for n in names) and any("batches of 1,000" in n for n in names)
    assert any("pandas baseline" in n for n in names) and any("ingest_data" in n for n in names)
    assert any("cold start" in n for n in names) and any("end to end" in n for n in names)
    single = next(
        r
        for r in report["results"]
        if r["name"] == "minimlops /predict, 1 passenger, 32 connections"
    )
    assert single["ratio"] > 0 and "median of 3 rounds" in single["note"]  # paired with the floor
    by_name = {r["name"]: r for r in report["results"]}
    for pct in ("p50", "p99"):  # at one connection, against the floor's just before
        assert by_name[f"bare ASGI floor, 1 connection, {pct}"]["value"] > 0
        assert by_name[f"minimlops /predict, 1 connection, {pct}"]["ratio"] > 0
        # the disk's own sync of a log row, measured between the two in each round
        disk = by_name[f"the disk alone: one log row appended and synced, {pct}"]
        assert disk["value"] > 0 and "fdatasync" in disk["note"] and disk["ratio"] is None
    for pct in ("p50", "p99"):  # one row's explanation, with the method its answer named
        explain = by_name[f"minimlops /explain, 1 passenger, 1 connection, {pct}"]
        method = explain["note"].split("; ")[1]
        assert explain["value"] > 0 and ("TreeSHAP" in method or "exact" in method), method
    example = next(r for r in report["results"] if r["name"].endswith("the exercise's file"))
    assert example["ratio"] > 0 and "trained on the exercise's titanic.csv" in example["note"]
    wide = [r for r in report["results"] if "wide project" in r["name"]]
    assert len(wide) == 2 and all(r["value"] > 0 for r in wide) and wide[0]["ratio"] > 0
    training = [r for r in report["results"] if r["name"].startswith("minimlops train_model")]
    assert len(training) == 2 and all(r["value"] > 0 and "peak RSS" in r["note"] for r in training)
    assert training[1]["ratio"] > 0  # memory for three times the rows, against the first
    errors = next(r for r in report["results"] if r["name"].startswith("non-2xx"))
    assert errors["value"] == 0
    assert (out / "latest.md").read_text().startswith("Machine:")
    from minimlops_bench.targets import TARGETS
    from minimlops_bench.tools import Plan

    full, smoke = Plan.make(False).ingest_rows[-1], Plan.make(True).ingest_rows[-1]

    def sized(name: str) -> str:  # the smoke run loads fewer rows
        for n in (3 * full, full):
            name = name.replace(f"{n:,} rows", f"{n // full * smoke:,} rows")
        return name

    for target in TARGETS:  # the targets' table reads the rows the bench writes
        if not (target.elsewhere or target.peers):
            assert all(sized(c.row) in by_name for c in target.checks), target.measurement


def test_wrk_sends_every_body_of_the_file_in_turn(tmp_path: Path) -> None:
    """The serving runs send distinct rows (a line each of the body file),
    not one request repeated: a server on loopback sees every one."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from minimlops_bench.tools import wrk

    if shutil.which("wrk") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install wrk (apt-get install wrk)")
        pytest.skip("wrk is not installed")
    seen: set[bytes] = set()

    class Recorder(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            seen.add(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    bodies = [json.dumps({"Pclass": c, "Sex": "female"}) for c in (1, 2, 3)]
    body_file = tmp_path / "bodies.jsonl"
    body_file.write_text("\n".join(bodies) + "\n")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run = wrk(f"http://127.0.0.1:{server.server_port}/predict", body_file, 1, 1)
    finally:
        server.shutdown()
        server.server_close()
    assert run["rps"] > 0 and run["non_2xx"] == 0
    assert seen == {b.encode() for b in bodies}


def test_serving_runs_wait_while_a_child_of_the_server_is_busy(tmp_path: Path) -> None:
    """A server whose child is still busy (a training process importing
    scikit-learn after a promotion) is not measured until the child is done."""
    import subprocess
    import sys

    from minimlops_bench.tools import wait_quiet

    if not Path("/proc/self/stat").exists():
        pytest.skip("process CPU times are read from /proc")
    done = tmp_path / "busy-done"
    child = (
        "import time, pathlib\n"
        "end = time.monotonic() + 2.5\n"
        "while time.monotonic() < end: pass\n"
        f"pathlib.Path({str(done)!r}).touch()\n"
        "time.sleep(60)\n"
    )
    parent = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', {child!r}])\n"
        "time.sleep(60)\n"
    )
    server = subprocess.Popen([sys.executable, "-c", parent], start_new_session=True)
    try:
        time.sleep(0.5)  # the child has started its busy loop
        wait_quiet(server.pid, window=0.5)
        assert done.exists()  # not before the child's work ended
        assert wait_quiet(server.pid, window=0.5) < 2  # and an idle tree at once
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # the parent and its child
        server.wait()


def test_a_process_tree_s_cpu_time_keeps_what_its_reaped_children_used() -> None:
    """A child that exits and is reaped does not make the tree look idle."""
    import subprocess
    import sys

    from minimlops_bench.tools import _tree_cpu

    if not Path("/proc/self/stat").exists():
        pytest.skip("process CPU times are read from /proc")
    parent = (
        "import subprocess, sys, time\n"
        "subprocess.run([sys.executable, '-c', "
        "'import time\\nend = time.monotonic() + 1\\nwhile time.monotonic() < end: pass'])\n"
        "print('reaped', flush=True)\n"
        "time.sleep(60)\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", parent], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert server.stdout is not None and server.stdout.readline() == b"reaped\n"
        used = _tree_cpu(server.pid)
        assert used is not None and used >= 0.8  # the child's busy second is still counted
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def test_bench_peers_smoke(tmp_path: Path) -> None:
    """`make bench-peers` keeps working: MLflow's server and the exercise's
    function, from their own venv, measured in the same run (`make test-peers`)."""
    peers = os.environ.get("MINIMLOPS_PEERS_PYTHON")
    if not peers:
        pytest.skip("MINIMLOPS_PEERS_PYTHON unset: `make test-peers` builds the peers' venv")
    if shutil.which("wrk") is None:
        pytest.fail("wrk is not installed (apt-get install wrk)")
    out = tmp_path / "results"
    cli(tmp_path / "home", "bench", "--smoke", "--peers", peers, "--out", str(out))
    rows = json.loads((out / "latest.json").read_text())["results"]
    peer_rows = [r for r in rows if r["group"] == "peers"]
    names = " ".join(r["name"] for r in peer_rows)
    assert "mlflow models serve" in names and "functions-framework" in names
    throughput = [r for r in peer_rows if r["unit"] == "req/s"]
    assert len(throughput) == 2 and all(r["value"] > 0 and r["ratio"] > 0 for r in throughput)


def test_bench_quality_smoke_reports_what_each_split_promised(tmp_path: Path) -> None:
    """`bench --quality`'s split section: per strategy, minimlops' figure on
    VALIDATION next to the one on the newest (or unseen-patient) rows, in the
    JSON and the markdown (the peers' section is left out: the examples'
    trainings take minutes)."""
    from minimlops_bench import quality

    out = tmp_path / "results"
    quality.run(out, example=None, smoke=True, parts=("splits",))
    report = json.loads((out / "quality.json").read_text())
    found = {d["data_set"]: d for d in report["splits"]}
    assert set(found) == {"demand_over_time", "patient_visits"}
    assert [r["strategy"] for r in found["demand_over_time"]["strategies"]] == ["random", "time"]
    assert [r["strategy"] for r in found["patient_visits"]["strategies"]] == ["random", "group"]
    for d in found.values():
        held = {r["rows"]["held_out"] for r in d["strategies"]}
        assert len(held) == 1 and held.pop() > 0  # every strategy scored on the same rows
        for r in d["strategies"]:
            promised, got = r["validation"][d["metric"]], r["held_out"][d["metric"]]
            assert promised > 0 and got > 0 and r["rows"]["VALIDATION"] > 0
            assert abs(r["over_promise"] - (got - promised)) < 1e-9  # both losses: lower is better
            low, high = r["over_promise_95"]
            assert low <= high
    folds = {r["strategy"]: r["folds_by"] for d in found.values() for r in d["strategies"]}
    assert folds == {"random": "random", "time": "time", "group": "group"}
    text = (out / "quality.md").read_text()
    assert quality.SPLITS_TITLE in text
    assert "### demand_over_time" in text and "### patient_visits" in text
    assert "rmse on held-out" in text and "log_loss on VALIDATION" in text


def test_bench_quality_smoke_with_the_automl_venv(tmp_path: Path) -> None:
    """AutoGluon and FLAML from their own venv (`make bench-automl`), on one
    generated data set with the smoke budget: rows beside the defaults, scored
    on the same TEST rows, compared with minimlops in the goal's lines."""
    python = os.environ.get("BENCH_AUTOML_PYTHON")
    if not python:
        pytest.skip("BENCH_AUTOML_PYTHON unset: `make bench-automl` builds .bench-automl")
    from minimlops_bench import quality

    out = tmp_path / "results"
    automl = quality.find_automl(Path(python))
    assert automl.python is not None, automl.reason
    quality.run(
        out, example=None, smoke=True, parts=("peers",), automl=automl, only=("imbalanced",)
    )
    report = json.loads((out / "quality.json").read_text())
    [d] = report["data_sets"]
    assert d["automl_errors"] == []
    kinds = [r["kind"] for r in d["methods"]]
    assert kinds == ["minimlops", "default", "default", "default", "automl", "automl"]
    assert [a["peer"] for a in d["automl"]] == ["AutoGluon", "FLAML"]
    for r in d["methods"][-2:]:
        assert 0 < r["test"]["log_loss"] < 1 and r["seconds"] > 0
    assert set(report["automl"]["versions"]) == {"AutoGluon", "FLAML"}
    text = (out / "quality.md").read_text()
    assert "minimlops vs AutoGluon:" in text and "Against AutoGluon " in text
