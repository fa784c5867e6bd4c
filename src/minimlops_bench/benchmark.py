"""``minimlops bench``: serving and ingestion, measured side by side in one run.

Every figure is reported with a ratio to a baseline measured in the same run
on the same machine: the bare ASGI floor for serving, pandas for ingestion.
The load generator is wrk (Debian package), one thread, in its own process.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from minimlops.generate import write_csv
from minimlops_bench.serving import end_to_end, serving, serving_wide
from minimlops_bench.tools import Plan, Results, floor_server, free_port, wrk


def peers(plan: Plan, work: Path, results: Results) -> None:
    """The usual ways of serving the same data and model family, in the same run:
    ``mlflow models serve`` and the exercise's functions-framework + pandas
    function, both from the peers' own venv; ratios are ours / theirs."""
    assert plan.peers is not None
    script_dir = Path(__file__).resolve().parents[2] / "bench" / "peers"
    if not (script_dir / "peer_model.py").is_file():
        raise RuntimeError(f"{script_dir}/peer_model.py not found: run from a checkout")
    data = work / "peer-data.csv"
    write_csv(data, 891, seed=1)  # the rows our server trained on
    models = work / "peer-models"
    fitted = subprocess.run(
        [
            str(plan.peers),
            str(script_dir / "peer_model.py"),
            str(data),
            results.algorithm
            + (
                ":" + ",".join(f"{name}={weight}" for name, weight in results.ensemble)
                if results.algorithm == "ensemble"
                else ""
            ),
            str(models),
        ],
        capture_output=True,
        text=True,
    )
    if fitted.returncode != 0:
        raise RuntimeError(f"peer_model.py failed: {fitted.stderr[-2000:]}")
    one = work / "passengers.jsonl"  # the bodies our server was measured with
    mlflow_body = work / "mlflow.jsonl"
    mlflow_body.write_text(
        "".join(
            json.dumps({"dataframe_records": [json.loads(line)]}) + "\n"
            for line in one.read_text().splitlines()
        )
    )
    bin_dir = plan.peers.parent
    servers = {
        "mlflow models serve": (
            [
                str(bin_dir / "mlflow"),
                "models",
                "serve",
                "-m",
                str(models / "mlflow-model"),
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                "{port}",
            ],
            "/invocations",
            mlflow_body,
            "/ping",
            {},
        ),
        "the exercise's way: functions-framework + pandas + pipeline.predict_proba": (
            [
                str(bin_dir / "functions-framework"),
                "--target",
                "predict",
                "--source",
                str(script_dir / "exercise_main.py"),
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
            ],
            "/",
            one,
            None,
            {"PEER_MODEL": str(models / "model.pkl")},
        ),
    }
    # the peers' venv first on PATH: mlflow starts its server as plain `uvicorn`
    path_env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name, (command, path, body, health, extra_env) in servers.items():
        port = free_port()
        log = work / f"peer-{port}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [c.replace("{port}", str(port)) for c in command],
                env={**os.environ, **path_env, **extra_env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_answering(proc, url + path, body, health and url + health, log)
            busy = wrk(url + path, body, 32, plan.seconds)
            time.sleep(plan.pause)
            lone = wrk(url + path, body, 1, plan.seconds)
        finally:
            proc.terminate()
            proc.wait()
        model = (
            f"model: scikit-learn pipeline, {results.algorithm}'s family with its library's "
            "defaults; nothing logged"
        )
        results.add(
            "peers",
            f"{name}, 1 passenger, 32 connections",
            busy["rps"],
            "req/s",
            note=model + f"; minimlops is {results.ours['rps'] / busy['rps']:,.0f}× this",
        )
        results.add(
            "peers",
            f"{name}, 1 connection, p50",
            lone.get("p50_ms", 0),
            "ms",
            note=f"minimlops: {results.ours_lone.get('p50_ms', 0):.2f} ms",
        )
        results.rows[-2]["ratio"] = results.ours["rps"] / busy["rps"]  # speed-up of ours
        if busy["non_2xx"]:
            raise RuntimeError(f"{name} answered {busy['non_2xx']:.0f} errors")


def _wait_answering(
    proc: subprocess.Popen[bytes],
    url: str,
    body: Path,
    health: str | None,
    log: Path,
    timeout: float = 180,
) -> None:
    """Until the peer answers a real request; its log if it exits first."""
    deadline = time.monotonic() + timeout
    probe = health or url
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{' '.join(map(str, proc.args))} exited ({proc.returncode}):\n"
                + log.read_text(errors="replace")[-2000:]
            )
        try:
            if probe == health:
                if httpx.get(health, timeout=5).status_code == 200:
                    probe = url
                    continue
            elif (
                httpx.post(
                    url,
                    content=body.read_bytes().split(b"\n", 1)[0],  # its first body
                    timeout=10,
                    headers={"content-type": "application/json"},
                ).status_code
                == 200
            ):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(
        f"{url} never answered a prediction:\n" + log.read_text(errors="replace")[-2000:]
    )


