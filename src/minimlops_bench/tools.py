"""What the benchmarks share: the plan, the results table, wrk, and running
``minimlops up`` in its own process."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ONE = {"Pclass": 3, "Sex": "male", "Age": 22, "SibSp": 1, "Parch": 0, "Fare": 7.25, "Embarked": "S"}
# Every line of the body file is one request's body, sent in turn. Each is
# formatted once, in init; request() then costs a Lua call a request on the
# load generator's core (a fixed body costs none), for the floor's runs and
# ours alike, so ratios measured before distinct bodies are not comparable.
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {{}}
for line in io.lines({body}) do
  if #line > 0 then bodies[#bodies + 1] = line end
end
assert(#bodies > 0, "no request body in " .. {body})
local requests, at = {{}}, 0
init = function(args)
  for i, body in ipairs(bodies) do requests[i] = wrk.format(nil, nil, nil, body) end
end
request = function()
  at = at % #requests + 1
  return requests[at]
end
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
    floor: float = 0.0  # the floor's req/s (median of its runs)
    algorithm: str = "random_forest"
    ensemble: list[tuple[str, float]] = field(default_factory=list)  # (member, weight)

    def add(
        self,
        group: str,
        name: str,
        value: float,
        unit: str,
        baseline: float | None = None,
        note: str = "",
        *,
        ratio: float | None = None,
    ) -> None:
        """A row; its ratio is ``value / baseline``, or ``ratio`` as given."""
        if ratio is None and baseline:
            ratio = value / baseline
        self.rows.append(
            {
                "group": group,
                "name": name,
                "value": value,
                "unit": unit,
                "ratio": ratio,
                "note": note,
            }
        )


def wrk(url: str, body_file: Path, connections: int, seconds: float) -> dict[str, float]:
    """Requests/s and latency percentiles (ms) from one wrk run."""
    script = body_file.with_suffix(".lua")
    script.write_text(LUA.format(body=json.dumps(str(body_file))))  # a quoted Lua string
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        if m:
            result[f"p{pct}_ms"] = float(m.group(1)) * UNITS[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return result


class DiskAlone:
    """The disk's own part of a logged prediction: a log row appended and
    synced as the journal process does it (``SegmentWriter.append``), one
    after another, with nothing else of the server. Made ready once, as a
    server is once it has run a while: appends over zeros laid down ahead,
    and the next segment's zeros already whole (no 64 MB being written
    beside the measurement). A server answering one request at a time waits
    for one of these each time."""

    def __init__(self, directory: Path, row: dict[str, Any]) -> None:
        from minimlops.adapters.journal import SegmentWriter, encode

        self.dir, self.line = directory, encode([row])
        self.writer = SegmentWriter(directory)
        self.writer.settle()  # the first spare made...
        self.writer.append(self.line)  # ...moved into place: over zeros from now on
        self.writer.settle()  # and the next one whole
        self.over_zeros = self.writer.over_zeros

    def measure(self, seconds: float) -> dict[str, float]:
        """p50 and p99 (ms) of appends made one after another for ``seconds``."""
        took: list[float] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            self.writer.append(self.line)
            took.append(time.perf_counter() - started)
        took.sort()
        return {
            "p50_ms": took[len(took) // 2] * 1e3,
            "p99_ms": took[min(len(took) - 1, int(len(took) * 0.99))] * 1e3,
            "n": float(len(took)),
        }

    def close(self) -> None:
        self.writer.settle()  # (a rotation mid-run may have started a spare)
        self.writer.close()
        shutil.rmtree(self.dir, ignore_errors=True)  # its segments: 64 MB each


# Rounds of the floor and a server in turns. These machines share their cores:
# their speed drifts by half within a minute (the floor measured 12,000 and
# 29,000 req/s a minute apart). A ratio of two runs made a minute apart
# measures that drift as much as the server; a round's two runs are seconds
# apart, and the median of the rounds' ratios is what is reported.
ROUNDS = 3


@dataclass
class Paired:
    """A server's req/s against the floor's, round by round."""

    floor: list[float]
    ours: list[float]
    non_2xx: float

    @property
    def ratios(self) -> list[float]:
        return [o / f for o, f in zip(self.ours, self.floor, strict=True)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def rps(self) -> float:
        return statistics.median(self.ours)

    def note(self) -> str:
        return (
            f"median of {len(self.ours)} rounds, each against a floor run just before it: "
            + " / ".join(f"{r:.2f}" for r in self.ratios)
        )


def paired(
    floor_url: str, floor_body: Path, url: str, body: Path, seconds: float, rounds: int = ROUNDS
) -> Paired:
    """The floor then our server at 32 connections, ``rounds`` times, each run
    ``seconds`` long."""
    floors, ours, errors = [], [], 0.0
    for _ in range(rounds):
        floors.append(wrk(floor_url, floor_body, 32, seconds)["rps"])
        run = wrk(url, body, 32, seconds)
        ours.append(run["rps"])
        errors += run["non_2xx"]
    return Paired(floors, ours, errors)


@dataclass
class Repeated:
    """The same run ``rounds`` times: its median, and each round for the note."""

    rps: list[float]
    non_2xx: float

    @property
    def median(self) -> float:
        return statistics.median(self.rps)

    def note(self, per: float, unit: str) -> str:
        return (
            f"median of {len(self.rps)} rounds: "
            + " / ".join(f"{r * per:,.0f}" for r in self.rps)
            + f" {unit}"
        )


def repeated(
    url: str, body: Path, connections: int, seconds: float, rounds: int = ROUNDS
) -> Repeated:
    """One load ``rounds`` times, each run ``seconds`` long: a row with an
    absolute target (no floor does batches) is the median of its rounds, not
    one run that the machine's noise moves by 20 %."""
    runs = [wrk(url, body, connections, seconds) for _ in range(rounds)]
    return Repeated([r["rps"] for r in runs], sum(r["non_2xx"] for r in runs))


