"""``minimlops bench``'s serving rows: the bare ASGI floor, then our server on
the Titanic example and on the wide churn project, one passenger and batches;
cold start and end to end."""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import httpx

from minimlops.generate import passengers, write_csv
from minimlops_bench.tools import (
    ONE,
    ROUNDS,
    DiskAlone,
    Paired,
    Plan,
    Results,
    cold_start,
    first_prediction,
    free_port,
    minimlops_up,
    paired,
    repeated,
    wait_healthy,
    wait_quiet,
    wrk,
)

# The serving runs measure serving. The monitor stays away during them: its
# checks, and a retraining one of them may start, would share the two cores
# with a run (a retraining during one: a p99 of ~110 ms at one connection
# instead of ~4 ms, measured).
QUIET = {"MINIMLOPS_MONITOR_EVERY": "3600"}
# a log row of one passenger, as /predict writes it (the disk's own rows)
LOG_ROW = {
    "uuid": "6f1c2b0e-2f4b-4c8e-9a57-3d2e1f0a9b8c",
    "created_at": "2026-01-01T00:00:00.000000Z",
    "model_version": "1",
    **ONE,
    "probability": 0.1234567,
    "prediction": 0,
}


def serving(plan: Plan, work: Path, results: Results, floor: str) -> None:
    """Our server against the floor, in turns (see ``bench_tools.paired``):
    one passenger @32, then @1 (latency) and batches of 1,000 @4."""
    one, batch = passenger_bodies(work)
    home = work / "home"
    landing = home / "buckets" / "my-data-landing-zone"
    landing.mkdir(parents=True)
    write_csv(landing / "passengers.csv", 891, seed=1)
    port = free_port()
    env = {
        **os.environ,
        "MINIMLOPS_HOME": str(home),
        "MINIMLOPS_PORT": str(port),
        "MINIMLOPS_LOG_LEVEL": "WARNING",
        **QUIET,
    }
    url = f"http://127.0.0.1:{port}"
    seconds = plan.seconds / 2  # a round is two runs
    disk = DiskAlone(work / "disk", LOG_ROW)  # (its zeros written before any run)
    with minimlops_up(env) as server:
        wait_healthy(url + "/healthz")
        wait_quiet(server.pid)
        single = paired(floor, one, url + "/predict", one, seconds)
        time.sleep(plan.pause)  # let the queue drain before measuring latency
        lone = [
            (
                wrk(floor, one, 1, seconds),
                disk.measure(seconds),
                wrk(url + "/predict", one, 1, seconds),
            )
            for _ in range(ROUNDS)
        ]
        time.sleep(plan.pause)
        many = repeated(url + "/predict", batch, 4, seconds)
        time.sleep(plan.pause)
        first_explain, explains = _explanations(url, one, seconds)
        newest = httpx.get(url + "/models").json()["versions"][0]
        algorithm = newest["algorithm"]
        if algorithm == "ensemble":  # the peers build the same members, weighted alike
            members = httpx.get(f"{url}/models/{newest['version']}").json()["selection"]
            results.ensemble = [(m["name"], m["weight"]) for m in members["ensemble"]]
    disk.close()
    cold = cold_start(env, url)
    two = _two_processes({**env, "MINIMLOPS_SERVING_PROCESSES": "2"}, url, floor, one, seconds)
    note = f"model: {algorithm}; every prediction durably logged before the answer"
    results.add(
        "serving",
        "bare ASGI floor, 32 connections",
        statistics.median(single.floor),
        "req/s",
        ratio=1.0,
        note="median of the runs paired with the next row's",
    )
    results.floor = statistics.median(single.floor)
    results.add(
        "serving",
        "minimlops /predict, 1 passenger, 32 connections",
        single.rps,
        "req/s",
        ratio=single.ratio,
        note=f"{note}; {single.note()}",
    )
    results.ours, results.algorithm = {"rps": single.rps}, algorithm
    results.ours_lone = {"p50_ms": statistics.median(o.get("p50_ms", 0.0) for _, _, o in lone)}
    results.add(
        "serving",
        "minimlops /predict, 1 passenger, 32 connections, 2 serving processes",
        two.rps,
        "req/s",
        ratio=two.ratio,
        note=f"MINIMLOPS_SERVING_PROCESSES=2; {two.note()}",
    )
    for pct in ("p50", "p99"):
        floors = [f.get(f"{pct}_ms", 0.0) for f, _, _ in lone]
        disks = [d[f"{pct}_ms"] for _, d, _ in lone]
        ours = [o.get(f"{pct}_ms", 0.0) for _, _, o in lone]
        # a run wrk gave no percentile for has no ratio: the row then has none
        # (and its target fails), never a 0 that would pass it
        ratios = [o / f for f, o in zip(floors, ours, strict=True) if f and o]
        results.add(
            "serving",
            f"bare ASGI floor, 1 connection, {pct}",
            statistics.median(floors),
            "ms",
            ratio=1.0,
            note=f"median of {ROUNDS} runs, each just before the next row's",
        )
        results.add(
            "serving",
            f"minimlops /predict, 1 connection, {pct}",
            statistics.median(ours),
            "ms",
            ratio=statistics.median(ratios) if len(ratios) == len(lone) else None,
            note=f"ratio: median of {ROUNDS} rounds' ratios to the floor run just before "
            f"(lower is better): {' / '.join(f'{r:.2f}' for r in ratios)}; the row is durably "
            "logged (an fdatasync) before each answer",
        )
        results.add(
            "serving",
            f"the disk alone: one log row appended and synced, {pct}",
            statistics.median(disks),
            "ms",
            note="as the journal process writes a row ("
            + ("over zeros laid down ahead" if disk.over_zeros else "appended: no zeros ahead")
            + f", then an fdatasync), one after another with no server, on the data home's "
            f"disk; median of {ROUNDS} runs, each between the floor's run and ours: "
            + " / ".join(f"{d:.2f}" for d in disks),
        )
    results.add(
        "serving",
        "minimlops /predict, batches of 1,000, 4 connections",
        many.median * 1000,
        "rows/s",
        note=many.note(1000, "rows/s"),
    )
    method = f"model: {algorithm}; {first_explain[1]}"
    for pct in ("p50", "p99"):
        runs = [e.get(f"{pct}_ms") for e in explains]
        if not all(runs):  # never a 0 that would pass the target
            raise RuntimeError(f"wrk gave no {pct} for /explain: {explains}")
        results.add(
            "serving",
            f"minimlops /explain, 1 passenger, 1 connection, {pct}",
            statistics.median(runs),
            "ms",
            note=f"{method}; median of {len(runs)} runs: " + " / ".join(f"{r:.2f}" for r in runs),
        )
    results.add(
        "serving",
        "minimlops /explain, the first after start",
        first_explain[0],
        "s",
        note=f"{method}; the server loads the version's native model (and shap for a "
        "forest) on the first explanation, not at start",
    )
    results.add(
        "serving", "cold start: `minimlops up` on an existing home to first prediction", cold, "s"
    )
    errors = (
        single.non_2xx
        + sum(o["non_2xx"] for _, _, o in lone)
        + many.non_2xx
        + two.non_2xx
        + sum(e["non_2xx"] for e in explains)
    )
    results.add("serving", "non-2xx answers during the runs", errors, "responses")


