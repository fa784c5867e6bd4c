"""Alerts: signatures a receiver can check, Slack's format, the settings'
checks, and alerts from failures (a training that raises, a message set aside)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from minimlops.bootstrap import build
from minimlops.config import ConfigError, Settings
from minimlops.domain import alerts
from minimlops.domain.events import AlertRaised, RetrainRequested, from_message
from minimlops.entrypoints.runtime.consumers import Runtime
from minimlops.services import admin, messagebus
from minimlops.services import alerts as service
from minimlops.services.deps import Alerts, Deps
from tests.e2e.test_alerts import Receiver

SECRET = "s3cret"


class Sender:
    """A WebhookSender that keeps what it would send and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status, self.sent = status, []

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        self.sent.append((url, body, dict(headers)))
        return self.status


def test_a_receiver_accepts_our_signature_and_refuses_tampering_and_replays() -> None:
    body = alerts.body("id1", "model.promoted", "2026-01-01T00:00:00+00:00", "p", "s", {"a": 1})
    header = alerts.sign(SECRET, body)
    assert alerts.verify(SECRET, header, body)
    assert not alerts.verify(SECRET, header, body.replace(b'"a": 1', b'"a": 2'))
    assert not alerts.verify("other", header, body)
    assert not alerts.verify(SECRET, None, body) and not alerts.verify(SECRET, "v1=00", body)
    old = alerts.sign(SECRET, body, at=int(time.time()) - alerts.TOLERANCE_S - 1)
    assert not alerts.verify(SECRET, old, body)  # a replay of a request captured earlier
    t, mac = header.split(",")
    assert t.startswith("t=") and len(mac) == len("v1=") + 64


def test_slack_gets_its_message_format_and_other_webhooks_the_signed_json() -> None:
    sender = Sender()
    cfg = Alerts(
        webhooks=("https://hooks.slack.com/services/T0/B0/xyz", "https://example.test/hook"),
        secret=SECRET,
        sender=sender,
    )
    found = service.test(cfg, "titanic", "2026-01-01T00:00:00+00:00")
    assert [r["ok"] for r in found] == [True, True]
    assert found[0]["webhook"] == "https://hooks.slack.com"  # the path is Slack's secret
    (slack_url, slack_body, slack_headers), (_, body, headers) = sender.sent
    slack = json.loads(slack_body)
    assert "alert.test" in slack["text"] and slack["blocks"][0]["type"] == "section"
    assert alerts.SIGNATURE_HEADER not in slack_headers
    doc = json.loads(body)
    assert doc["type"] == "alert.test" and doc["project"] == "titanic"
    assert alerts.verify(SECRET, headers[alerts.SIGNATURE_HEADER], body)


def test_a_webhook_that_refuses_is_an_error_to_retry() -> None:
    cfg = Alerts(webhooks=("https://example.test/hook",), secret=SECRET, sender=Sender(500))
    (found,) = service.test(cfg, "titanic", "now")
    assert not found["ok"] and "answered 500" in found["error"]


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"MINIMLOPS_ALERT_WEBHOOKS": "https://example.test/hook"}, "MINIMLOPS_ALERT_SECRET"),
        (
            {"MINIMLOPS_ALERT_WEBHOOKS": "ftp://example.test/x", "MINIMLOPS_ALERT_SECRET": "k"},
            "http",
        ),
    ],
)
def test_settings_refuse_an_unsigned_webhook_and_a_url_that_is_none(env, error) -> None:
    with pytest.raises(ConfigError, match=error):
        Settings.from_env(env)


def test_slack_alone_needs_no_secret_and_webhooks_stay_secret() -> None:
    s = Settings.from_env({"MINIMLOPS_ALERT_WEBHOOKS": "https://hooks.slack.com/services/a/b/c"})
    assert s.alert_urls == ("https://hooks.slack.com/services/a/b/c",)
    assert "services/a/b/c" not in repr(s)