@contextlib.contextmanager
def floor_server() -> Iterator[str]:
    """The bare ASGI floor (``entrypoints.floor``) in its own process, as long
    as the block runs: its URL, once it answers."""
    port = free_port()
    floor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "minimlops_bench.floor:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(url, json={}, timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or floor.poll() is not None:
                    raise RuntimeError("the floor server did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        floor.terminate()
        floor.wait()


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


def _tree_cpu(root: int) -> float | None:
    """CPU seconds used so far by process ``root`` and everything under it
    (Linux ``/proc``; None elsewhere)."""
    import os

    proc = Path("/proc")
    if not (proc / str(root) / "stat").exists():
        return None
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone between the listing and the read
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        parent[int(entry.name)] = int(fields[1])
        # utime + stime, and cutime + cstime: a child's time moves into its
        # parent's when it is reaped, so the tree's total never drops
        ticks[int(entry.name)] = sum(int(f) for f in fields[11:15])
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sum(ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def wait_quiet(pid: int, *, window: float = 1.0, busy: float = 0.1, timeout: float = 60) -> float:
    """Wait until process ``pid`` and its children use under ``busy`` of a core
    over ``window`` seconds; return the seconds waited. Still busy after
    ``timeout`` seconds: says so on stderr and returns (the run is measured
    anyway, and the warning tells why it may be slow).

    A server that has just promoted a model is not idle: the training process
    it starts for the next job imports scikit-learn at a full core for 2-4 s.
    A run measured then shares the two cores with it (measured: the floor's
    first run after a promotion well below its next ones)."""
    started = time.monotonic()
    last = _tree_cpu(pid)
    while last is not None:
        if time.monotonic() - started >= timeout:
            print(
                f"bench: process {pid} and its children still busy after {timeout:g} s; "
                "measuring anyway",
                file=sys.stderr,
            )
            break
        time.sleep(window)
        now = _tree_cpu(pid)
        if now is None or 0 <= now - last < busy * window:  # a drop: a process left the tree
            break
        last = now
    return time.monotonic() - started


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
    """Return as soon as ``POST /predict`` answers 200 (polled every 20 ms).

    One client, its connection kept open: a client per poll (``httpx.post``)
    builds an SSL context each time and took half a core of the two, slowing
    the training it was waiting for."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            try:
                if client.post(url + "/predict", json=ONE).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.02)
    raise RuntimeError(f"no prediction within {timeout:g} s {after}")
