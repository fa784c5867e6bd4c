"""The local storage trigger: a polling watcher of the landing-zone directory.

It plays the part of Cloud Storage's "object finalized" notification: each new
object generation is announced once (``publish_once``, remembered across
restarts), and only after the file has stopped changing for ``settle_seconds``
so that a file still being copied in is not read half-written. Polling, not
inotify, because it behaves the same on every file system (network mounts,
container volumes) and a directory listing every 0.2 s costs next to nothing.
"""

from __future__ import annotations

import logging
import time

from minimlops.adapters.local_fs import LocalObjectStore
from minimlops.adapters.sqlite_bus import SQLiteMessageBus
from minimlops.domain.events import ObjectFinalized

logger = logging.getLogger(__name__)
RESERVED_PREFIXES = ("rejected/", "reports/")


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
        event = ObjectFinalized(
            bucket=bucket, name=obj.name, generation=obj.generation, size=obj.size
        )
        data, attrs = event.to_message()
        key = f"{bucket}/{obj.name}#{obj.generation}"
        if bus.publish_once(key, topic, data, attrs):
            logger.info("landing zone: %s landed (%s bytes)", obj.uri, f"{obj.size:,}")
            published += 1
    return published
