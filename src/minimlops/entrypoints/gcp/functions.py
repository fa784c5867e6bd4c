"""The Cloud Run functions: thin translations of a CloudEvent or an HTTP request
into the same handler calls the local backend makes.

The deployed bundle's ``main.py`` re-exports these five names; functions-
framework serves one of them per deployment (``--entry-point``):

- ``ingest_data``: CloudEvent ``google.cloud.storage.object.v1.finalized`` of the
  landing-zone bucket -> ``ObjectFinalized`` -> ``ingest_data``.
- ``train_model``: Pub/Sub CloudEvent of ``ingestion_complete`` or
  ``retrain_requested`` -> the event -> ``train_model``.
- ``predictions_endpoint``: HTTP; the same ASGI app as the local server
  (``POST /`` is ``POST /predict``, as in the exercise's curl request).
- ``monitor``: HTTP, called by Cloud Scheduler: drift and live accuracy checks,
  publishing ``retrain_requested`` when a trigger fires.
- ``send_alert``: Pub/Sub CloudEvent of the alerts topic -> the webhooks
  (deployed when ``MINIMLOPS_ALERT_WEBHOOKS`` is set; its URLs and signing key
  come from Secret Manager); and of the dead-letter topic -> a
  ``message.dead_lettered`` alert.

At-least-once delivery: a handler that raises makes the function answer 500,
so Eventarc/Pub/Sub deliver the event again (retries are on; after
``max_attempts`` a Pub/Sub message goes to the dead-letter topic). Handlers are
idempotent, so redeliveries do no harm. A message that cannot be decoded is
acknowledged with an error log: retrying cannot fix it.

Nothing is built at import: the App (clients, settings) is made on the first
event, once per instance, and reused.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import threading
import time
from typing import Any

import functions_framework
from functions_framework import aio

from minimlops.bootstrap import App, build
from minimlops.config import Settings
from minimlops.domain.events import Event, ObjectFinalized, UnknownEventError, from_message
from minimlops.services import alerts, messagebus, monitor

logger = logging.getLogger("minimlops.functions")
STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
DEAD_LETTER_SOURCE = "CloudPubSubDeadLetterSourceSubscription"  # added by Pub/Sub
_lock = threading.Lock()
_state: dict[str, Any] = {}


def _app() -> App:
    """The instance's App, built on first use."""
    with _lock:
        if "app" not in _state:
            settings = Settings.from_env(os.environ, backend="gcp")
            logging.basicConfig(
                level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
            )
            _state["app"] = build(settings)
        return _state["app"]  # type: ignore[no-any-return]


def event_of(cloud_event: Any) -> Event | None:
    """The pipeline event a CloudEvent carries (None: nothing to do)."""
    kind = cloud_event["type"]
    data = cloud_event.data or {}
    if kind == STORAGE_FINALIZED:
        return ObjectFinalized(
            bucket=data["bucket"],
            name=data["name"],
            generation=str(data.get("generation", "")),
            size=int(data.get("size") or 0),
            event_id=str(cloud_event["id"]),
        )
    if kind == PUBSUB_PUBLISHED:
        message = data.get("message") or {}
        body = base64.b64decode(message.get("data") or b"")
        return from_message(body, dict(message.get("attributes") or {}))
    logger.warning("ignoring a CloudEvent of type %s", kind)
    return None


def _handle(cloud_event: Any) -> None:
    try:
        event = event_of(cloud_event)
    except (UnknownEventError, KeyError, ValueError) as exc:
        logger.error("acknowledging undecodable event %s: %s", cloud_event["id"], exc)
        return
    if event is None:
        return
    started = time.perf_counter()
    results = messagebus.handle(event, _app().deps)  # raises -> 500 -> delivered again
    logger.info(
        "%s handled in %.2fs; published %s",
        event.type,
        time.perf_counter() - started,
        [e.type for e in results] or "nothing",
    )


@functions_framework.cloud_event
def ingest_data(cloud_event: Any) -> None:
    """Object finalized in the landing zone -> validated load -> ingestion_complete."""
    _handle(cloud_event)


_training = threading.Lock()


@functions_framework.cloud_event
def train_model(cloud_event: Any) -> None:
    """ingestion_complete or retrain_requested -> a new version, maybe promoted.

    One training at a time per instance (deployed with one instance and
    concurrency 1): a duplicate delivered meanwhile waits, then finds its data
    snapshot trained already.
    """
    with _training:
        _handle(cloud_event)


