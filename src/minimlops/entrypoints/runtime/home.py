"""The data home a server holds: a lock the kernel drops when the server
dies, and ``server.json`` (address, admin token, pid) for the commands that
ask the running server instead of opening the warehouse themselves."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from minimlops.config import Settings

HOME_LOCK = "server.lock"


@dataclass(frozen=True)
class ServerInfo:
    url: str
    token: str
    pid: int


def write_runtime_file(settings: Settings, url: str) -> ServerInfo:
    """Record a running server's address and a fresh local admin token (0600)."""
    info = ServerInfo(url, secrets.token_urlsafe(32), os.getpid())
    path = settings.runtime_file
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": info.url, "token": info.token, "pid": info.pid}, fh)
    os.replace(tmp, path)
    return info


def hold_home(settings: Settings) -> int | None:
    """Hold the data home for a server: an exclusive lock on ``server.lock``
    that the kernel drops when the process ends, however it ends (kill -9
    included). Returns the descriptor to keep open, or None when another
    process holds the home. A pid in ``server.json`` cannot tell this: after
    a crash or a reboot it may name any other process."""
    settings.home.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.home / HOME_LOCK, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _home_held(settings: Settings) -> bool:
    try:
        fd = os.open(settings.home / HOME_LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # granted only when no server holds it
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def running_server(settings: Settings) -> ServerInfo | None:
    """The server that holds this data home, if one runs (a ``server.json``
    left by a server that died is ignored)."""
    if not _home_held(settings):
        return None
    try:
        data = json.loads(Path(settings.runtime_file).read_text())
        return ServerInfo(data["url"], data["token"], int(data["pid"]))
    except (OSError, ValueError, KeyError):
        return None  # holding the home, not yet listening
