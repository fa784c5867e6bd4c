"""Serving: the champion held in memory, and a group-commit prediction log.

``Predictor`` loads the champion once and swaps it (one reference assignment)
when the champion pointer changes; a version that fails its hash check is
refused and the one already loaded keeps serving. A ``DurableLog`` gathers
the rows of concurrent requests while the previous group is being written,
writes them as one group, and only then lets each request answer: a 200
means the row is durable. ``PredictionLog`` is the thread-based one.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import operator
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol, Union, cast

from minimlops.domain import keys
from minimlops.domain.project import Project, closest
from minimlops.errors import ArtifactIntegrityError, ModelNotFoundError, NoChampionError
from minimlops.ml.serving import SMALL, OnnxModel
from minimlops.services.registry import ModelRegistry

if TYPE_CHECKING:  # scikit-learn is loaded only if a model must serve through it
    from minimlops.ml.model import TrainedModel

logger = logging.getLogger(__name__)
Scorer = Union["TrainedModel", OnnxModel]  # both: output(rows), values(rows) and .algorithm


class Predictor:
    """The serving model: champion version and its loaded model."""

    def __init__(
        self,
        registry: ModelRegistry,
        now: Callable[[], datetime],
        project: Project,
        *,
        shadow: bool = False,
    ) -> None:
        self.registry, self.now, self.shadow_enabled = registry, now, shadow
        self.project = project
        self.inputs = project.input_columns
        self._known = frozenset(self.inputs)
        # a key made of named columns: a row sent without its key gets the one
        # its row will have when it lands with its label (domain/keys.py)
        self._key_parts = project.key_parts
        self.task = project.task
        self.classes = list(project.classes or ())
        self.current: tuple[str, Scorer] | None = None
        # the model unseen() watches, which of its categories, whether it has ranges
        self._watched: tuple[Any, list[tuple[str, tuple[Any, ...], frozenset[Any]]], bool] = (
            None,
            [],
            False,
        )
        # what a batch's features found far outside the fitted values, by its first row
        self._far: dict[int, tuple[Any, int, list[Any]]] = {}
        self.shadow: tuple[str, Scorer] | None = None
        self.generation = ""
        self.error: str | None = None
        self._lock = threading.Lock()
        self._looked = -1.0  # when predict last looked for a champion itself (monotonic)
        # Called with a newly loaded model's version before this process swaps
        # to it: the server makes its other serving processes serve it first.
        self.before_swap: Callable[[str], None] | None = None

    @property
    def version(self) -> str | None:
        current = self.current
        return current[0] if current else None

    def refresh(self) -> bool:
        """Load the champion if the pointer changed; True if the model changed."""
        with self._lock:
            pointer, generation = self.registry.champion()
            if generation == self.generation:
                return False
            self.generation = generation
            if pointer is None or pointer["version"] == self.version:
                return False
            try:
                model = self.registry.load_serving(pointer["version"])
            except (ArtifactIntegrityError, ModelNotFoundError) as exc:
                self.error = f"champion version {pointer['version']} refused: {exc}"
                logger.error("serving: %s; still serving %s", self.error, self.version)
                return False
            if self.before_swap is not None:
                self.before_swap(pointer["version"])
            self.current, self.error = (pointer["version"], model), None
            logger.info(
                "serving: now serving model %s version %s (%s)",
                self.registry.name,
                pointer["version"],
                model.algorithm,
            )
            return True

    def follow(self) -> str | None:
        """Catch up with the registry: the champion, and the challenger when
        shadow scoring is on. Returns the version now serving."""
        self.refresh()
        self.refresh_shadow()
        return self.version

    def refresh_shadow(self) -> None:
        """With shadow scoring on: load the newest version that never was champion."""
        if not self.shadow_enabled:
            return
        pointer, _ = self.registry.champion()
        served = {h["version"] for h in (pointer or {}).get("history", [])}
        candidates = [m["version"] for m in self.registry.versions() if m["version"] not in served]
        newest = candidates[-1] if candidates else None
        if newest == (self.shadow[0] if self.shadow else None):
            return
        try:
            self.shadow = (newest, self.registry.load_serving(newest)) if newest else None
        except (ArtifactIntegrityError, ModelNotFoundError) as exc:
            logger.error("serving: shadow version %s refused: %s", newest, exc)
            self.shadow = None
            return
        if newest:
            logger.info("serving: shadow-scoring with challenger version %s", newest)

    def predict(self, passengers: Sequence[Mapping[str, Any]], *, owned: bool = False) -> list[Any]:
        """One log row per input row: inputs, the answer, ids.

        ``owned``: the rows are validated rows (the project's fields only)
        that the caller hands over: dicts, or the request's structs (see
        ``entrypoints.http.request_models.row_class``), which have the log's own fields;
        they become the log rows in place instead of being copied (a wide
        batch of 1,000: ~1.3 ms less).

        The answer by task: binary ``probability`` (of the positive class) and
        ``prediction`` (the class as written in the data); multiclass also
        ``probabilities`` (JSON: class -> p; ``probability`` is the predicted
        class's); regression ``prediction`` (a number).

        Raises:
            NoChampionError: no model has been loaded yet.
            DerivedFeatureError: a derived feature raised on a row.
        """
        current = self.current  # one read: a swap mid-request cannot mix versions
        if current is None and (current := self._catch_up()) is None:
            raise NoChampionError(
                self.error or "no version is champion yet (is the first one still training?)"
            )
        version, model = current
        # a batch's features find its values far outside the fitted ones as
        # they are built (features.far_found), which unseen() says
        fs = getattr(model, "features", None) if len(passengers) > SMALL else None
        if fs is not None and fs.ranges:
            fs.far_found(0)  # not what an earlier call left
        values = model.values(passengers)
        far = fs.far_found(len(passengers)) if fs is not None and fs.ranges else None
        shadow = self.shadow  # scored before the rows change (owned ones in place)
        shadow_out = shadow[1].values(passengers) if shadow is not None else None
        created = self.now()
        ids = uuid4_strings(len(passengers))
        binary = self.task == "binary"
        negative, positive = self.classes if binary else (None, None)
        cut = model.spec.get("threshold", 0.5)  # the version's own (the project's when trained)
        structs = (
            bool(passengers)
            and not isinstance(passengers[0], dict)
            and hasattr(passengers[0], "minimlops_attrs")
        )
        rows: list[Any]
        if structs:  # a batch's structs: the log's own fields are attributes
            rows = list(passengers) if owned else [copy.copy(p) for p in passengers]
            for row, i, value in zip(rows, ids, values, strict=True):
                row.uuid, row.created_at, row.model_version = i, created, version
                if binary:
                    row.probability, row.prediction = value, positive if value >= cut else negative
        else:
            rows, known, inputs = [], self._known, self.inputs
            for i, p, value in zip(ids, passengers, values, strict=True):
                if owned:  # validated and handed over: the row itself becomes the log row
                    row = cast("dict[str, Any]", p)  # validated rows are dicts
                    row["uuid"], row["created_at"], row["model_version"] = i, created, version
                elif p.keys() <= known:  # validated: only the project's fields (absent: null)
                    row = {"uuid": i, "created_at": created, "model_version": version, **p}
                else:  # a caller's own dict: only the input columns are logged
                    row = {"uuid": i, "created_at": created, "model_version": version}
                    for column in inputs:
                        row[column] = p.get(column)
                if binary:  # the common case, answered in this loop
                    row["probability"], row["prediction"] = (
                        value,
                        positive if value >= cut else negative,
                    )
                rows.append(row)
        put: Callable[[Any, str, Any], None] = setattr if structs else operator.setitem
        if not binary:
            self._answers(rows, values, put)
        if (
            shadow is not None and shadow_out is not None
        ):  # logged beside the answer, never returned
            self._shadow(rows, shadow[0], shadow_out, put)
        if self._key_parts is not None:
            self._keys(rows, structs)
        if far is not None:  # until unseen() takes it, by the batch's first row
            if len(self._far) >= 64:  # the oldest, never taken (its answer failed): dropped
                self._far.pop(next(iter(self._far)))
            self._far[id(rows[0])] = (rows[0], len(rows), far)
        return rows

    def unseen(self, rows: Sequence[Any]) -> list[dict[str, Any]]:
        """A warning per column of ``rows`` holding a value the serving model
        learnt nothing about, which it still answers:

        - a typed category no one-hot slot learnt (it scores it as the rest,
          as "other"): the column, the value, the categories it knows and the
          closest of them; a misspelt "Atchd" is answered, and said;
        - a number or date far outside the values the model was fitted on
          (``features._far_limits``), one warning a side: the value and the
          fitted range; the answer there is an extrapolation (a tree answers
          as at the edge of what it saw, a linear model extends its line);

        in a batch with the first row holding one (``index``) and how many do
        (``rows``). None if another model has been swapped in since ``rows``
        were predicted: its categories are not the ones that scored them."""
        current = self.current
        if current is None or not rows:
            return []
        model = current[1]
        if self._watched[0] is not model:
            fs = getattr(model, "features", None)
            self._watched = (model, self._to_watch(model), bool(fs is not None and fs.ranges))
        _, watched, ranged = self._watched
        if not watched and not ranged:  # (~0.2 us a request)
            return []
        first = rows[0]  # an answered row (a dict), or a batch's struct
        if current[0] != (
            first["model_version"] if isinstance(first, dict) else first.model_version
        ):
            return []
        batch = len(rows) > 1
        out = []
        for name, value, first, count, cats in (
            model.features.unseen(rows, watched) if watched else ()
        ):
            shown = ", ".join(repr(c) for c in cats[:10]) + (", ..." if len(cats) > 10 else "")
            out.append(
                {
                    "field": name,
                    "message": f"{value!r} is not a category the model learnt for {name}, so "
                    f"it was scored as the rest{closest(value, cats)}; learnt: {shown}",
                    **({"index": first, "rows": count} if batch else {}),
                }
            )
        taken = self._far.pop(id(rows[0]), None) if self._far else None
        if taken is not None and taken[0] is rows[0] and taken[1] == len(rows):
            far = taken[2]  # found as the batch's features were built
        else:
            far = model.features.far(rows) if ranged else []
        for name, value, first, count, lo, hi, above in far:
            if self.project.column(name).kind == "date":
                what = f"{'after' if above else 'before'} the dates"
                shown, lo, hi = _day(value), _day_of(lo), _day_of(hi)
            else:
                what = f"{'above' if above else 'below'} the values"
                shown, lo, hi = _typed(value), _number(lo), _number(hi)
            span = f"only {lo}" if lo == hi else f"{lo} to {hi}"
            out.append(
                {
                    "field": name,
                    "message": f"{name} {shown} is far {what} the model was trained on "
                    f"({span}): its answer there is an extrapolation",
                    **({"index": first, "rows": count} if batch else {}),
                }
            )
        return out

    def _to_watch(self, model: Scorer) -> list[tuple[str, tuple[Any, ...], frozenset[Any]]]:
        """The model's learnt categories a request's value may be outside of:
        not a column whose every allowed value was learnt (the check refuses
        the rest)."""
        fs = getattr(model, "features", None)
        columns = {c.name: c for c in self.project.columns}
        out = []
        for entry in fs.learnt if fs is not None else ():
            allowed = columns[entry[0]].allowed if entry[0] in columns else None
            if allowed is None or not entry[2].issuperset(allowed):
                out.append(entry)
        return out

    def _keys(self, rows: list[Any], structs: bool) -> None:
        """Each row's key from its parts' values (one it was sent with is
        replaced, as a file's is: the key its row has when it lands)."""
        key, parts = self.project.key, self._key_parts or ()
        attr = rows[0].minimlops_attrs[key] if structs and rows else key
        for row in rows:
            made = keys.of_row(row, parts)
            if structs:
                setattr(row, attr, made)
            else:
                row[key] = made

    def _catch_up(self) -> tuple[str, Scorer] | None:
        """Nothing loaded yet: look at the champion pointer now (at most every
        half second) rather than answer 503 until the next poll or promotion
        event (up to a second after the first model was promoted)."""
        now = time.monotonic()
        if now - self._looked < 0.5:
            return None
        self._looked = now
        try:
            self.refresh()
        except Exception as exc:  # the registry cannot be read: still nothing to serve
            logger.warning("serving: cannot read the champion pointer: %s", exc)
        return self.current

    def _answers(
        self, rows: list[Any], values: list[Any], put: Callable[[Any, str, Any], None]
    ) -> None:
        if self.task == "multiclass":
            classes = self.classes
            for row, probs in zip(rows, values, strict=True):
                best = max(range(len(probs)), key=probs.__getitem__)
                put(row, "probability", probs[best])
                put(row, "prediction", classes[best])
                put(
                    row,
                    "probabilities",
                    json.dumps(dict(zip(map(str, classes), probs, strict=True))),
                )
        else:
            for row, value in zip(rows, values, strict=True):
                put(row, "prediction", value)

    def _shadow(
        self, rows: list[Any], version: str, out: list[Any], put: Callable[[Any, str, Any], None]
    ) -> None:
        for row, value in zip(rows, out, strict=True):
            put(row, "shadow_model_version", version)
            if self.task == "binary":
                put(row, "shadow_probability", value)
            elif self.task == "multiclass":
                put(
                    row,
                    "shadow_prediction",
                    self.classes[max(range(len(value)), key=value.__getitem__)],
                )
            else:
                put(row, "shadow_prediction", value)


def _number(x: Any) -> str:
    """A fitted number as a warning shows it: 4 significant digits, whole
    without ".0" (512.3292 as 512.3, 843813.75 as 843800)."""
    x = float(f"{float(x):.4g}")
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def _typed(value: Any) -> str:
    """A request's number as sent (a float column's 5000 is decoded as 5000.0)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _day(value: Any) -> str:
    """A request's date or timestamp as ISO text."""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _day_of(days: float) -> str:
    """A day count since 1970-01-01 as an ISO date."""
    return date.fromordinal(date(1970, 1, 1).toordinal() + int(days)).isoformat()


def uuid4_strings(n: int) -> list[str]:
    """n random (version 4) UUIDs as strings: 16 bytes of the OS's randomness
    each, with the version digit set to 4 and the variant digit to 8, 9, a or
    b (RFC 4122), written by numpy many at a time (a batch of 1,000: ~0.5
    instead of ~1.6 ms for ``str(uuid.uuid4())`` each). A few are taken from
    a pool written 256 at a time (one: ~0.3 instead of ~1.6 us; numpy's set-up
    costs more than that below a few dozen). The pool belongs to the process
    that wrote it: a forked child never hands out its parent's ids."""
    if n >= 32:
        return _uuid4_strings_many(n)
    pool = _POOL
    if pool.pid != os.getpid():
        pool.ids, pool.pid = [], os.getpid()
    out: list[str] = []
    while len(out) < n:
        try:
            out.append(pool.ids.pop())  # one atomic step: two threads never get the same id
        except IndexError:
            pool.ids = _uuid4_strings_many(_POOL_SIZE)
    return out


class _Pool:
    """Ids written ahead, and the process they were written in."""

    __slots__ = ("ids", "pid")

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.pid = -1


_POOL, _POOL_SIZE = _Pool(), 256


_HEX = b"0123456789abcdef"
_GROUPS = ((0, 8), (9, 13), (14, 18), (19, 23), (24, 36))  # where the hex digits go, between dashes


def _uuid4_strings_many(n: int) -> list[str]:
    import numpy as np

    raw = np.frombuffer(os.urandom(16 * n), np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # variant RFC 4122
    hexdigits = np.frombuffer(_HEX, np.uint8)
    digits = np.empty((n, 32), np.uint8)
    digits[:, 0::2], digits[:, 1::2] = hexdigits[raw >> 4], hexdigits[raw & 0x0F]
    text = np.full((n, 36), ord("-"), np.uint8)
    at = 0
    for begin, end in _GROUPS:
        text[:, begin:end] = digits[:, at : at + end - begin]
        at += end - begin
    s = text.tobytes().decode("ascii")
    return [s[k : k + 36] for k in range(0, 36 * n, 36)]


class DurableLog(Protocol):
    """Where answered predictions go: ``await log(rows)`` returns once they are
    durable; ``run()`` is the log's task for the server's lifetime."""

    batches: int
    rows: int
    write_seconds: float

    async def log(self, rows: list[dict[str, Any]]) -> None: ...

    async def run(self) -> None: ...


class PredictionLog:
    """Group commit of prediction rows through a durable ``write``.

    ``await log(rows)`` returns once the rows are committed, or raises the
    write's error (the caller then answers 5xx, not 200). A writer thread runs
    one write at a time; rows that arrive while it runs form the next batch,
    so batches grow with load by themselves and a lone request waits for one
    commit only. The thread starts the next write as soon as the last one
    returns: it never waits for the event loop, whose turn can take a
    millisecond or more under load.

    Used where a write is a network call that waits without the interpreter
    (Google Cloud: one BigQuery streaming insert per group). The local backend
    syncs a file instead, where a thread's hand-overs of the interpreter cost
    more than the sync: it uses a journal process (``adapters.journal``).
    """

    def __init__(
        self,
        write: Callable[[list[dict[str, Any]]], None],
        *,
        flush_ms: float = 0.0,
        max_rows: int = 1024,
    ) -> None:
        self._write, self.flush_s, self.max_rows = write, flush_ms / 1000, max_rows
        self._pending: deque[tuple[list[dict[str, Any]], asyncio.Future[None]]] = deque()
        self._signal = threading.Event()
        self._stopping = False
        self.batches = self.rows = 0
        self.write_seconds = 0.0

    async def log(self, rows: list[dict[str, Any]]) -> None:
        """Queue rows and wait until they are durable."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((rows, future))
        self._signal.set()
        await future

    async def run(self) -> None:
        """Run the writer until cancelled, then write what is pending and stop."""
        loop = asyncio.get_running_loop()
        self._stopping = False
        thread = threading.Thread(
            target=self._writer, args=(loop,), name="prediction-log", daemon=True
        )
        thread.start()
        try:
            await loop.create_future()  # until cancelled
        finally:
            self._stopping = True
            self._signal.set()
            await asyncio.to_thread(thread.join)
            await asyncio.sleep(0)  # let the last results reach their waiters

    def _writer(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            self._signal.wait()
            self._signal.clear()
            if self.flush_s and not self._stopping:  # optional wait for more rows to join
                time.sleep(self.flush_s)
            while self._pending:
                self._write_group(loop)
            if self._stopping:
                return

    def _write_group(self, loop: asyncio.AbstractEventLoop) -> None:
        group, size = [], 0
        while self._pending and size < self.max_rows:
            group.append(self._pending.popleft())
            size += len(group[-1][0])
        started = time.perf_counter()
        error: Exception | None = None
        try:
            self._write([r for rows, _ in group for r in rows])
        except Exception as exc:  # every waiter gets the error, none is lost
            logger.error("prediction log: write of %d rows failed: %s", size, exc)
            error = exc
        else:
            self.batches, self.rows = self.batches + 1, self.rows + size
            self.write_seconds += time.perf_counter() - started
        loop.call_soon_threadsafe(_settle, group, error)


def _settle(group: list[tuple[Any, asyncio.Future[None]]], error: Exception | None) -> None:
    for _, future in group:
        if future.done():  # the waiter went away (cancelled request)
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
