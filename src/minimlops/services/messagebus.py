"""Routing: which handler takes which event, and publishing what it returns.

The same ``handle`` runs behind the local bus consumers and behind the
Google Cloud function entry points.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from minimlops.domain.events import (
    AlertRaised,
    Event,
    IngestionComplete,
    ModelPromoted,
    ObjectFinalized,
    RetrainRequested,
)
from minimlops.errors import Cancelled
from minimlops.services import alerts
from minimlops.services.deps import Deps, Names
from minimlops.services.ingest import ingest_data
from minimlops.services.train import train_model

logger = logging.getLogger(__name__)
Handler = Callable[..., list[Event]]

HANDLERS: dict[type[Event], Handler] = {
    ObjectFinalized: ingest_data,
    IngestionComplete: train_model,
    RetrainRequested: train_model,
    AlertRaised: alerts.send_alert,
}


def topic_for(event: Event, names: Names) -> str:
    """The configured topic of an event type."""
    return {
        IngestionComplete: names.ingestion_topic,
        RetrainRequested: names.retrain_topic,
        ModelPromoted: names.promoted_topic,
        AlertRaised: names.alerts_topic,
    }.get(type(event), event.default_topic)


def publish(event: Event, deps: Deps) -> str:
    """Publish one event on its topic. An alert for every webhook is published
    once per occurrence where the bus remembers keys (the local one: across
    restarts, so a retried training or a monitor tick repeats no alert);
    elsewhere its id, the same each time, lets receivers drop repeats."""
    data, attributes = event.to_message()
    topic = topic_for(event, deps.names)
    once = getattr(deps.bus, "publish_once", None)
    if isinstance(event, AlertRaised) and not event.destination and once is not None:
        return once(f"alert:{event.alert_id}", topic, data, attributes) or ""
    return deps.bus.publish(topic, data, attributes)


def handle(event: Event, deps: Deps) -> list[Event]:
    """Run the handler of an event and publish the events it returns.

    A handler raises to have the message delivered again (transient error)
    and returns to acknowledge it (done, or a permanent input error that it
    recorded).
    """
    handler = HANDLERS.get(type(event))
    if handler is None:
        logger.debug("no handler for %s", event.type)
        return []
    try:
        results = handler(event, deps=deps)
    except Exception as exc:
        if handler is train_model and not isinstance(exc, Cancelled):
            # the same id on every retry of this trigger: one alert for the receiver
            alerts.publish(
                deps,
                "training.failed",
                f"training failed: {type(exc).__name__}: {exc}"[:300],
                {"error": f"{type(exc).__name__}: {exc}"[:2000], "trigger": event.type},
                key=event.event_id,
            )
        raise
    for new in results:
        if isinstance(new, AlertRaised) and handler is not alerts.send_alert:
            try:  # an alert that cannot be published must not fail what it reports
                publish(new, deps)
            except Exception:
                logger.exception("alerts: could not publish %s", new.kind)
            continue
        publish(new, deps)
    return results
