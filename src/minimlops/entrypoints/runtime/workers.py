"""Extra serving processes: POST /predict on more than one core.

One Python process answers at most ~15,000 single-passenger requests a second
on one core of these machines: the event loop and the model call share one
interpreter. With ``MINIMLOPS_SERVING_PROCESSES=N``, ``minimlops up`` starts, beside the server,
``serving_processes - 1`` processes that listen on the same address
(``SO_REUSEPORT``: the kernel spreads new connections over the listening
sockets). Each holds the champion model, answers ``POST /predict`` itself with
the server's own code (``predict_answerer``) and logs its rows to its own
journal directory through its own journal process (durable before the
answer, like the server's), which the
server imports into ``predictions_data``. Every other request is forwarded to
the server on a private loopback port, so a connection can carry any request
whichever process accepted it.

The server is the only process that opens DuckDB and the bus. It tells each
serving process over a pipe to load a new champion before it swaps itself, so
once the server serves a version (``/healthz``), every process does. It asks
them for their counters for ``/metrics`` and ``/stats/serving``. A serving
process that dies is started again; one whose server dies is killed with it
(``PR_SET_PDEATHSIG``) and its pipe closes.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from minimlops.config import Settings
from minimlops.entrypoints.runtime.serving_process import serve_process

logger = logging.getLogger(__name__)
READY_TIMEOUT = 60.0
ANSWER_TIMEOUT = 10.0


class _Child:
    """One serving process as the server sees it."""

    def __init__(self, name: str, process: Any, conn: Connection) -> None:
        self.name, self.process, self.conn = name, process, conn
        self.lock = threading.Lock()  # one question at a time on the pipe
        self.asked = 0

    def ask(self, kind: str, timeout: float = ANSWER_TIMEOUT) -> Any:
        """Ask and wait for the answer. Questions are numbered: the late answer
        to a question that timed out is dropped, never taken for the next one's."""
        with self.lock:
            self.asked += 1
            self.conn.send((self.asked, kind))
            deadline = time.monotonic() + timeout
            while self.conn.poll(max(0.0, deadline - time.monotonic())):
                number, answer = self.conn.recv()
                if number == self.asked:
                    return answer
            raise TimeoutError(f"serving process {self.name} did not answer {kind!r}")


class ServingProcesses:
    """The server's side: start, refresh, ask, restart and stop its serving processes."""

    def __init__(
        self, settings: Settings, count: int, address: tuple[str, int], primary_url: str
    ) -> None:
        self.settings, self.count = settings, count
        self.address, self.primary_url = address, primary_url
        self.children: dict[str, _Child] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start them in the background; the server answers everything meanwhile."""
        self._thread = threading.Thread(
            target=self._supervise, name="serving-processes", daemon=True
        )
        self._thread.start()

    def _spawn(self, name: str) -> _Child | None:
        ctx = mp.get_context("spawn")
        ours, theirs = ctx.Pipe()
        process = ctx.Process(
            target=serve_process,
            name=f"minimlops-{name}",
            daemon=True,
            args=(
                theirs,
                self.settings,
                name,
                self.address,
                self.primary_url,
                logging.getLogger().level,
            ),
        )
        process.start()
        theirs.close()
        child = _Child(name, process, ours)
        try:
            if not ours.poll(READY_TIMEOUT):
                raise TimeoutError(f"not ready after {READY_TIMEOUT:.0f} s")
            ready = ours.recv()
        except (OSError, EOFError, TimeoutError) as exc:
            logger.error("serving process %s failed to start: %s", name, exc)
            process.kill()
            process.join()
            return None
        logger.info(
            "serving process %s (pid %d) answers /predict with model version %s",
            name,
            process.pid,
            ready.get("version"),
        )
        return child

    def _supervise(self) -> None:
        names = [f"serving-{i}" for i in range(1, self.count)]
        backoff = 1.0
        while not self._stopping.is_set():
            for name in names:
                child = self.children.get(name)
                if child is not None and child.process.is_alive():
                    continue
                if child is not None:
                    logger.error(
                        "serving process %s exited (code %s); starting it again",
                        name,
                        child.process.exitcode,
                    )
                    with self._lock:
                        del self.children[name]
                started = self._spawn(name)
                if started is None:
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                backoff = 1.0
                with self._lock:
                    if self._stopping.is_set():  # stop() ran while it started
                        started.process.kill()
                        continue
                    self.children[name] = started
            self._stopping.wait(0.5)

    def _each(self) -> list[_Child]:
        with self._lock:
            return list(self.children.values())

    def refresh(self, version: str) -> None:
        """Make every serving process serve the champion (called before the
        server swaps to ``version``); one that cannot is logged, not waited for."""
        for child in self._each():
            try:
                served = child.ask("refresh")
            except (OSError, EOFError, TimeoutError) as exc:
                logger.error("serving process %s: refresh failed: %s", child.name, exc)
                continue
            if served != version:
                logger.error("serving process %s serves %s, not %s", child.name, served, version)

    def live(self) -> int:
        """How many serving processes answer now (the server not counted)."""
        return sum(1 for child in self._each() if child.process.is_alive())

    def counters(self) -> list[dict[str, Any]]:
        """Each live serving process's statistics and prediction-log counters."""
        out = []
        for child in self._each():
            with contextlib.suppress(OSError, EOFError, TimeoutError):
                out.append(child.ask("counters"))
        return out

    def stop(self, timeout: float = 15.0) -> None:
        """Stop them: each finishes its requests and its prediction log first."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        for child in self._each():
            with contextlib.suppress(OSError, EOFError, TimeoutError):
                child.ask("stop")
        deadline = time.monotonic() + timeout
        for child in self._each():
            child.process.join(max(0.0, deadline - time.monotonic()))
            if child.process.is_alive():
                logger.error("serving process %s did not stop; killing it", child.name)
                child.process.kill()
                child.process.join()
        self.children.clear()
