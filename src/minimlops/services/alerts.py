"""Alerts: raised where something happens, published on the bus, sent by a consumer.

An alert is an ``AlertRaised`` event (split per webhook when there are several): it is on
the bus (the local SQLite queue, or Pub/Sub) before anything is sent, so a
receiver that is down, a restart or a kill -9 loses none; the consumer
(``send_alert``) retries it with the bus's backoff and dead-letters it when
it keeps failing, which ``minimlops status`` and the dashboard report. Its
id is the same on every try, for the receiver to drop repeats; a burst is
one alert (a drift check's features, a training's outcome), never one per
feature or row.

Handlers return alerts with their other events (``messagebus.handle``
publishes them); code that is no handler (the monitor, a rollback, a
dead-lettered message) calls :func:`publish`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from minimlops.domain import alerts as domain
from minimlops.domain.events import AlertRaised, Event
from minimlops.services.deps import Alerts, Deps

logger = logging.getLogger("minimlops.alerts")
SUBSCRIPTION = "send_alert"
MAX_ATTEMPTS = (
    12  # local bus: ~6 minutes of backoff (0.5 s doubling, at most 60 s) before set aside
)


class DeliveryError(Exception):
    """A webhook did not take an alert (its status or the network's error); retried."""


def raised(
    deps: Deps, kind: str, summary: str, details: Mapping[str, Any], *, key: str
) -> list[Event]:
    """The event of one alert, when alerts are on and its type is wanted
    (``send_alert`` gives it to each webhook). ``key`` names the occurrence
    (a version, a file's digest, a trigger's id): the same occurrence gets
    the same id."""
    cfg = deps.alerts
    if kind not in domain.KINDS:
        raise ValueError(f"unknown alert type {kind!r}")
    if not cfg.on or not domain.wanted(kind, cfg.events):
        return []
    return [
        AlertRaised(
            alert_id=domain.alert_id(kind, key),
            kind=kind,
            time=deps.now().isoformat(timespec="seconds"),
            project=deps.names.model_name,
            summary=summary,
            details=dict(details),
            destination="",
        )
    ]


def publish(deps: Deps, kind: str, summary: str, details: Mapping[str, Any], *, key: str) -> int:
    """Raise an alert from code that is no handler; never raises (an alert
    must not fail what it reports). Returns the messages published (0: alerts
    are off, or this occurrence was published before), -1 when publishing failed."""
    from minimlops.services import messagebus

    try:
        events = raised(deps, kind, summary, details, key=key)
        return sum(1 for event in events if messagebus.publish(event, deps))
    except Exception:
        logger.exception("alerts: could not publish %s", kind)
        return -1


def dead_lettered(
    deps: Deps,
    *,
    subscription: str,
    kind: str,
    error: str,
    key: str,
    details: Mapping[str, Any] | None = None,
) -> list[Event]:
    """The ``message.dead_lettered`` alert of a message set aside after it kept
    failing (``kind``: its event type). None for an alert: a webhook that keeps
    failing is shown by status and the dashboard, and telling it through the
    same webhooks could not work and would loop."""
    if kind == AlertRaised.__name__ or subscription == SUBSCRIPTION:
        return []
    return raised(
        deps,
        "message.dead_lettered",
        f"{kind} set aside by {subscription} after failing: {error}"[:300],
        {"subscription": subscription, "type": kind, "error": error[:2000], **(details or {})},
        key=key,
    )


def deliver(cfg: Alerts, url: str, payload: bytes) -> int:
    """POST one signed body to one webhook; its status code.

    Raises:
        DeliveryError: not a 2xx answer, or no answer.
    """
    sender = cfg.sender
    if sender is None:  # bootstrap gives one whenever there are webhooks
        raise DeliveryError(f"{domain.shown(url)}: no webhook sender configured")
    headers = {"Content-Type": "application/json", "User-Agent": "minimlops-alerts"}
    if cfg.secret and not domain.is_slack(url):
        headers[domain.SIGNATURE_HEADER] = domain.sign(cfg.secret, payload)
    try:
        status = sender.post(url, payload, headers, cfg.timeout)
    except OSError as exc:
        raise DeliveryError(f"{domain.shown(url)}: {exc}") from exc
    if not 200 <= status < 300:
        raise DeliveryError(f"{domain.shown(url)} answered {status}")
    return status


def send_alert(event: AlertRaised, *, deps: Deps) -> list[Event]:
    """The consumer of the alerts topic: send an alert to its webhook. An
    alert for every webhook (``destination`` empty) with more than one is
    split into one event per webhook, each retried on its own.

    Raises:
        DeliveryError: the webhook did not take it (the bus retries).
    """
    cfg = deps.alerts
    urls = list(dict.fromkeys(cfg.webhooks)) if domain.wanted(event.kind, cfg.events) else []
    if not event.destination and len(urls) > 1:
        return [dataclasses.replace(event, destination=domain.destination(u)) for u in urls]
    url = next(
        (u for u in urls if not event.destination or domain.destination(u) == event.destination),
        None,
    )
    if url is None:  # no webhook (any more) takes it: recorded on the bus, nobody to tell
        logger.debug("alerts: %s %s: no webhook takes it", event.kind, event.alert_id)
        return []
    payload = domain.body(
        event.alert_id,
        event.kind,
        event.time,
        event.project,
        event.summary,
        event.details,
        slack=domain.is_slack(url),
    )
    deliver(cfg, url, payload)
    logger.info("alerts: %s sent to %s (%s)", event.kind, domain.shown(url), event.alert_id)
    return []


def test(cfg: Alerts, project: str, now: str) -> list[dict[str, Any]]:
    """Send a signed ``alert.test`` to every webhook now, not through the bus:
    what each answered, or why it failed."""
    found: list[dict[str, Any]] = []
    aid = domain.alert_id("alert.test", now)
    for url in cfg.webhooks:
        payload = domain.body(
            aid,
            "alert.test",
            now,
            project,
            "a test alert from minimlops alerts test",
            {"sent_by": "minimlops alerts test"},
            slack=domain.is_slack(url),
        )
        try:
            status = deliver(cfg, url, payload)
            found.append({"webhook": domain.shown(url), "ok": True, "status": status})
        except DeliveryError as exc:
            found.append({"webhook": domain.shown(url), "ok": False, "error": str(exc)})
    return found


def status(deps: Deps) -> dict[str, Any]:
    """For ``minimlops status`` and the dashboard: the webhooks, and the alerts
    waiting to be sent or set aside after failing (with the last error)."""
    found: dict[str, Any] = {
        "webhooks": [domain.shown(u) for u in deps.alerts.webhooks],
        "events": list(deps.alerts.events),
        "signed": bool(deps.alerts.secret),
    }
    for s in deps.bus.stats():
        ours = s.get("subscription") == SUBSCRIPTION or s.get("topic") == deps.names.alerts_topic
        if ours and s.get("pending") is not None:
            found.update(
                waiting=s["pending"] + s["leased"], sent=s["acked"], failed=s["dead_lettered"]
            )
    last_error = getattr(deps.bus, "last_error", None)  # the local bus's; Pub/Sub: Cloud Logging
    if "sent" not in found and last_error is not None:  # local, before its consumer started
        found.update(waiting=0, sent=0, failed=0)
    elif "sent" not in found:  # Pub/Sub counts backlogs in Cloud Monitoring only
        found["uncounted"] = (
            "counts are in Cloud Monitoring (the alerts topic's subscription), "
            "errors in send_alert's log"
        )
    if last_error is not None and (found.get("waiting") or found.get("failed")):
        found["last_error"] = last_error(SUBSCRIPTION)
    return found
