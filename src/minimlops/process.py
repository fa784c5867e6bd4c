"""What a long-running minimlops process does to itself: glibc heaps, the cycle
collector, dying with its parent. Used by the server, its serving processes,
the training child and the Cloud function."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def cores() -> int:
    """The cores this process may run on (``sched_getaffinity``; a container's
    CPU quota is not seen), 1 where the platform cannot say."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None on other C libraries."""
    return getattr(_libc(), "malloc_trim", None)


M_ARENA_MAX = -8  # glibc's mallopt parameter


def freeze_long_lived() -> None:
    """Exclude what start-up created (modules, the model, the app) from the
    cycle collector's future passes.

    A batch of 1,000 passengers allocates tens of thousands of containers, so
    the collector runs full passes every few requests; each walked the
    hundreds of thousands of objects of scikit-learn, pandas and the app:
    pauses of ~100 ms (p99 at 4 connections 162 ms, 91 batches/s; frozen:
    54 ms, 147 batches/s). New objects are still collected as before.
    """
    gc.collect()
    gc.freeze()
    _frozen_modules[0] = len(sys.modules)


_frozen_modules = [0]  # how many modules were loaded at the last freeze


def freeze_new_modules() -> bool:
    """Freeze again if modules were imported since the last freeze; True if so.

    Some libraries load on first use, after start-up: scipy with the first
    drift check (~36,000 objects), for one. Left unfrozen, every full pass of
    the collector walks them all, and a batch of 1,000 passengers triggers
    one every few requests: measured, batches fell from ~150 to ~106 per
    second once the monitor had run, with 16 % of the event loop's time in
    the collector. Called by the server's monitor after each check.
    """
    if len(sys.modules) == _frozen_modules[0]:
        return False
    freeze_long_lived()
    return True


def limit_malloc_arenas(arenas: int = 2) -> None:
    """At most ``arenas`` glibc heaps, before the server starts its threads.

    glibc gives each thread that allocates at the same time as another its
    own heap (up to 8 per core); every heap keeps its own free pages, so a
    server with a dozen threads (consumers, journal, DuckDB, onnxruntime)
    grows with the number of heaps that have been busy. Two is what
    MALLOC_ARENA_MAX=2 gives: the usual setting for threaded Python servers.
    """
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is not None:
        mallopt(M_ARENA_MAX, arenas)


def release_memory() -> None:
    """Give freed heap pages back to the system after a big job (training,
    ingestion). glibc keeps them otherwise, and a long-running server's
    resident memory would creep up with every job it ran."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def die_with_parent() -> None:
    """Linux: this process is killed when the process that started it dies
    (a ``kill -9`` of the server leaves no orphan behind)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # type: ignore[union-attr]
