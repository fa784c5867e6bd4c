"""Events: frozen dataclasses that carry references, never payloads.

The wire format is a JSON object plus string attributes (``type``, ``event_id``,
``schema_version``); the topic is configured (Settings) because users rename
topics, but each event type has one default, the exercise's name.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

SCHEMA_VERSION = "1"


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Event:
    """Base class: every event has an id and a type name."""

    event_id: str = field(default_factory=_new_id, kw_only=True)
    default_topic: ClassVar[str] = ""

    @property
    def type(self) -> str:
        return type(self).__name__

    def to_message(self) -> tuple[bytes, dict[str, str]]:
        """The body and attributes this event is published with."""
        body = {k: v for k, v in asdict(self).items() if k != "event_id"}
        attrs = {"type": self.type, "event_id": self.event_id, "schema_version": SCHEMA_VERSION}
        # default=str: an alert's details may hold a date or a numpy number
        return json.dumps(body, sort_keys=True, default=str).encode(), attrs


@dataclass(frozen=True)
class ObjectFinalized(Event):
    """An object was written completely to a bucket (GCS "finalize")."""

    bucket: str
    name: str
    generation: str
    size: int = 0
    default_topic: ClassVar[str] = "object_finalized"

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


@dataclass(frozen=True)
class IngestionComplete(Event):
    """A landed file was loaded into a table."""

    ingestion_id: str
    table: str
    rows_loaded: int
    source_uri: str
    content_sha256: str
    default_topic: ClassVar[str] = "ingestion_complete"


@dataclass(frozen=True)
class RetrainRequested(Event):
    """Someone or something asked for a new model; the reason is recorded. It
    trains even on rows a version already learned from (a message from an
    older version may carry ``force``: ignored, as any field no longer known)."""

    reason: str
    # which monitoring trigger asked ("drift", "accuracy"), or "" (a person, a
    # schedule): a trigger's request is dropped when, by the time it is
    # handled, the champion has learned from the rows as they are
    trigger: str = ""
    default_topic: ClassVar[str] = "retrain_requested"


@dataclass(frozen=True)
class ModelPromoted(Event):
    """A model version became champion; serving instances reload it."""

    model: str
    version: str
    previous: str | None = None
    reason: str = ""
    default_topic: ClassVar[str] = "model_promoted"


@dataclass(frozen=True)
class AlertRaised(Event):
    """Something a person should hear about, for one webhook (``destination``:
    a digest of its URL, never the URL, which may hold a token). Published
    before it is sent, so it is retried and survives a restart; ``alert_id``
    is the same on every try and every destination, for the receiver's
    de-duplication (see ``domain.alerts``)."""

    alert_id: str
    kind: str  # model.promoted, file.rejected, ... (domain.alerts.KINDS)
    time: str  # ISO 8601, UTC
    project: str
    summary: str
    details: dict[str, Any]
    destination: str
    default_topic: ClassVar[str] = "alerts"


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (ObjectFinalized, IngestionComplete, RetrainRequested, ModelPromoted, AlertRaised)
}


class UnknownEventError(ValueError):
    """A message is not an event this version understands."""


def from_message(data: bytes, attributes: dict[str, str]) -> Event:
    """Decode a published message back into its event.

    Raises:
        UnknownEventError: the type attribute is missing or unknown, or the
            body does not fit the type.
    """
    cls = EVENT_TYPES.get(attributes.get("type", ""))
    if cls is None:
        raise UnknownEventError(f"unknown event type {attributes.get('type')!r}")
    try:
        body: dict[str, Any] = json.loads(data)
        names = {f.name for f in fields(cls) if f.init}
        kwargs = {k: v for k, v in body.items() if k in names}
        return cls(event_id=attributes.get("event_id", _new_id()), **kwargs)
    except (ValueError, TypeError) as exc:
        raise UnknownEventError(f"bad {cls.__name__} message: {exc}") from exc
