"""Soak test: 10 minutes of mixed traffic against `minimlops up` on loopback.

Steady rates from a separate process: predictions, feedback for some of them,
a file landing every minute and one retraining. Reports errors (must be 0),
p50/p99 latency per minute and the server's resident memory (growth must stay
under 10 %). Memory is compared after a warm-up of the same mixed traffic
(first-touch allocations are not growth), as the median of the samples in the
first measured minute against the median in the last one; the raw first and
last samples are reported too. Usage: python bench/soak.py [--minutes 10]
[--warmup 1] [--rate 200] [--out bench/results/soak.md]; `make soak` runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from minimlops.generate import write_csv

ONE = {"Pclass": 3, "Sex": "male", "Age": 22, "SibSp": 1, "Parch": 0, "Fare": 7.25, "Embarked": "S"}


def _own_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:  # it just exited
        pass
    return 0.0


def rss_mb(pid: int) -> float:
    """The server's resident memory plus its journal process's (the prediction
    log's writer, a child since it left the server's threads). The training
    child is left out: a fresh one per job, its memory is given back each time."""
    total = _own_rss_mb(pid)
    for child in Path("/proc").glob("[0-9]*"):
        try:
            stat = (child / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != pid:
                continue
            if b"minimlops.adapters.journal" in (child / "cmdline").read_bytes():
                total += _own_rss_mb(int(child.name))
        except (OSError, ValueError, IndexError):
            continue
    return total


async def traffic(
    url: str,
    minutes: float,
    rate: float,
    home: Path,
    token: str,
    first_file: int = 0,
    retrain: bool = True,
) -> dict:
    latencies: dict[int, list[float]] = {}
    errors: list[str] = []
    start = time.monotonic()
    end = start + minutes * 60
    rng = random.Random(1)
    limits = httpx.Limits(max_connections=64, keepalive_expiry=2)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:

        async def one() -> None:
            body = {**ONE, "Age": rng.randint(1, 70), "Pclass": rng.choice([1, 2, 3])}
            t0 = time.monotonic()
            try:
                r = await http.post("/predict", json=body)
            except httpx.HTTPError as exc:
                errors.append(f"predict: {exc!r}")
                return
            minute = int((t0 - start) // 60)
            latencies.setdefault(minute, []).append((time.monotonic() - t0) * 1000)
            if r.status_code != 200:
                errors.append(f"predict {r.status_code}: {r.text[:200]}")
            elif rng.random() < 0.05:  # a label arrives for 5 % of the answers
                f = await http.post(
                    "/feedback", json={"uuid": r.json()["uuid"], "Survived": rng.randint(0, 1)}
                )
                if f.status_code != 200:
                    errors.append(f"feedback {f.status_code}: {f.text[:200]}")

        tasks: set[asyncio.Task] = set()
        next_file, trained, i = start + 30, not retrain, first_file
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_file:  # a file lands every minute
                path = home / "buckets" / "my-data-landing-zone" / f"soak-{i}.csv"
                write_csv(
                    Path(str(path) + ".part"), 2000, seed=100 + i, start_id=1_000_000 + i * 2000
                )
                os.replace(str(path) + ".part", path)
                next_file, i = now + 60, i + 1
            if not trained and now - start > minutes * 30:  # one retraining, half-way
                r = await http.post(
                    "/train", json={"reason": "soak"}, headers={"Authorization": f"Bearer {token}"}
                )
                trained = r.status_code == 202
                if not trained:
                    errors.append(f"train {r.status_code}")
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)
    per_minute = []
    for m in sorted(latencies):
        xs = sorted(latencies[m])
        per_minute.append(
            {
                "minute": m + 1,
                "requests": len(xs),
                "p50_ms": statistics.median(xs),
                "p99_ms": xs[min(len(xs) - 1, int(len(xs) * 0.99))],
            }
        )
    return {"errors": errors, "per_minute": per_minute, "files": i - first_file}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument(
        "--warmup", type=float, default=1, help="minutes of mixed traffic before measuring"
    )
    ap.add_argument("--out", default="bench/results/soak.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="minimlops-soak-") as tmp:
        home = Path(tmp) / "home"
        (home / "buckets" / "my-data-landing-zone").mkdir(parents=True)
        write_csv(home / "buckets" / "my-data-landing-zone" / "start.csv", 891, seed=1)
        port = 18000 + os.getpid() % 1000
        env = {
            **os.environ,
            "MINIMLOPS_HOME": str(home),
            "MINIMLOPS_PORT": str(port),
            "MINIMLOPS_LOG_LEVEL": "WARNING",
            "MINIMLOPS_MONITOR_EVERY": "60",
        }
        server = subprocess.Popen([sys.executable, "-m", "minimlops", "up"], env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            with httpx.Client(base_url=url) as warm:  # warm-up, then the baseline RSS
                for _ in range(2000):
                    warm.post("/predict", json=ONE)
            token = json.loads((home / "server.json").read_text())["token"]
            if args.warmup:  # every kind of work once: landing, training, feedback
                warm_result = asyncio.run(
                    traffic(
                        url, args.warmup, args.rate, home, token, first_file=1000, retrain=False
                    )
                )
                if warm_result["errors"]:
                    print("warm-up errors:", warm_result["errors"][:5])
            before = rss_mb(server.pid)
            samples: list[float] = []
            sampler_stop = False

            duck: list[float] = []

            def sample() -> None:
                auth = {"Authorization": f"Bearer {token}"}
                sql = {
                    "sql": "SELECT CAST(sum(memory_usage_bytes) AS BIGINT) AS b FROM duckdb_memory()"
                }
                while not sampler_stop:
                    samples.append(rss_mb(server.pid))
                    try:
                        r = httpx.post(url + "/query", json=sql, headers=auth, timeout=10)
                        duck.append((r.json()["rows"][0]["b"] or 0) / 2**20)
                    except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError):
                        pass
                    time.sleep(10)

            import threading

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            result = asyncio.run(traffic(url, args.minutes, args.rate, home, token))
            sampler_stop = True
            after = rss_mb(server.pid)
            versions = len(httpx.get(url + "/models").json()["versions"])
        finally:
            server.terminate()
            server.wait()
    first, last = statistics.median(samples[:6]), statistics.median(samples[-6:])
    growth = (last - first) / first * 100
    lines = [
        f"Soak: {args.minutes:g} min at {args.rate:g} predictions/s (+5 % feedback) after "
        f"{args.warmup:g} min of warm-up, {result['files']} files landed, {versions} model "
        f"versions; errors: {len(result['errors'])}; RSS of the server and its journal process (median of each minute's samples) "
        f"{first:.0f} MB in the first minute → {last:.0f} MB in the last ({growth:+.1f} %); "
        f"single samples {before:.0f} → {after:.0f} MB",
        "",
        "| minute | requests | p50 ms | p99 ms |",
        "| ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {m['minute']} | {m['requests']} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} |"
        for m in result["per_minute"]
    ]
    lines += [
        "",
        "RSS every 10 s (MB): " + ", ".join(f"{x:.0f}" for x in samples),
        "",
        "of which DuckDB's buffer pool (MB): " + ", ".join(f"{x:.0f}" for x in duck),
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    for e in result["errors"][:20]:
        print("error:", e)
    return 0 if not result["errors"] and growth < 10 else 1


if __name__ == "__main__":
    sys.exit(main())