def test_one_alert_is_split_per_webhook_that_wants_it_with_one_id(fake_deps: Deps) -> None:
    assert service.raised(fake_deps, "model.promoted", "s", {}, key="k") == []  # alerts off
    sender = Sender()
    on = Alerts(
        on=True, webhooks=("https://a.test/x", "https://b.test/y"), secret=SECRET, sender=sender
    )
    deps = replace(fake_deps, alerts=on)
    (event,) = service.raised(deps, "model.promoted", "s", {"v": 1}, key="k")
    a, b = service.send_alert(event, deps=deps)  # one event per webhook, retried on its own
    assert a.alert_id == b.alert_id == event.alert_id and a.destination != b.destination
    assert service.send_alert(a, deps=deps) == [] and service.send_alert(b, deps=deps) == []
    assert [url for url, _, _ in sender.sent] == ["https://a.test/x", "https://b.test/y"]
    assert service.raised(deps, "model.promoted", "s", {}, key="k")[0].alert_id == a.alert_id
    assert service.raised(deps, "model.promoted", "s", {}, key="other")[0].alert_id != a.alert_id
    only = replace(deps, alerts=replace(on, events=("training.*", "file.rejected")))
    assert service.raised(only, "model.promoted", "s", {}, key="k") == []
    assert len(service.raised(only, "training.failed", "s", {}, key="k")) == 1
    with pytest.raises(ValueError, match="unknown alert type"):
        service.raised(deps, "model.exploded", "s", {}, key="k")


def _alerts_published(deps: Deps) -> list[AlertRaised]:
    return [
        e
        for topic, data, attrs in deps.bus.published  # type: ignore[attr-defined]
        if topic == deps.names.alerts_topic
        and isinstance(e := from_message(data, attrs), AlertRaised)
    ]


def test_a_training_that_raises_alerts_with_the_same_id_on_every_retry(fake_deps: Deps) -> None:
    class Broken(type(fake_deps.warehouse)):  # type: ignore[misc]
        def latest_summary(self, table: str) -> Any:
            raise OSError("warehouse unreachable")

    deps = replace(
        fake_deps,
        warehouse=Broken(fake_deps.warehouse.schemas),
        alerts=Alerts(on=True, webhooks=("https://a.test/x",), secret=SECRET),
    )
    trigger = RetrainRequested(reason="x")
    for _ in range(2):
        with pytest.raises(OSError):
            messagebus.handle(trigger, deps)
    first, again = _alerts_published(deps)
    assert first.kind == "training.failed" and "warehouse unreachable" in first.summary
    assert first.alert_id == again.alert_id


def test_a_rollback_alerts_as_a_rollback(fake_deps: Deps) -> None:
    from minimlops.generate import passengers
    from minimlops.services.train import registry_of
    from tests.unit.test_services import _ingest_and_train

    deps = replace(fake_deps, alerts=Alerts(on=True, webhooks=("https://a.test/x",), secret=SECRET))
    _ingest_and_train(deps, "a.csv", passengers(300, seed=2))
    registry = registry_of(deps)
    admin.promote(deps, registry, "1", "again")
    admin.rollback(deps, registry)
    kinds = [e.kind for e in _alerts_published(deps)]
    assert kinds[-1] == "model.rolled_back" and "model.promoted" in kinds


def test_a_message_set_aside_is_an_alert_and_a_failing_webhook_shows_in_status(
    tmp_path,
) -> None:
    receiver = Receiver()
    try:
        settings = Settings.from_env(
            {"MINIMLOPS_ALERT_WEBHOOKS": receiver.url, "MINIMLOPS_ALERT_SECRET": SECRET},
            home=tmp_path / "home",
            port=0,
        )
        app = build(settings)
        runtime = Runtime(app)
        app.deps.bus.publish(app.deps.names.retrain_topic, b"{}", {"type": "NoSuchEvent"})
        assert runtime.handle_one("train_model")  # undecodable: set aside at once
        receiver.status = 500
        assert runtime.handle_one("send_alert")
        status = admin.status(app.deps, app.registry)["alerts"]
        assert status["waiting"] == 1 and "answered 500" in status["last_error"]
        assert receiver.tries and receiver.tries[0][1] == "message.dead_lettered"
        app.close()
    finally:
        receiver.close()


