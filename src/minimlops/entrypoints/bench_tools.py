"""What the benchmarks share: the plan, the results table, wrk, and running
``minimlops up`` in its own process."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ONE = {"Pclass": 3, "Sex": "male", "Age": 22, "SibSp": 1, "Parch": 0, "Fare": 7.25, "Embarked": "S"}
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open("{body}"):read("*a")
"""
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class Plan:
    """Durations and sizes; ``smoke`` shrinks everything to check it still works."""

    seconds: float = 10.0
    pause: float = 3.0
    ingest_rows: tuple[int, ...] = (100_000, 1_000_000)
    smoke: bool = False
    peers: Path | None = None  # the Python of the peers' venv (make bench-peers)
    example: Path | None = None  # the Titanic file, found or fetched before anything runs

    @classmethod
    def make(cls, smoke: bool, peers: Path | None = None) -> Plan:
        plan = cls(2.0, 0.5, (5_000, 20_000), True) if smoke else cls()
        plan.peers = peers
        return plan


@dataclass
class Results:
    rows: list[dict[str, Any]] = field(default_factory=list)
    ours: dict[str, float] = field(default_factory=dict)  # /predict @32, for the peers
    ours_lone: dict[str, float] = field(default_factory=dict)  # /predict @1
    algorithm: str = "random_forest"

    def add(self, group: str, name: str, value: float, unit: str,
            baseline: float | None = None, note: str = "") -> None:  # fmt: skip
        ratio = value / baseline if baseline else None
        self.rows.append({"group": group, "name": name, "value": value, "unit": unit,
                          "ratio": ratio, "note": note})  # fmt: skip


def wrk(url: str, body_file: Path, connections: int, seconds: float) -> dict[str, float]:
    """Requests/s and latency percentiles (ms) from one wrk run."""
    script = body_file.with_suffix(".lua")
    script.write_text(LUA.format(body=body_file))
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
         "-s", str(script), url], capture_output=True, text=True, check=True).stdout  # fmt: skip
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        if m:
            result[f"p{pct}_ms"] = float(m.group(1)) * UNITS[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return result


def wait_healthy(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become healthy")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def minimlops_up(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """``minimlops up`` in its own process, stopped (SIGTERM, waited for) on leaving."""
    server = subprocess.Popen([sys.executable, "-m", "minimlops", "up"], env=env)
    try:
        yield server
    finally:
        server.terminate()
        server.wait()


def cold_start(env: dict[str, str], url: str) -> float:
    """Seconds from starting ``minimlops up`` on an existing data home to the
    first answered prediction."""
    started = time.perf_counter()
    with minimlops_up(env):
        first_prediction(url, 60, "of a restart")
        return time.perf_counter() - started


def first_prediction(url: str, timeout: float, after: str) -> None:
    """Return as soon as ``POST /predict`` answers 200 (polled every 20 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.post(url + "/predict", json=ONE, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"no prediction within {timeout:g} s {after}")


