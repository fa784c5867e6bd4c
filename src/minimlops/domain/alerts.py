"""Alerts: what is sent to a webhook, how it is signed, and how a receiver checks it.

Every alert is a JSON object ``{"id", "type", "time", "project", "summary",
"details"}``; a Slack incoming webhook (``https://hooks.slack.com/...``) gets
Slack's message format instead. A request carries
``X-Minimlops-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``
keyed with ``MINIMLOPS_ALERT_SECRET``, the scheme Stripe's webhooks made
common: the timestamp inside the signed text lets a receiver refuse a replayed
request (:func:`verify`), and ``id`` (the same on every retry) lets it drop a
repeated one. Pure functions: no I/O here.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import math
import time as _time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Minimlops-Signature"
TOLERANCE_S = 300  # a receiver refuses a signature older (or newer) than this

# every kind of alert, and what it means (docs/alerts.md is generated from this)
KINDS: dict[str, str] = {
    "file.rejected": "a landed file was refused (bad schema, or more bad rows than allowed)",
    "ingestion.skipped_rows": "a file was loaded, but some of its rows were bad and skipped",
    "training.finished": "a training run stored a new model version",
    "training.failed": "a training run raised (it is retried, then dead-lettered)",
    "model.promoted": "a version became champion and serves",
    "model.kept": "the gate kept the champion: the new version was not better",
    "model.rolled_back": "a person rolled the champion back to the previous one",
    "drift.detected": "inputs of recent predictions drifted from the champion's TRAIN rows",
    "metric.dropped": "live accuracy (or error) on labelled predictions crossed its threshold",
    "retraining.triggered": "the monitor asked for a new model (drift, metric, schedule)",
    "message.dead_lettered": "a message kept failing and was set aside",
    "alert.test": "sent by `minimlops alerts test`",
}


def alert_id(kind: str, key: str) -> str:
    """The same id for the same occurrence (kind and key): on every retry,
    every destination, and when two processes raise it."""
    return hashlib.sha256(f"{kind}\0{key}".encode()).hexdigest()[:32]


def destination(url: str) -> str:
    """A webhook's name on the bus: a digest of its URL (which may hold a token)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def is_slack(url: str) -> bool:
    """A Slack incoming webhook, which takes Slack's message format."""
    return urlsplit(url).hostname == "hooks.slack.com"


def shown(url: str) -> str:
    """A webhook as status pages show it: scheme, host and port, no path (a
    Slack URL's path is its secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


def wanted(kind: str, patterns: Iterable[str]) -> bool:
    """Whether ``MINIMLOPS_ALERT_EVENTS`` (shell patterns: ``model.*``) takes a kind."""
    return any(fnmatch.fnmatchcase(kind, p) for p in patterns)


def body(
    alert_id: str,
    kind: str,
    time: str,
    project: str,
    summary: str,
    details: Mapping[str, Any],
    *,
    slack: bool = False,
) -> bytes:
    """The request body: the JSON alert, or a Slack message."""
    if not slack:
        doc: dict[str, Any] = {
            "id": alert_id,
            "type": kind,
            "time": time,
            "project": project,
            "summary": summary,
            "details": dict(details),
        }
    else:
        facts = [
            {"type": "mrkdwn", "text": f"*{k}*\n{_short(v)}"} for k, v in list(details.items())[:10]
        ]
        text = f"[{project}] {kind}: {summary}"
        doc = {
            "text": text,  # the notification's text, and what clients without blocks show
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*{kind}* · {summary}"}},
                *([{"type": "section", "fields": facts}] if facts else []),
                {
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": f"{project} · {time} · id {alert_id}"}],
                },
            ],
        }
    return json.dumps(_finite(doc), sort_keys=True, default=str, allow_nan=False).encode()


def _finite(value: Any) -> Any:
    """NaN and infinities as null: strict JSON parsers refuse them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:197] + "..."


def sign(secret: str, payload: bytes, at: int | None = None) -> str:
    """The signature header's value for a body, at ``at`` (now)."""
    t = int(_time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(
    secret: str,
    header: str | None,
    payload: bytes,
    *,
    now: float | None = None,
    tolerance: float = TOLERANCE_S,
) -> bool:
    """What a receiver does: the header's ``v1`` is the HMAC of ``"<t>.<body>"``
    (compared in constant time) and ``t`` is within ``tolerance`` of now."""
    if not header:
        return False
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        t = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((_time.time() if now is None else now) - t) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields.get("v1", ""))