DOC = Path(__file__).resolve().parents[2] / "docs" / "alerts.md"


def test_the_guide_lists_every_alert_type() -> None:
    text = DOC.read_text()
    listed = re.findall(r"^\| `([a-z_.]+)` \|", text, flags=re.M)
    assert listed == list(alerts.KINDS)


def test_the_guides_receiver_accepts_what_we_send_and_refuses_the_rest() -> None:
    """The docs' verification code, run as a receiver would run it."""
    text = DOC.read_text()
    block = text.split("<!-- example: verify-signature", 1)[1]
    code = re.search(r"```python\n(.*?)```", block, flags=re.S).group(1)
    scope: dict[str, Any] = {}
    exec(code, scope)  # noqa: S102 (our own docs)
    body = alerts.body("id", "model.kept", "t", "p", "s", {})
    assert scope["verify"](SECRET, alerts.sign(SECRET, body), body)
    assert not scope["verify"]("other", alerts.sign(SECRET, body), body)
    assert not scope["verify"](SECRET, alerts.sign(SECRET, body), body + b" ")
    stale = alerts.sign(SECRET, body, at=int(time.time()) - 301)
    assert not scope["verify"](SECRET, stale, body)


def _champion_with_predictions(
    deps: Deps, rows: int, label: Any = None
) -> tuple[Any, list[dict[str, Any]]]:
    """Version 1 on 600 generated passengers serving ``rows`` logged
    predictions; with ``label(i, prediction)``, their true labels too."""
    import pyarrow as pa

    from minimlops.generate import passengers
    from minimlops.services.predict import Predictor
    from minimlops.services.tables import arrow_schema
    from minimlops.services.train import registry_of
    from tests.unit.test_services import _ingest_and_train

    _ingest_and_train(deps, "a.csv", passengers(600, seed=1))
    registry = registry_of(deps)
    predictor = Predictor(registry, deps.now, deps.project)
    predictor.refresh()
    logged = predictor.predict(passengers(rows, seed=9, start_id=100_001).to_pylist())
    deps.warehouse.append("predictions_data", pa.Table.from_pylist(logged))
    if label is not None:
        labels = [
            {
                "uuid": r["uuid"],
                "PassengerId": None,
                "Survived": label(i, r["prediction"]),
                "received_at": deps.now(),
            }
            for i, r in enumerate(logged)
        ]
        schema = arrow_schema("feedback", deps.project)
        deps.warehouse.append("feedback", pa.Table.from_pylist(labels, schema=schema))
    return registry, logged