def _example_data(work: Path) -> Path:
    """The example file for the end-to-end run: MINIMLOPS_EXAMPLE_DATA or a
    download, checked now so a machine without either fails before measuring.

    Raises:
        RuntimeError: with the message that says how to provide it.
    """
    from minimlops import example_data
    from minimlops.config import Settings
    from minimlops.errors import ExampleDataError

    s = Settings.from_env(os.environ, home=work / "example")
    try:
        return example_data.ensure(s.cache_dir, local=s.example_data, url=s.example_url)
    except ExampleDataError as exc:
        raise RuntimeError(str(exc)) from None


def _child(kind: str, csv: Path, work: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "minimlops_bench.benchmark", kind, str(csv), str(work)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} failed: {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def ingestion(plan: Plan, work: Path, results: Results) -> None:
    """Our validated load vs pandas read_csv + row-wise validation + to_sql."""
    for rows in plan.ingest_rows:
        csv = work / f"passengers-{rows}.csv"
        write_csv(csv, rows, seed=2)
        ours = _child("ingest-ours", csv, work / f"ours-{rows}")
        theirs = _child("ingest-pandas", csv, work / f"pandas-{rows}")
        label = f"{rows:,} rows"
        results.add(
            "ingestion",
            f"pandas baseline, {label}",
            theirs["seconds"],
            "s",
            note=f"peak RSS {theirs['rss_mb']:.0f} MB",
        )
        results.add(
            "ingestion",
            f"minimlops ingest_data, {label}",
            ours["seconds"],
            "s",
            theirs["seconds"],
            f"peak RSS {ours['rss_mb']:.0f} MB",
        )
        results.rows[-1]["ratio"] = theirs["seconds"] / ours["seconds"]  # speed-up
    # Training on what the largest ingestion loaded; then on three times as
    # many rows (twice as many more land), to show its memory is bounded.
    rows = plan.ingest_rows[-1]
    home = work / f"ours-{rows}"
    first = _child("train-ours", work / f"passengers-{rows}.csv", home)
    more = work / f"passengers-{rows}-more.csv"
    write_csv(more, 2 * rows, seed=3, start_id=rows + 1)
    _child("ingest-ours", more, home)
    again = _child("train-ours", more, home)
    for n, trained in ((rows, first), (3 * rows, again)):
        results.add(
            "training",
            f"minimlops train_model, {n:,} rows",
            trained["seconds"],
            "s",
            note=f"peak RSS {trained['rss_mb']:.0f} MB; fitted on {trained['fit_rows']:,} "
            f"TRAIN rows; {trained['algorithm']} chosen by {trained['folds']}-fold "
            "cross-validation; ONNX export and parity check included",
        )
    results.rows[-1]["ratio"] = again["rss_mb"] / first["rss_mb"]  # memory for 3x the rows
    results.rows[-1]["note"] += f"; ratio: peak RSS vs {rows:,} rows"


def ingest_ours(csv: Path, work: Path) -> dict[str, float]:
    """In a child process: the ingest handler on the local backend."""
    from minimlops.bootstrap import build
    from minimlops.config import Settings
    from minimlops.domain.events import ObjectFinalized
    from minimlops.services.ingest import ingest_data

    app = build(Settings.from_env({}, home=work))
    info = app.deps.store.write_file("my-data-landing-zone", csv.name, csv)
    event = ObjectFinalized(bucket=info.bucket, name=info.name, generation=info.generation)
    started = time.perf_counter()
    (done,) = ingest_data(event, deps=app.deps)
    seconds = time.perf_counter() - started
    assert done.rows_loaded > 0
    app.close()
    return {"seconds": seconds, "rss_mb": _rss_mb(), "rows": done.rows_loaded}


def train_ours(csv: Path, work: Path) -> dict[str, Any]:
    """In a child process: the training handler (model selection, evaluation,
    ONNX export, storing the version) on the rows ``ingest_ours`` loaded."""
    from minimlops.bootstrap import build
    from minimlops.config import Settings
    from minimlops.domain.events import RetrainRequested
    from minimlops.services.train import registry_of, train_model

    app = build(Settings.from_env({}, home=work))  # trains in this process: measured here
    started = time.perf_counter()
    train_model(RetrainRequested(reason="benchmark"), deps=app.deps)
    seconds = time.perf_counter() - started
    meta = registry_of(app.deps).versions()[-1]
    app.close()
    return {
        "seconds": seconds,
        "rss_mb": _rss_mb(),
        "algorithm": meta["algorithm"],
        "folds": (meta.get("selection") or {}).get("folds") or app.deps.cv_folds,
        "fit_rows": meta["training"]["fit_rows"],
    }


def ingest_pandas(csv: Path, work: Path) -> dict[str, float]:
    """In a child process: the usual way, for comparison."""
    import sqlite3

    import pandas as pd

    started = time.perf_counter()
    df = pd.read_csv(csv)

    def valid(row: Any) -> bool:
        return (
            row["Pclass"] in (1, 2, 3)
            and row["Sex"] in ("male", "female")
            and row["Survived"] in (0, 1)
            and (pd.isna(row["Age"]) or 0 <= row["Age"] <= 150)
            and (pd.isna(row["Fare"]) or row["Fare"] >= 0)
        )

    df = df[df.apply(valid, axis=1)]
    work.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(work / "baseline.sqlite3") as con:
        df.to_sql("training_data", con, if_exists="append", index=False)
    return {"seconds": time.perf_counter() - started, "rss_mb": _rss_mb()}


def _rss_mb() -> float:
    """This process's peak resident memory since it started its program.

    Not ``ru_maxrss``: Linux carries it over from the parent's address space
    through fork and exec, so a child of a parent that once held 1.2 GB (the
    benchmark, after generating a big CSV) reported 1.2 GB itself.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def markdown(results: Results, info: dict[str, Any], smoke: bool) -> str:
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, "
        f"{info['date']}{' (smoke run: figures are not meaningful)' if smoke else ''}",
        "",
        "| group | measurement | value | ratio | note |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for r in results.rows:
        ratio = f"{r['ratio']:.2f}×" if r["ratio"] else ""
        lines.append(
            f"| {r['group']} | {r['name']} | {r['value']:,.2f} {r['unit']} | {ratio} | {r['note']} |"
        )
    return "\n".join(lines) + "\n"


def run(out_dir: Path, *, smoke: bool = False, peers_python: Path | None = None) -> dict[str, Any]:
    """Run every benchmark; write latest.json and latest.md into out_dir.

    With ``peers_python`` (the Python of a venv made from
    bench/peers/requirements.lock) the usual serving stacks run in the same
    session, compared with our server.
    """
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk")
    if peers_python is not None and not peers_python.exists():
        raise RuntimeError(f"{peers_python} not found: make bench-peers creates it")
    # absolute, not resolved: a venv's python is a symlink out of the venv
    peers_python = peers_python.absolute() if peers_python is not None else None
    plan, results = Plan.make(smoke, peers_python), Results()
    commit = _commit()  # before this run writes its own results into the tree
    with tempfile.TemporaryDirectory(prefix="minimlops-bench-") as tmp:
        work = Path(tmp)
        plan.example = _example_data(work)
        with floor_server() as floor:  # kept up: the servers are measured in turns with it
            serving(plan, work, results, floor)
            serving_wide(plan, work, results, floor)
            end_to_end(plan, work, results, floor)
        if plan.peers is not None:
            peers(plan, work, results)
        ingestion(plan, work, results)
    info = machine()
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"machine": info, "smoke": smoke, "results": results.rows}
    (out_dir / "latest.json").write_text(json.dumps(report, indent=2))
    (out_dir / "latest.md").write_text(markdown(results, info, smoke))
    if not smoke:
        append_history(out_dir / "history.jsonl", info, results.rows, commit)
    return report


def _commit() -> str:
    """The commit measured; "-dirty" when the tree held changes not yet committed."""
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def append_history(
    path: Path, info: dict[str, Any], rows: list[dict[str, Any]], commit: str
) -> None:
    """One line per run, appended: when, which commit, which machine, the
    floor it was measured against, and every figure with its ratio. latest.*
    are the current figures; this is how they moved."""
    floor = next((r["value"] for r in rows if r["name"].startswith("bare ASGI floor")), None)
    line = {
        "date": info["date"],
        "commit": commit or None,
        "machine": info,
        "floor_req_s": floor,
        "figures": {
            r["name"]: {"value": r["value"], "unit": r["unit"], "ratio": r["ratio"]} for r in rows
        },
    }
    with path.open("a") as fh:
        fh.write(json.dumps(line, ensure_ascii=False) + "\n")


if __name__ == "__main__":  # child processes of the ingestion and training benchmarks
    kind, csv_path, work_dir = sys.argv[1:4]
    fn = {"ingest-ours": ingest_ours, "ingest-pandas": ingest_pandas, "train-ours": train_ours}[
        kind
    ]
    print(json.dumps(fn(Path(csv_path), Path(work_dir))))