def dead_letter_alerts(cloud_event: Any, dead_letter_topic: str) -> list[Event] | None:
    """The ``message.dead_lettered`` alert of a message Pub/Sub forwarded to
    the dead-letter topic (None: the event is no dead letter).

    Pub/Sub adds ``CloudPubSubDeadLetterSource*`` attributes to each message
    it forwards (https://cloud.google.com/pubsub/docs/handling-failures); the
    alert's key is the source subscription, the original publish time and the
    body, so a message dead-lettered twice (Pub/Sub does it on a best effort
    basis) is one alert id. The event's type is our ``type`` attribute, or the
    CloudEvent's ``ce-type`` that Eventarc's own transport carries (a Cloud
    Storage event). The error itself is in the failing function's log.
    """
    if cloud_event["type"] != PUBSUB_PUBLISHED:
        return None
    message = (cloud_event.data or {}).get("message") or {}
    attrs = dict(message.get("attributes") or {})
    source = attrs.get(DEAD_LETTER_SOURCE, "")
    on_dead_topic = str(cloud_event["source"]).endswith(f"/topics/{dead_letter_topic}")
    if not source:
        if on_dead_topic:  # never handled as the event it carries, by this identity
            logger.error("dead-letter topic: message %s has no source; ignored", cloud_event["id"])
            return []
        return None
    source = source.rsplit("/", 1)[-1]
    attempts = attrs.get("CloudPubSubDeadLetterSourceDeliveryCount", "?")
    published = attrs.get("CloudPubSubDeadLetterSourceTopicPublishTime", "")
    data = str(message.get("data") or "")
    digest = hashlib.sha256(f"{source}\n{published}\n{data}".encode()).hexdigest()[:32]
    details = {
        "event_id": attrs.get("event_id") or attrs.get("ce-id", ""),
        "deliveries": attempts,
        "published": published,
        "redrive": "minimlops gcp dead-letters --redrive",
    }
    if attrs.get("ce-subject"):  # a Cloud Storage event: the object
        details["subject"] = attrs["ce-subject"]
    return alerts.dead_lettered(
        _app().deps,
        subscription=source,
        kind=attrs.get("type") or attrs.get("ce-type") or "an undecodable message",
        error=f"{attempts} deliveries failed; the function's log has each error",
        key=f"{source}/{digest}",
        details=details,
    )


@functions_framework.cloud_event
def send_alert(cloud_event: Any) -> None:
    """An alert on the alerts topic -> each webhook (signed; Slack's format for
    Slack). A webhook that does not take it fails the delivery, and Pub/Sub
    delivers it again with backoff, then to the dead-letter topic.

    Its second trigger, on the dead-letter topic, turns each dead letter but an
    alert into a ``message.dead_lettered`` alert, published on the alerts topic
    (a failure to publish answers 500: delivered again, for Eventarc's 24 h)."""
    found = dead_letter_alerts(cloud_event, _app().settings.dead_letter_topic)
    if found is None:
        _handle(cloud_event)
        return
    deps = _app().deps
    for event in found:
        messagebus.publish(event, deps)
    logger.info("dead letter %s: %d alert(s) published", cloud_event["id"], len(found))


@functions_framework.http
def monitor_pipeline(request: Any) -> Any:
    """Cloud Scheduler's target: check drift, live accuracy and the schedule."""
    app = _app()
    checked = monitor.check(app.deps, app.registry, app.monitor)
    for event in checked.events:
        messagebus.publish(event, app.deps)
    return monitor.check_answer(checked)


class _Serving:
    """The local server's ASGI stack, started lazily inside a function instance.

    functions-framework gives the function no lifespan events, so the
    prediction log's group-commit flusher and the model refresher start on
    the first request; the champion pointer is checked at most every
    ``model_check_seconds`` (one small metadata read).
    """

    def __init__(self) -> None:
        self.front: Any = None
        self._starting = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> Any:
        if self.front is not None:  # every request after the first
            return self.front
        async with self._starting:
            if self.front is None:
                from minimlops.entrypoints.http.app import create_app
                from minimlops.entrypoints.http.fastpath import FastPredict
                from minimlops.entrypoints.http.security import Access, PublicCORS
                from minimlops.process import freeze_long_lived

                app = await asyncio.to_thread(_app)
                s = app.settings
                access = Access.parse(s.public_routes)  # a wrong entry: a 500, the log says why
                await asyncio.to_thread(app.predictor.refresh)  # lazily, once per instance
                tokens = [s.admin_token.get_secret_value()] if s.admin_token else []
                api = create_app(app, admin_tokens=tokens, lifespan_tasks=False, access=access)
                key = s.api_key.get_secret_value() if s.api_key else None
                self._tasks = [
                    asyncio.create_task(app.log.run()),
                    asyncio.create_task(self._refresh(app)),
                ]
                self.front = FastPredict(
                    PublicCORS(api, s.origins),
                    api.state.answer_predict,
                    s.max_body_bytes,
                    origins=s.origins,
                    api_key=key,
                    access=access,
                    admin_tokens=tokens,
                )
                freeze_long_lived()
        return self.front

    async def _refresh(self, app: App) -> None:
        every = app.settings.model_check_seconds
        while every:
            await asyncio.sleep(every)
            try:
                await asyncio.to_thread(app.predictor.refresh)
            except Exception as exc:  # keep serving the model in memory
                logger.warning("champion check failed: %s", exc)


_serving = _Serving()


class _Forward:
    """A response that hands the request to the app (scope and body stream unread)."""

    def __init__(self, request: Any) -> None:
        self.request = request

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        front = await _serving.start()
        inner = dict(self.request.scope)
        if inner.get("method") == "POST" and inner.get("path") in ("", "/"):
            inner["path"] = "/predict"  # the exercise posts to the function's URL itself
        await front(inner, receive, send)


@aio.http
async def predictions_endpoint(request: Any) -> Any:
    """POST / or /predict: predictions, each logged to BigQuery before the answer."""
    return _Forward(request)