def test_live_accuracy_under_the_threshold_alerts_once_and_retrains_on_new_rows(
    fake_deps: Deps,
) -> None:
    """The drop is alerted once per training snapshot. While no rows landed
    since the champion learned from them, no training is asked for (it would
    give the champion again); once new rows land, one is."""
    from minimlops.generate import passengers
    from minimlops.services import monitor
    from tests.unit.test_ingest import land
    from tests.unit.test_services import _csv

    deps = replace(fake_deps, alerts=Alerts(on=True, webhooks=("https://a.test/x",), secret=SECRET))
    registry, _ = _champion_with_predictions(deps, 60, lambda i, predicted: 1 - predicted)
    cfg = monitor.MonitorConfig(drift_min_rows=10_000, min_labels=30)  # no drift verdict
    checked = monitor.check(deps, registry, cfg)
    assert checked.events == []  # the rows are version 1's
    noted = checked.not_retrained
    assert len(noted) == 1 and noted[0].startswith("live accuracy 0.000")
    again = monitor.check(deps, registry, cfg)
    assert again.events == [] and again.not_retrained == []  # once a snapshot
    assert "live accuracy: already fired on these training rows" in " ".join(again.quiet)
    assert [t["kind"] for t in monitor.triggers(deps)].count("accuracy") == 1
    kinds = [e.kind for e in _alerts_published(deps)]
    assert kinds.count("metric.dropped") == 1 and kinds.count("retraining.triggered") == 0
    dropped = next(e for e in _alerts_published(deps) if e.kind == "metric.dropped")
    assert "live accuracy 0.000" in dropped.summary
    land(deps, "more.csv", _csv(passengers(300, seed=12, start_id=9000)))
    (fired,) = monitor.check(deps, registry, cfg).events
    assert "live accuracy 0.000" in fired.reason
    kinds = [e.kind for e in _alerts_published(deps)]
    assert kinds.count("metric.dropped") == 2 and kinds.count("retraining.triggered") == 1


def test_the_local_bus_publishes_an_occurrence_once_across_restarts(tmp_path) -> None:
    """A training retried five times, or a monitor tick after a restart,
    raises the same occurrence again: the local bus keeps one."""
    settings = Settings.from_env(
        {"MINIMLOPS_ALERT_WEBHOOKS": "https://hooks.slack.com/services/a/b/c"},
        home=tmp_path / "home",
        port=0,
    )
    for start in range(2):  # two starts of the same home
        app = build(settings)
        Runtime(app)  # subscribes send_alert
        first = service.publish(app.deps, "training.failed", "x", {}, key="trigger-1")
        assert first == (1 if start == 0 else 0)
        assert service.publish(app.deps, "training.failed", "x", {}, key="trigger-1") == 0
        (queue,) = [q for q in app.deps.bus.stats() if q["subscription"] == service.SUBSCRIPTION]
        assert queue["pending"] == 1
        app.close()


def test_status_on_pub_sub_says_where_the_counts_are(fake_deps: Deps) -> None:
    """Pub/Sub reports backlogs through Cloud Monitoring only: status says so
    instead of showing 0 sent, 0 waiting."""
    from minimlops.entrypoints.cli.report import print_status

    class PubSubStats:  # what the Pub/Sub adapter's stats() gives: no counts
        def stats(self) -> list[dict[str, Any]]:
            return [
                {
                    "subscription": "eventarc-us-central1-send-alert-123-sub-456",
                    "topic": "alerts",
                    **dict.fromkeys(("pending", "leased", "acked", "dead_lettered")),
                }
            ]

    deps = replace(
        fake_deps,
        bus=PubSubStats(),  # type: ignore[arg-type]
        alerts=Alerts(on=True, webhooks=("https://a.test/x",), secret=SECRET),
    )
    found = service.status(deps)
    assert "Cloud Monitoring" in found["uncounted"] and "sent" not in found
    from rich.console import Console

    console = Console(record=True, width=200)
    print_status(console, {"tables": {}, "alerts": found, "queues": PubSubStats().stats()})
    shown = console.export_text()
    assert "Cloud Monitoring" in shown and "sent" not in shown and "None" not in shown, shown