def _explanations(
    url: str, body: Path, seconds: float
) -> tuple[tuple[float, str], list[dict[str, float]]]:
    """The first ``POST /explain`` after start (seconds, and the method the
    answer names), then one passenger at a time at one connection, ROUNDS runs."""
    row = json.loads(body.read_text().splitlines()[0])
    started = time.perf_counter()
    r = httpx.post(url + "/explain", json=row, timeout=120)
    took = time.perf_counter() - started
    if r.status_code != 200:
        raise RuntimeError(f"/explain answered {r.status_code}: {r.text[:300]}")
    method = str(r.json().get("method", ""))
    return (took, method), [wrk(url + "/explain", body, 1, seconds) for _ in range(ROUNDS)]


def passenger_bodies(work: Path) -> tuple[Path, Path]:
    """Request bodies of 1,000 generated passengers (a seed of their own, from
    the distribution the served model is trained on), in the exercise's
    shape: one a line, sent in turn (``tools.LUA``), and all in one batch.
    Distinct rows, not one repeated: a tree model's one row then costs what
    real traffic costs it (the same row walks the same branches, which the
    CPU learns to predict)."""
    rows = passengers(1000, seed=2, start_id=10_000).to_pylist()
    bodies = [{k: row[k] for k in ONE} for row in rows]
    one, batch = work / "passengers.jsonl", work / "batch.json"
    one.write_text("".join(json.dumps(b, allow_nan=False) + "\n" for b in bodies))
    batch.write_text(json.dumps(bodies, allow_nan=False))
    return one, batch


def _two_processes(env: dict[str, str], url: str, floor: str, body: Path, seconds: float) -> Paired:
    """/predict at 32 connections with a second serving process, against the floor."""
    with minimlops_up(env) as server:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # both processes serve (the second starts after)
            try:
                if httpx.get(url + "/healthz", timeout=2).json().get("serving_processes") == 2:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError("the second serving process did not start")
        wait_quiet(server.pid)
        return paired(floor, body, url + "/predict", body, seconds)


