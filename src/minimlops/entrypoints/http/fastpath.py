"""FastPredict: ``POST /predict`` answered by a bare ASGI handler.

The FastAPI app behind it wraps every request in seven middlewares and a
router; on a request whose real work (validation, model, log) costs tens of
microseconds, that wrapping is most of the cost. This front handles exactly
``POST /predict`` itself, with the same code (``answer_predict``) and the same
CORS answer, and hands everything else (preflight included) to the app.

``predict_answerer`` is the whole of ``POST /predict`` on raw bytes: the
FastAPI route, this front and the extra serving processes all answer with it.
"""

from __future__ import annotations

import asyncio
import operator
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError

from minimlops.domain.project import nearest
from minimlops.entrypoints.http.request_models import RequestModels
from minimlops.entrypoints.http.security import Access, Credentials, allow_origin, key_matches
from minimlops.errors import DerivedFeatureError, NoChampionError

if TYPE_CHECKING:
    from minimlops.entrypoints.http.stats import ServingStats
    from minimlops.services.predict import DurableLog, Predictor

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Answer = Callable[[bytes, str], Awaitable[tuple[int, bytes]]]
JSON = (b"content-type", b"application/json")


def field_errors(
    exc: ValidationError,
    batch: bool,
    given: Any = None,
    known: Sequence[str] = (),
    items: str = "rows",
) -> list[dict[str, Any]]:
    """Pydantic's errors as the API reports them: field, message, batch index.
    With the data ``given`` and the ``known`` fields, a required field that is
    missing names a field of the row spelt like it ("GrLivAreaSF"); an object
    of no known field that holds a list of rows under a name (Vertex AI's
    ``{"instances": [...]}``) gets one error saying what a batch is (a list
    of ``items``) instead."""
    if not batch and known and isinstance(given, dict) and not any(k in known for k in given):
        for name, value in given.items():
            if (
                name not in known
                and isinstance(value, list)
                and value
                and all(isinstance(v, dict) for v in value)
            ):
                return [
                    {
                        "field": name,
                        "message": f"a batch is a JSON list of {items} ([{{...}}, {{...}}]), not an "
                        f"object holding them under {name!r}: send the list itself",
                    }
                ]
    out = []
    for e in exc.errors(include_url=False):
        loc = list(e["loc"])
        message = e["msg"]
        if e.get("input", ...) is None and e["type"] != "missing":  # null for a required field
            message = "a value is required here (null was sent)"
        if e["type"] == "missing" and known and loc:
            row = given[loc[0]] if batch and isinstance(loc[0], int) else given
            if isinstance(row, dict) and (
                typo := nearest(str(loc[-1]), [k for k in row if k not in known])
            ):
                message += f" (the {'row' if batch else 'request'} has {typo!r}: misspelt?)"
        item = {"field": str(loc[-1]) if loc else None, "message": message}
        if batch and loc and isinstance(loc[0], int):
            item["index"] = loc[0]
        out.append(item)
    return out


def _err(status: int, detail: str, **extra: Any) -> tuple[int, bytes, int]:
    """An error answer of /predict: status, JSON body, no rows predicted."""
    return status, orjson.dumps({"detail": detail, **extra}), 0


def answer_keys(task: str) -> tuple[str, ...]:
    """The fields of an answer, by task (binary: the exercise's shape)."""
    return {
        "binary": ("prediction", "probability", "uuid", "model_version"),
        "multiclass": ("prediction", "probability", "probabilities", "uuid", "model_version"),
        "regression": ("prediction", "uuid", "model_version"),
    }[task]


class NotStored(Exception):
    """The log refused rows answered together: none of their requests is answered 200."""