def test_live_accuracy_fires_only_when_its_whole_interval_is_under_the_threshold(
    fake_deps: Deps,
) -> None:
    """60 labels at 0.62 right: a 95 % interval of about 0.50-0.74 holds a
    champion that is fine at 0.7, so no retraining; under 0.8 it is a drop."""
    from minimlops.services import monitor

    registry, _ = _champion_with_predictions(
        fake_deps, 60, lambda i, predicted: predicted if i < 37 else 1 - predicted
    )
    (champ,) = monitor.live_accuracy(fake_deps, registry)
    low, high = champ["interval_95"]
    assert champ["live_accuracy"] < 0.7 < high, champ
    quiet = monitor.MonitorConfig(drift_min_rows=10_000, min_labels=30, accuracy_threshold=0.7)
    checked = monitor.check(fake_deps, registry, quiet)
    assert checked.events == [] and checked.not_retrained == []
    assert f"({low:.3f}-{high:.3f}) of version 1 on 60 labels is not wholly under 0.7" in (
        " ".join(checked.quiet)
    )
    assert [t for t in monitor.triggers(fake_deps) if t["kind"] == "accuracy"] == []
    strict = monitor.MonitorConfig(drift_min_rows=10_000, min_labels=30, accuracy_threshold=0.8)
    assert monitor.check(fake_deps, registry, strict).events == []  # (no new rows to train on)
    (seen,) = [t for t in monitor.triggers(fake_deps) if t["kind"] == "accuracy"]
    assert f"({low:.3f}-{high:.3f})" in seen["reason"]


def test_by_default_a_classifier_retrains_once_it_lost_half_its_lift() -> None:
    """Unset, the accuracy threshold is halfway between the champion's
    VALIDATION accuracy and the majority class's: on a target with 93 % of one
    class a fixed 0.7 can never fire (always "no" passes it); on Titanic
    halfway is about the exercise's 0.7. Set, it is used as it is."""
    from minimlops.services.monitor import FALLBACK_THRESHOLD, MonitorConfig, accuracy_floor

    def meta(scored: float, majority: float) -> dict:
        return {
            "version": "3",
            "metrics": {"validation": {"accuracy": scored}},
            "baseline": {"task": {"accuracy": majority}},
        }

    loans, said = accuracy_floor(MonitorConfig(), meta(0.94, 0.932))
    assert loans == pytest.approx(0.936) and said.startswith("half of version 3's lift")
    assert accuracy_floor(MonitorConfig(), meta(0.8284, 0.5821))[0] == pytest.approx(0.70525)
    # no more accurate than the majority class (a lowered threshold trades accuracy for
    # recall): accuracy cannot judge it, and a floor at the majority's would retrain a
    # healthy champion
    floor, why = accuracy_floor(MonitorConfig(), meta(0.86, 0.93))
    assert floor is None and "no more accurate on VALIDATION (0.860)" in why
    assert accuracy_floor(MonitorConfig(accuracy_threshold=0.8), meta(0.94, 0.932)) == (
        0.8,
        "MINIMLOPS_ACCURACY_THRESHOLD",
    )
    assert accuracy_floor(MonitorConfig(), {})[0] == FALLBACK_THRESHOLD


def test_the_default_threshold_is_the_champions_own_and_the_trigger_says_so(
    fake_deps: Deps,
) -> None:
    """A champion whose labels say 0.400 against its own floor: the trigger
    fires, naming the floor and where it comes from."""
    from minimlops.services import monitor

    registry, _ = _champion_with_predictions(
        fake_deps, 300, lambda i, predicted: predicted if i % 5 < 2 else 1 - predicted
    )
    meta = registry.metadata("1")
    floor, said = monitor.accuracy_floor(monitor.MonitorConfig(), meta)
    majority = meta["baseline"]["task"]["accuracy"]
    assert majority <= floor <= max(majority, meta["metrics"]["validation"]["accuracy"])
    checked = monitor.check(fake_deps, registry, monitor.MonitorConfig(drift_min_rows=10_000))
    (seen,) = checked.not_retrained  # (version 1's own rows: seen, not retrained)
    assert seen.startswith("live accuracy 0.400") and f"under {floor:.3f} ({said})" in seen


