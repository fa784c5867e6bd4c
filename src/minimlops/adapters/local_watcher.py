"""The local storage trigger: a polling watcher of the landing-zone directory.

It plays the part of Cloud Storage's "object finalized" notification: each new
object generation is announced once (``publish_once``, remembered across
restarts), and only after the file has stopped changing for ``settle_seconds``
so that a file still being copied in is not read half-written. A file that
minimlops wrote itself (a copy renamed into place: whole when it appears) is
announced by the writer at once, with no settling (``announce``). Polling, not
inotify, because it behaves the same on every file system (network mounts,
container volumes) and a directory listing every 0.2 s costs next to nothing.
"""

from __future__ import annotations

import logging
import time

from minimlops.adapters.local_fs import LocalObjectStore
from minimlops.adapters.sqlite_bus import SQLiteMessageBus
from minimlops.domain.events import ObjectFinalized
from minimlops.ports import ObjectInfo

logger = logging.getLogger(__name__)
RESERVED_PREFIXES = ("rejected/", "reports/")


def announce(bus: SQLiteMessageBus, bucket: str, topic: str, obj: ObjectInfo) -> bool:
    """Announce one object generation unless it was announced before (by the
    watcher or by whoever wrote it); True when this call announced it."""
    event = ObjectFinalized(bucket=bucket, name=obj.name, generation=obj.generation, size=obj.size)
    data, attrs = event.to_message()
    return bus.publish_once(f"{bucket}/{obj.name}#{obj.generation}", topic, data, attrs) is not None


def log_landed(obj: ObjectInfo) -> None:
    logger.info("landing zone: %s landed (%s bytes)", obj.uri, f"{obj.size:,}")


def scan_once(
    store: LocalObjectStore,
    bus: SQLiteMessageBus,
    bucket: str,
    topic: str,
    *,
    settle_seconds: float = 0.5,
) -> int:
    """Announce every complete object generation not announced before.

    Returns the number of new announcements.
    """
    now = time.time()
    published = 0
    for obj in store.list(bucket):
        if obj.name.startswith(RESERVED_PREFIXES) or now - obj.updated < settle_seconds:
            continue
        if announce(bus, bucket, topic, obj):
            log_landed(obj)
            published += 1
    return published