def end_to_end(plan: Plan, work: Path, results: Results, floor: str) -> None:
    """Seconds from the example file (891 rows) landing on a server that has
    no model yet to the first prediction answered by the model trained on it;
    then one passenger at 32 connections against the floor on that model (the
    rows above serve a model of generated passengers: the champions differ)."""
    home, port = work / "e2e-home", free_port()
    env = {
        **os.environ,
        "MINIMLOPS_HOME": str(home),
        "MINIMLOPS_PORT": str(port),
        "MINIMLOPS_LOG_LEVEL": "WARNING",
        "MINIMLOPS_EXAMPLE_DATA": str(plan.example),
        **QUIET,
    }
    url = f"http://127.0.0.1:{port}"
    with minimlops_up(env) as server:  # on first start the server lands the example data
        first_prediction(url, 120, "of the file landing")
        served = time.time()
        landed = next((home / "buckets").glob("*/titanic.csv")).stat().st_mtime
        wait_quiet(server.pid)
        one = work / "passengers.jsonl"
        single = paired(floor, one, url + "/predict", one, plan.seconds / 2)
        algorithm = httpx.get(url + "/models").json()["versions"][0]["algorithm"]
    results.add(
        "serving",
        "end to end: a file landing (891 rows) to its model's first prediction",
        served - landed,
        "s",
        note="announced at once (written whole by the server), validate and load, "
        "train and gate in a child process, promote, load the ONNX model",
    )
    results.add(
        "serving",
        "minimlops /predict, 1 passenger, 32 connections, the exercise's file",
        single.rps,
        "req/s",
        ratio=single.ratio,
        note=f"model: {algorithm}, trained on the exercise's titanic.csv (the rows "
        f"above: on 891 generated passengers); {single.note()}",
    )
    if single.non_2xx:
        raise RuntimeError(f"the example's server answered {single.non_2xx:.0f} errors")


WIDE = "churn"  # the example with 28 columns of every type, names with spaces and dashes


def serving_wide(plan: Plan, work: Path, results: Results, floor: str) -> None:
    """The same serving rows on the wide generated project: one row at 32
    connections against the same floor (with the passenger's body, as the
    first row's), in turns; batches of 1,000 at 4."""
    from minimlops import projects
    from minimlops.generate import rows_for, write_project_csv

    project = projects.load(WIDE)
    home = work / "wide-home"
    landing = home / "buckets" / "my-data-landing-zone"
    landing.mkdir(parents=True)
    write_project_csv(project, landing / "churn.csv", 5000, seed=1)
    rows = rows_for(project, 1000, seed=2, start_id=10_000).to_pylist()
    requests = [{k: v for k, v in r.items() if k != project.target} for r in rows]
    one, batch = work / "wide-rows.jsonl", work / "wide-batch.json"
    one.write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in requests))
    batch.write_text(json.dumps(requests, allow_nan=False))
    port = free_port()
    env = {
        **os.environ,
        "MINIMLOPS_HOME": str(home),
        "MINIMLOPS_PORT": str(port),
        "MINIMLOPS_LOG_LEVEL": "WARNING",
        "MINIMLOPS_PROJECT": WIDE,
        **QUIET,
    }
    url = f"http://127.0.0.1:{port}"
    with minimlops_up(env) as server:
        wait_healthy(url + "/healthz")
        wait_quiet(server.pid)
        single = paired(floor, work / "passengers.jsonl", url + "/predict", one, plan.seconds / 2)
        time.sleep(plan.pause)
        many = repeated(url + "/predict", batch, 4, plan.seconds / 2)
        algorithm = httpx.get(url + "/models").json()["versions"][0]["algorithm"]
    note = (
        f"project {WIDE}: {len(project.columns)} columns, {len(project.features)} features; "
        f"model: {algorithm}"
    )
    results.add(
        "serving",
        "minimlops /predict, wide project, 1 row, 32 connections",
        single.rps,
        "req/s",
        ratio=single.ratio,
        note=f"{note}; {single.note()}",
    )
    results.add(
        "serving",
        "minimlops /predict, wide project, batches of 1,000, 4 connections",
        many.median * 1000,
        "rows/s",
        note=f"{note}; {many.note(1000, 'rows/s')}",
    )
    if single.non_2xx or many.non_2xx:
        raise RuntimeError(f"the wide project answered {single.non_2xx + many.non_2xx:.0f} errors")