@pytest.mark.parametrize("name", ["wine", "diabetes"])
def test_a_check_before_labels_names_the_tasks_live_metric(name: str) -> None:
    """No label yet: a classifier's quiet reason is about live accuracy (a
    multiclass one was said to have a "live error"), a regression's about
    live error."""
    from minimlops.services import monitor
    from tests.conftest import fake_deps_for
    from tests.projects import load, rows
    from tests.unit.test_projects import _land_and_train

    p = load(name)
    deps = fake_deps_for(p, cv_folds=3)
    _land_and_train(deps, "first.csv", rows(p, 300, seed=1))
    from minimlops.services.train import registry_of

    quiet = monitor.check(deps, registry_of(deps), monitor.MonitorConfig()).quiet
    what = "live error" if p.task == "regression" else "live accuracy"
    assert f"{what}: 0 of version 1's predictions labelled, 30 needed" in " ".join(quiet), quiet


def test_no_estimate_rests_on_a_handful_of_predictions(fake_deps: Deps) -> None:
    """A version with a few recent predictions gets no estimated accuracy (7
    rows once showed 0.94, 0.76-1.00, beside labels that later said 0.93)."""
    from minimlops.services import monitor

    registry, _ = _champion_with_predictions(fake_deps, monitor.ESTIMATE_MIN_ROWS - 1)
    (champ,) = monitor.live_accuracy(fake_deps, registry)
    assert champ["estimated"] is None
    import pyarrow as pa

    from minimlops.generate import passengers
    from minimlops.services.predict import Predictor

    predictor = Predictor(registry, fake_deps.now, fake_deps.project)
    predictor.refresh()
    one_more = predictor.predict(
        passengers(1, seed=10, start_id=200_001).to_pylist()
    )  # as many as it takes
    fake_deps.warehouse.append("predictions_data", pa.Table.from_pylist(one_more))
    (champ,) = monitor.live_accuracy(fake_deps, registry)
    assert champ["estimated"]["rows"] == monitor.ESTIMATE_MIN_ROWS
    # passengers the model learnt from (their rows landed before), asked about
    # now: not what tomorrow's rows get, so not in the estimate
    learnt = predictor.predict(passengers(40, seed=1).to_pylist())
    fake_deps.warehouse.append("predictions_data", pa.Table.from_pylist(learnt))
    (champ,) = monitor.live_accuracy(fake_deps, registry)
    assert champ["estimated"]["rows"] == monitor.ESTIMATE_MIN_ROWS


def test_the_estimate_alerts_once_per_version_and_snapshot_across_processes(
    fake_deps: Deps,
) -> None:
    """Before labels, the estimate under the threshold is one metric.dropped,
    recorded in the triggers table: a later check (another process, another
    function instance on Google Cloud) sends no second one, and retrains nothing."""
    from minimlops.services import monitor

    deps = replace(fake_deps, alerts=Alerts(on=True, webhooks=("https://a.test/x",), secret=SECRET))
    registry, _ = _champion_with_predictions(deps, 120)
    cfg = monitor.MonitorConfig(drift_min_rows=100, min_labels=30, accuracy_threshold=0.99)
    for _ in range(3):
        assert [
            e for e in monitor.check(deps, registry, cfg).events if "accuracy" in e.reason
        ] == []
    dropped = [e for e in _alerts_published(deps) if e.kind == "metric.dropped"]
    assert len(dropped) == 1 and "estimated accuracy" in dropped[0].summary
    assert [t for t in monitor.triggers(deps) if t["kind"] == monitor.ESTIMATE] == []
    (row,) = [t for t in monitor.triggers(deps, estimates=True) if t["kind"] == monitor.ESTIMATE]
    assert row["details"]["version"] == "1" and row["reason"].startswith("alert only")
    assert [e["kind"] for e in admin.timeline(deps, registry) if e["subject"] == "estimate"] == [
        "alert"
    ]


def test_an_error_in_a_check_reads_as_the_pages_write_it() -> None:
    """A house price's RMSE is 28,571, not 2.857e+04; a small one keeps its digits."""
    from minimlops.services.monitor import _figure

    assert (_figure(28571.4), _figure(2.01894), _figure(0.40361)) == ("28,571", "2.019", "0.4036")