class Together:
    """One-row requests that reach the model in the same turn of the event
    loop, predicted in one call and logged in one write.

    Under load the loop reads several requests at each turn; one at a time,
    each costs a model run (a forest's run reads its trees from memory again:
    ~40 us a row, cold; 8 rows in one run ~7 us a row, measured) and a log
    call. Here the first request to arrive schedules the group's turn
    (``call_soon``: after every request ready now has had its own), and all
    that arrived before it are predicted together. Nothing waits for others
    to come: a lone request is never here (``predict_answerer`` calls the
    model itself when it is the only one in flight), and a group is what the
    loop already held. Each answer is the one its request would have had
    alone: one champion for the group, each row its own uuid, and an error
    only to the request it belongs to (a derived feature failing on one row:
    the rows are predicted again one by one). A request cancelled before
    the group's turn is left out.
    """

    def __init__(self, predictor: Predictor, log: DurableLog) -> None:
        self.predictor, self.log = predictor, log
        self.waiting: list[tuple[Any, asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()  # held: the loop keeps weak references

    async def predict(self, person: Any) -> Any:
        """``person``'s log row once it is durable. Raises as
        ``Predictor.predict`` does, or :class:`NotStored`."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self.waiting:
            loop.call_soon(self._turn)
        self.waiting.append((person, future))
        return await future

    def _turn(self) -> None:
        # a request cancelled meanwhile is not predicted (nor logged: nobody got it)
        group = [(person, future) for person, future in self.waiting if not future.done()]
        self.waiting = []
        if not group:
            return
        predict = self.predictor.predict
        try:
            rows = predict([person for person, _ in group], owned=True)
        except NoChampionError as exc:  # every request hears of it
            for _, future in group:
                _fail(future, exc)
            return
        except Exception:  # a row's (a derived feature's): each alone, so only its request hears
            rows, kept = [], []
            for person, future in group:
                try:
                    rows.extend(predict([person], owned=True))
                    kept.append((person, future))
                except Exception as exc:
                    _fail(future, exc)
            group = kept
        if group:
            task = asyncio.ensure_future(self._store(rows, [f for _, f in group]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _store(self, rows: list[Any], futures: list[asyncio.Future[Any]]) -> None:
        try:
            await self.log.log(rows)
        except BaseException as exc:  # (cancelled too: no request may wait for ever)
            for future in futures:
                _fail(future, NotStored(str(exc) or type(exc).__name__))
            if not isinstance(exc, Exception):
                raise
            return
        for row, future in zip(rows, futures, strict=True):
            if not future.done():  # its request was cancelled meanwhile
                future.set_result(row)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():  # else its request was cancelled meanwhile
        future.set_exception(exc)


def predict_answerer(
    predictor: Predictor,
    log: DurableLog,
    stats: ServingStats,
    models: RequestModels,
    *,
    max_body: int,
    max_batch: int,
) -> Answer:
    """``answer(body, content_type) -> (status, JSON body)`` for POST /predict:
    validate, predict, wait until the rows are durable, answer. One-row
    requests in flight together are predicted and logged together
    (:class:`Together`)."""
    one, many, noun, fast = models.one, models.many, models.name.lower(), models.fast
    keys = answer_keys(predictor.task)
    pick = operator.attrgetter(*keys)  # the answer's fields of a checked struct
    multiclass, binary = predictor.task == "multiclass", predictor.task == "binary"

    together = Together(predictor, log)
    in_flight = 0  # requests being answered (this process's event loop is their one thread)

    async def answer(body: bytes, content_type: str) -> tuple[int, bytes]:
        nonlocal in_flight
        started = time.perf_counter()
        in_flight += 1
        try:
            status, payload, rows = await _answer(body, content_type)
        finally:
            in_flight -= 1
        stats.record(time.perf_counter() - started, rows, status == 200)
        return status, payload

    async def _answer(body: bytes, content_type: str) -> tuple[int, bytes, int]:
        if not content_type.startswith("application/json"):
            return _err(415, "send JSON with Content-Type: application/json")
        if len(body) > max_body:
            return _err(413, f"body larger than {max_body} bytes")
        first = body[:1]
        if first in b" \t\r\n":
            first = body.lstrip()[:1]
        batch = first == b"["
        # Parsed and checked in one pass: msgspec on the common path, else
        # pydantic (it reads the JSON itself), and any refusal is said by
        # checked_slowly, the same words as ever.
        people = fast.rows(body, batch) if fast is not None else None
        if people is None:
            try:
                people = many.validate_json(body) if batch else [one.validate_json(body)]
            except ValidationError:
                checked = checked_slowly(body)
                if isinstance(checked, tuple):
                    return checked
                people = checked
        if batch and len(people) > max_batch:
            return _err(413, f"batch of {len(people)} rows exceeds the limit of {max_batch}")
        if batch and not people:
            return _err(422, f"empty list: send at least one {noun}")
        # A field no column has is ignored; the answer says so. A batch of
        # structs has none (their decoder refuses one: pydantic's dicts take
        # the body then). Dicts cost a count of the body's `":` against their
        # keys; only a difference parses it again (RequestModels.warnings).
        warned = None
        if type(people[0]) is dict and body.count(b'":') != (
            sum(map(len, people)) if batch else len(people[0])
        ):
            warned = models.dropped(body)
        alone = batch or in_flight == 1
        try:
            rows = (
                predictor.predict(people, owned=True)
                if alone
                else [await together.predict(people[0])]
            )
        except NotStored as exc:
            return _err(503, f"prediction not stored, so not answered: {exc}")
        except NoChampionError as exc:
            return _err(503, f"no model to serve: {exc}")
        except DerivedFeatureError as exc:
            where = {"index": exc.where} if batch else {}
            return _err(
                422,
                f"invalid {noun}",
                errors=[
                    {
                        "field": exc.feature,
                        **where,
                        "message": f"derived feature {exc.feature!r} failed on this {noun}: "
                        f"{type(exc.cause).__name__}: {exc.cause}",
                    }
                ],
            )
        try:
            if alone:  # else logged with the others
                await log.log(rows)
        except Exception as exc:
            return _err(503, f"prediction not stored, so not answered: {exc}")
        # a category the model never learnt (answered as the rest), and a number
        # or date far outside those it learnt from, are answered and said
        if unseen := predictor.unseen(rows):
            warned = [*(warned or ()), *unseen]
        if not isinstance(rows[0], dict):  # a batch's structs (FastCheck)
            answers = (
                [
                    {
                        "prediction": r.prediction,
                        "probability": r.probability,
                        "uuid": r.uuid,
                        "model_version": r.model_version,
                    }
                    for r in rows
                ]
                if binary
                else [dict(zip(keys, pick(r), strict=True)) for r in rows]
            )
        elif binary:  # the exercise's shape; a literal is a third cheaper than a comprehension
            answers = [
                {
                    "prediction": r["prediction"],
                    "probability": r["probability"],
                    "uuid": r["uuid"],
                    "model_version": r["model_version"],
                }
                for r in rows
            ]
        else:
            answers = [{k: r[k] for k in keys} for r in rows]
        if multiclass:
            for a in answers:
                a["probabilities"] = orjson.loads(a["probabilities"])
        if batch:
            out = {"predictions": answers, "model_version": rows[0]["model_version"]}
            if warned:
                out["warnings"] = warned
            return 200, orjson.dumps(out), len(rows)
        if warned:
            answers[0]["warnings"] = warned
        return 200, orjson.dumps(answers[0]), 1

    def checked_slowly(body: bytes) -> list[Any] | tuple[int, bytes, int]:
        """What the one-pass check refused, checked in steps, so the refusal
        says the first thing wrong: not JSON, too many rows, no row, a field."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _err(400, f"invalid JSON: {exc}")
        batch = isinstance(data, list)
        if batch and len(data) > max_batch:
            return _err(413, f"batch of {len(data)} rows exceeds the limit of {max_batch}")
        if batch and not data:
            return _err(422, f"empty list: send at least one {noun}")
        try:
            return many.validate_python(data) if batch else [one.validate_python(data)]
        except ValidationError as exc:
            return _err(
                422,
                f"invalid {noun}",
                errors=field_errors(exc, batch, data, (*models.fields, models.target)),
            )

    return answer


class FastPredict:
    """ASGI app: POST /predict here, everything else to ``app``.

    With ``MINIMLOPS_PUBLIC_ROUTES`` on (``access``), a listed ``POST /predict``
    needs no key; an unlisted one needs the API key or an admin token, and a
    request without either goes to ``app``, which answers the 401 (in an extra
    serving process, the server behind it decides: it also knows the local
    admin token). Off, the one added cost is the ``guarded`` check.
    """

    def __init__(
        self,
        app: Any,
        answer: Answer,
        max_body: int,
        *,
        origins: Sequence[str] = ("*",),
        api_key: str | None = None,
        access: Access | None = None,
        admin_tokens: Sequence[str] = (),
    ) -> None:
        self.app, self.answer, self.max_body = app, answer, max_body
        access = access if access is not None else Access()
        self.origins = tuple(origins)
        self.api_key = None if access.on else api_key  # on: listed, or checked just below
        self.guarded = access.on and not access.public("POST", "/predict")
        self.credentials = Credentials(api_key, admin_tokens)

    def takes(self, headers: Sequence[tuple[bytes, bytes]]) -> bool:
        """Whether a ``POST /predict`` with these (lower-cased) headers is
        answered here rather than by ``app``."""
        return not self.guarded or self.credentials.given(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if not self.takes(scope["headers"]):
            await self.app(scope, receive, send)
            return
        status, payload, headers = await self.respond(scope["headers"], await self._body(receive))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def respond(
        self, headers: Sequence[tuple[bytes, bytes]], body: bytes | None
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """The answer to a ``POST /predict`` this front takes (``takes``):
        status, JSON body and response headers. ``body`` is None when it was
        larger than ``max_body`` (and so not read whole)."""
        ctype, origin, key = "", None, None
        for name, value in headers:
            if name == b"content-type":
                ctype = value.decode("latin-1")
            elif name == b"origin":
                origin = value
            elif name == b"x-api-key":
                key = value.decode("latin-1")
        if not key_matches(key, self.api_key):
            status, payload = 401, b'{"detail":"a valid X-API-Key header is required"}'
        elif body is None:
            status, payload = 413, b'{"detail":"body larger than %d bytes"}' % self.max_body
        else:
            status, payload = await self.answer(body, ctype)
        out = [JSON, (b"content-length", str(len(payload)).encode())]
        allowed = allow_origin(origin, self.origins) if origin is not None else None
        if allowed is not None:
            out.append((b"access-control-allow-origin", allowed))
            if allowed != b"*":
                out.append((b"vary", b"Origin"))
        return status, payload, out

    async def _body(self, receive: Receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None  # stop reading: never buffer more than the limit
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
