"""Run ``minimlops`` for real: a server process on a loopback port, and CLI calls."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import TEST_BUDGET_S, example_csv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its dead parent's reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(predicate: Any, timeout: float, what: Any) -> Any:
    """Poll until predicate() is truthy and return it; ``what`` (a text, or a
    callable giving one, e.g. a log read at the end) names it on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIMLOPS_")}
    real = example_csv()
    if real is not None:
        env["MINIMLOPS_EXAMPLE_DATA"] = str(real)
    env.update(
        {
            "MINIMLOPS_HOME": str(home),
            "MINIMLOPS_SETTLE_SECONDS": "0.2",
            "MINIMLOPS_CV_FOLDS": "3",
            "MINIMLOPS_TRAINING_BUDGET": str(TEST_BUDGET_S),
            **extra,
        }
    )
    return env


def cli(
    home: Path, *args: str, check: bool = True, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run the command line as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "minimlops", *args],
        env=env_for(home, **extra),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"minimlops {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


class Server:
    """``minimlops up`` in a child process."""

    def __init__(self, home: Path, *, own_group: bool = False, **extra: str) -> None:
        """``own_group``: in a process group of its own, as a shell or a
        supervisor starts it, so :meth:`signal_group` reaches every process
        of it as Ctrl-C does."""
        self.home, self.port = home, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(home.parent / f"server-{self.port}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "minimlops", "up", "--port", str(self.port)],
            env=env_for(home, **extra),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=own_group,
        )
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def wait_healthy(self, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.output()}")
            try:
                r = self.http.get("/healthz")
                if r.status_code == 200:
                    return r.json()  # type: ignore[no-any-return]
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not healthy in {timeout}s:\n{self.output()}")

    @property
    def token(self) -> str:
        return json.loads((self.home / "server.json").read_text())["token"]

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return (self.home.parent / f"server-{self.port}.log").read_text()

    def wait_for(self, predicate: Any, timeout: float = 90, what: str = "condition") -> Any:
        return wait_until(predicate, timeout, lambda: f"{what}:\n{self.output()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.http.close()
        self.log.close()
        return self.proc.returncode

    def children(self) -> list[int]:
        """Processes the server started (its training process)."""
        kids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                kids.append(int(stat.parent.name))
        return kids

    def signal_group(self, sig: int, timeout: float = 60) -> float:
        """Send ``sig`` to the whole process group (Ctrl-C in a terminal, or a
        supervisor's stop); return the seconds until the server exited."""
        sent = time.monotonic()
        os.killpg(self.proc.pid, sig)
        self.proc.wait(timeout)
        took = time.monotonic() - sent
        self.http.close()
        self.log.close()
        return took

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.http.close()
        self.log.close()


EXERCISE_REQUEST = {
    "Pclass": 3,
    "Name": "Some Name",
    "Sex": "male",
    "Age": 22,
    "SibSp": 1,
    "Parch": 0,
    "Ticket": "A/5 21171",
    "Fare": 7.25,
    "Cabin": "",
    "Embarked": "S",
}
MODEL_FIELDS_ONLY = {
    k: EXERCISE_REQUEST[k] for k in ("Pclass", "Sex", "Age", "SibSp", "Parch", "Fare", "Embarked")
}
