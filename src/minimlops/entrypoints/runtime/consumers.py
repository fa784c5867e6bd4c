"""The local runtime: watcher and bus consumers in threads beside the server.

Each subscription has one consumer thread, so ingestions run one at a time and
trainings run one at a time (a burst of triggers queues up, it does not run in
parallel). A handler that raises is retried with backoff, then dead-lettered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from minimlops.bootstrap import App
from minimlops.domain.events import Event, ObjectFinalized, UnknownEventError, from_message
from minimlops.errors import Cancelled
from minimlops.process import freeze_new_modules, release_memory
from minimlops.services import alerts, messagebus, monitor

logger = logging.getLogger(__name__)


def subscriptions(app: App) -> dict[str, list[tuple[str, str]]]:
    """Worker name -> the (subscription, topic) pairs it consumes."""
    n = app.deps.names
    return {
        "ingest_data": [("ingest_data", ObjectFinalized.default_topic)],
        "train_model": [
            ("train_model", n.ingestion_topic),
            ("train_model-retrain", n.retrain_topic),
        ],
        "serving": [("serving", n.promoted_topic)],
        "send_alert": [(alerts.SUBSCRIPTION, n.alerts_topic)],
    }


class Runtime:
    """Starts and stops the local triggers and consumers."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.subs = subscriptions(app)
        for pairs in self.subs.values():
            for sub, topic in pairs:
                if sub == alerts.SUBSCRIPTION:  # a receiver down for minutes loses none
                    app.deps.bus.create_subscription(sub, topic, max_attempts=alerts.MAX_ATTEMPTS)
                else:
                    app.deps.bus.create_subscription(sub, topic)

    def handle_one(self, worker: str) -> bool:
        """Take one message for a worker and handle it; False if none was ready."""
        bus = self.app.deps.bus
        for sub, _ in self.subs[worker]:
            for msg in bus.pull(sub, 1):
                try:
                    event = from_message(msg.data, msg.attributes)
                except UnknownEventError as exc:  # retrying cannot help: set it aside
                    logger.error("%s: dead-lettering message %s: %s", sub, msg.id, exc)
                    bus.dead_letter(sub, msg.id, f"undecodable: {exc}")
                    self._dead_lettered(sub, msg.id, msg.attributes.get("type", "?"), str(exc))
                    return True
                self._dispatch(worker, sub, msg.id, msg.attempt, event)
                return True
        return False

    def _coalesce(self, worker: str, keep: str) -> int:
        """Acknowledge every other waiting trigger of the training worker: the
        run about to start reads all data there is, so they are served by it."""
        bus, taken = self.app.deps.bus, 0
        for sub, _ in self.subs[worker]:
            for msg in bus.pull(sub, 1000):
                if msg.id != keep:
                    bus.ack(sub, msg.id)
                    taken += 1
        if taken:
            logger.info("train_model: %d more triggers coalesced into this run", taken)
        return taken

    def _dispatch(self, worker: str, sub: str, msg_id: str, attempt: int, event: Event) -> None:
        bus = self.app.deps.bus
        if worker == "train_model":
            self._coalesce(worker, msg_id)
        try:
            if worker == "serving":
                self.app.predictor.refresh()
            elif worker == "send_alert":
                messagebus.handle(event, self.app.deps)
            else:
                self._flush_predictions()
                messagebus.handle(event, self.app.deps)
        except Cancelled as exc:  # left unacknowledged: delivered again at the next start
            logger.warning("%s: %s; it runs again at the next start", sub, exc)
            return
        except Exception as exc:
            release_memory()
            logger.exception("%s: %s failed (attempt %d): %s", sub, event.type, attempt, exc)
            bus.nack(sub, msg_id, f"{type(exc).__name__}: {exc}")
            limit = (
                alerts.MAX_ATTEMPTS
                if sub == alerts.SUBSCRIPTION
                else self.app.settings.bus_max_attempts
            )
            if attempt >= limit:
                self._dead_lettered(sub, msg_id, event.type, f"{type(exc).__name__}: {exc}")
            return
        bus.ack(sub, msg_id)
        if worker != "serving":
            release_memory()

    def _dead_lettered(self, sub: str, msg_id: str, kind: str, error: str) -> None:
        """A message set aside after failing: an alert (none for an alert);
        never raises, as the message is set aside whatever happens here."""
        try:
            events = alerts.dead_lettered(
                self.app.deps,
                subscription=sub,
                kind=kind,
                error=error,
                key=f"{sub}/{msg_id}",
                details={"message_id": msg_id},
            )
            for event in events:
                messagebus.publish(event, self.app.deps)
        except Exception:
            logger.exception("alerts: could not publish message.dead_lettered")

    def _flush_predictions(self) -> None:
        """Ingestion labels earlier predictions and training reads the
        labelled ones, so the last seconds' predictions are imported first
        (the importer waits for a lull or a few seconds). Best effort: a
        failed import leaves them in the journal for the next one, and must
        not fail (nor dead-letter) the file or the training."""
        try:
            self.app.flush_predictions()
        except Exception:
            logger.exception("prediction journal: import failed; will retry")

    def scan(self, settle_seconds: float | None = None) -> int:
        """Look at the landing zone once."""
        settle = self.app.settings.settle_seconds if settle_seconds is None else settle_seconds
        return self.app.scan_landing_zone(settle)

    def drain(self, scan: bool = True) -> None:
        """Process everything until idle (one-shot commands without a server).

        Files there were written whole by this user's own command, so they
        need no settling time.
        """
        if scan:
            self.scan(settle_seconds=0)
        while any(self.handle_one(w) for w in self.subs):
            pass

    def start(self) -> None:
        released = self.app.deps.bus.release_leases()
        if released:
            logger.warning("redelivering %d unacknowledged messages", released)
        self._spawn("watcher", self._watch)
        self._spawn("monitor", self._monitor)
        for worker in self.subs:
            self._spawn(worker, lambda w=worker: self._consume(w))  # type: ignore[misc]

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the threads; a training in flight is cancelled, not waited for
        (its trigger stays unacknowledged, so the next start runs it)."""
        self.stop_event.set()
        cancel = getattr(self.app.deps.compute, "cancel", None)
        if cancel is not None:
            cancel()
        for t in self.threads:
            t.join(timeout)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _watch(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.scan()
                self.app.predictor.follow()  # also catches promotions by other processes
            except Exception:
                logger.exception("watcher: scan failed; retrying")
            self.stop_event.wait(self.app.settings.watch_interval)

    def _monitor(self) -> None:
        while not self.stop_event.wait(self.app.monitor_every):
            try:
                self.app.flush_predictions()
                checked = monitor.check(self.app.deps, self.app.registry, self.app.monitor)
                for event in checked.events:
                    messagebus.publish(event, self.app.deps)
            except Exception:
                logger.exception("monitor: check failed; retrying next time")
            freeze_new_modules()  # what the check imported (scipy) is never garbage

    def _consume(self, worker: str) -> None:
        bus = self.app.deps.bus
        while not self.stop_event.is_set():
            if not self.handle_one(worker):
                bus.pull(self.subs[worker][0][0], 0, timeout=0.2)  # wait for a publish
                time.sleep(0.05 if len(self.subs[worker]) > 1 else 0)
