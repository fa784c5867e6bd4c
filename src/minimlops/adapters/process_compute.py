"""ProcessCompute: each training's compute in a fresh process, started ahead.

A long-running server that trains in its own process keeps the peak working
set of the biggest training as resident memory (the allocator does not give it
all back), so its memory creeps up as the data grows. Here every job runs in a
child process that exits afterwards, returning all of it to the system.

The child is started (spawn: a clean interpreter, no inherited threads or
locks) and imports the training code *before* a job comes, and the next one is
started as soon as a job ends, so a job does not wait for Python and
scikit-learn to import. On Linux the child is killed when the server dies
(``PR_SET_PDEATHSIG``), so a ``kill -9`` leaves no orphan behind.

Arguments and results cross a pipe: Arrow tables, bytes and plain dicts.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from minimlops.errors import Cancelled
from minimlops.process import die_with_parent

logger = logging.getLogger(__name__)


def _child(conn: Connection, log_level: int, warm: tuple[str, ...]) -> None:
    """Import ahead, run one job, send its result (or its exception), exit."""
    die_with_parent()
    # Ctrl-C and a SIGTERM to the process group reach us too: the server
    # decides (it cancels a job it will not wait for), so no traceback here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="%(message)s")
    for module in warm:
        __import__(module)
    try:
        fn, args, kwargs = conn.recv()
    except EOFError:  # the server closed without a job for us
        return
    try:
        conn.send((True, fn(*args, **kwargs)))
    except BaseException as exc:  # the server re-raises it
        conn.send((False, exc))


class ProcessCompute:
    """A ``deps.compute`` that runs each job in its own fresh process."""

    def __init__(
        self,
        warm: tuple[str, ...] = (
            "minimlops.ml.job",
            "minimlops.ml.training",
            "minimlops.ml.evaluation",
            "skops.io",
            "skl2onnx",
            "onnxruntime",
            "lightgbm",
            "onnxmltools",
            "sklearn.ensemble",
            "sklearn.linear_model",
            "sklearn.model_selection",
            "scipy.stats",
        ),
    ) -> None:
        self._ctx = mp.get_context("spawn")
        self._warm = warm
        self._next: tuple[Any, Connection] | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._running: Any = None  # the process of the job in flight
        self._cancelled = False

    def _start(self) -> tuple[Any, Connection]:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_child,
            name="minimlops-train",
            args=(child, logging.getLogger().level, self._warm),
            daemon=True,
        )
        proc.start()
        child.close()
        return proc, parent

    def prestart(self) -> None:
        """Start the first child now (e.g. when the server starts)."""
        with self._lock:
            if self._next is None and not self._closed:
                self._next = self._start()

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._cancelled:
                raise Cancelled("the server is stopping: no new training starts")
            proc, conn = self._next or self._start()
            self._next, self._running = None, proc
        try:
            conn.send((fn, args, kwargs))
            ok, value = conn.recv()
        except (EOFError, OSError, BrokenPipeError) as exc:
            if self._cancelled:
                raise Cancelled("training stopped: the server is stopping") from None
            raise RuntimeError(
                f"the training process died (exit code {proc.exitcode}): {exc or 'no result'}"
            ) from None
        finally:
            conn.close()
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
            with self._lock:  # the next job's process, while this one's result is used
                self._running = None
                if self._next is None and not self._closed and not self._cancelled:
                    self._next = self._start()
        if not ok:
            raise value
        return value

    def cancel(self) -> None:
        """Stop the job in flight now (its caller gets :class:`Cancelled`) and
        start no other: the server is stopping and will not wait for it."""
        with self._lock:
            self._cancelled, running = True, self._running
        if running is not None and running.is_alive():
            running.kill()

    def close(self) -> None:
        with self._lock:
            nxt, self._next, self._closed = self._next, None, True
        if nxt is not None:
            proc, conn = nxt
            conn.close()  # the idle child sees EOF and exits
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
