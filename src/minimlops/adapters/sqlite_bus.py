"""SQLiteMessageBus: a durable, at-least-once message bus in one SQLite file.

Pub/Sub's model in miniature: a message published to a topic gets one
delivery row per subscription; ``pull`` leases deliveries, ``ack`` ends them,
``nack`` schedules a retry with exponential backoff, and after
``max_attempts`` deliveries the message is dead-lettered (kept, with its last
error, for ``minimlops status``). Leases still held when the process died are
released at start, so unacknowledged messages are delivered again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from minimlops.ports import Message

SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    name TEXT PRIMARY KEY, topic TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY, topic TEXT NOT NULL, data BLOB NOT NULL,
    attributes TEXT NOT NULL, published_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    subscription TEXT NOT NULL, message_id TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'ready',  -- ready | acked | dead
    leased INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
    visible_at REAL NOT NULL, last_error TEXT,
    PRIMARY KEY (subscription, message_id));
CREATE TABLE IF NOT EXISTS published_keys (
    key TEXT PRIMARY KEY, message_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS deliveries_ready
    ON deliveries (subscription, state, visible_at);
"""


class SQLiteMessageBus:
    """The MessageBus port on SQLite (WAL, synchronous=FULL)."""

    def __init__(
        self,
        path: Path,
        *,
        max_attempts: int = 5,
        lease_seconds: float = 600.0,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
    ) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.max_attempts = max_attempts
        self.attempts_of: dict[str, int] = {}  # per subscription, where it differs
        self.lease_seconds = lease_seconds
        self.backoff = (backoff_base, backoff_max)
        self._db = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=30
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._published = threading.Condition(self._lock)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def release_leases(self) -> int:
        """Make every leased message deliverable again (call once at start)."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE deliveries SET leased = 0, visible_at = ? "
                "WHERE leased = 1 AND state = 'ready'",
                (time.time(),),
            )
            return cur.rowcount

    def create_subscription(
        self, subscription: str, topic: str, *, max_attempts: int | None = None
    ) -> None:
        """Attach a subscription to a topic (idempotent); ``max_attempts``:
        its deliveries before dead-lettering, else the bus's."""
        if max_attempts is not None:
            self.attempts_of[subscription] = max_attempts
        with self._lock:
            self._db.execute(
                "INSERT INTO subscriptions VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET topic = excluded.topic",
                (subscription, topic),
            )

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        return self.publish_once(None, topic, data, attributes) or ""

    def publish_once(
        self, key: str | None, topic: str, data: bytes, attributes: Mapping[str, str]
    ) -> str | None:
        """Publish unless a message with this key was published before.

        The local landing-zone watcher uses it so that an object generation is
        announced once, even across restarts. Returns the message id, or None
        when the key was seen.
        """
        message_id = uuid.uuid4().hex
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if key is not None:
                    seen = self._db.execute(
                        "INSERT INTO published_keys VALUES (?, ?) ON CONFLICT DO NOTHING",
                        (key, message_id),
                    )
                    if seen.rowcount == 0:
                        self._db.execute("ROLLBACK")
                        return None
                self._db.execute(
                    "INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
                    (message_id, topic, data, json.dumps(dict(attributes)), now),
                )
                self._db.execute(
                    "INSERT INTO deliveries (subscription, message_id, visible_at) "
                    "SELECT name, ?, ? FROM subscriptions WHERE topic = ?",
                    (message_id, now, topic),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._published.notify_all()
        return message_id

    def pull(self, subscription: str, max_messages: int = 1, timeout: float = 0.0) -> list[Message]:
        """Lease ready messages, waiting up to ``timeout`` seconds for one."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                messages = self._lease(subscription, max_messages)
                remaining = deadline - time.monotonic()
                if messages or remaining <= 0:
                    return messages
                self._published.wait(min(remaining, 0.25))

    def _lease(self, subscription: str, limit: int) -> list[Message]:
        now = time.time()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            rows = self._db.execute(
                "SELECT m.id, m.data, m.attributes, d.attempts FROM deliveries d "
                "JOIN messages m ON m.id = d.message_id WHERE d.subscription = ? "
                "AND d.state = 'ready' AND d.visible_at <= ? "
                "ORDER BY d.visible_at, m.published_at LIMIT ?",
                (subscription, now, limit),
            ).fetchall()
            self._db.executemany(
                "UPDATE deliveries SET leased = 1, attempts = attempts + 1, "
                "visible_at = ? WHERE subscription = ? AND message_id = ?",
                [(now + self.lease_seconds, subscription, r[0]) for r in rows],
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return [Message(r[0], r[1], json.loads(r[2]), r[3] + 1) for r in rows]

    def ack(self, subscription: str, message_id: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE deliveries SET state = 'acked', leased = 0 "
                "WHERE subscription = ? AND message_id = ?",
                (subscription, message_id),
            )

    def dead_letter(self, subscription: str, message_id: str, error: str) -> None:
        """Set a message aside at once (it can never be handled, e.g. undecodable)."""
        with self._lock:
            self._db.execute(
                "UPDATE deliveries SET leased = 0, state = 'dead', last_error = ? "
                "WHERE subscription = ? AND message_id = ?",
                (error[:2000], subscription, message_id),
            )

    def nack(self, subscription: str, message_id: str, error: str) -> None:
        with self._lock:
            row = self._db.execute(
                "SELECT attempts FROM deliveries WHERE subscription = ? AND message_id = ?",
                (subscription, message_id),
            ).fetchone()
            if row is None:
                return
            attempts = int(row[0])
            base, cap = self.backoff
            dead = attempts >= self.attempts_of.get(subscription, self.max_attempts)
            self._db.execute(
                "UPDATE deliveries SET leased = 0, state = ?, visible_at = ?, "
                "last_error = ? WHERE subscription = ? AND message_id = ?",
                (
                    "dead" if dead else "ready",
                    time.time() + min(cap, base * 2 ** (attempts - 1)),
                    error[:2000],
                    subscription,
                    message_id,
                ),
            )

    def stats(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT s.name, s.topic, "
                "COALESCE(SUM(d.state = 'ready' AND d.leased = 0), 0), "
                "COALESCE(SUM(d.state = 'ready' AND d.leased = 1), 0), "
                "COALESCE(SUM(d.state = 'acked'), 0), "
                "COALESCE(SUM(d.state = 'dead'), 0) FROM subscriptions s "
                "LEFT JOIN deliveries d ON d.subscription = s.name "
                "GROUP BY s.name, s.topic ORDER BY s.name"
            ).fetchall()
        keys = ("subscription", "topic", "pending", "leased", "acked", "dead_lettered")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def last_error(self, subscription: str) -> str | None:
        """The latest error of a message not yet handled (retrying, or set aside)."""
        with self._lock:
            row = self._db.execute(
                "SELECT last_error FROM deliveries WHERE subscription = ? AND state != 'acked' "
                "AND last_error IS NOT NULL ORDER BY visible_at DESC LIMIT 1",
                (subscription,),
            ).fetchone()
        return row[0] if row else None

    def dead_letters(self, subscription: str | None = None) -> list[dict[str, Any]]:
        """Dead-lettered messages with their last error, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT d.subscription, m.id, m.topic, m.attributes, d.attempts, "
                "d.last_error FROM deliveries d JOIN messages m ON m.id = d.message_id "
                "WHERE d.state = 'dead' AND (? IS NULL OR d.subscription = ?) "
                "ORDER BY m.published_at DESC",
                (subscription, subscription),
            ).fetchall()
        keys = ("subscription", "id", "topic", "attributes", "attempts", "error")
        return [dict(zip(keys, r, strict=True)) for r in rows]
