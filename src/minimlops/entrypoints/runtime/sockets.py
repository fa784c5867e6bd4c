"""The listening sockets of ``minimlops up``: the server's, and the extra
serving processes' beside it on the same address (``SO_REUSEPORT``)."""

from __future__ import annotations

import socket

from minimlops.errors import MinimlopsError


def listen(host: str, port: int, *, shared: bool = False, join: bool = False) -> socket.socket:
    """A listening socket. The server's: a plain bind first makes sure nothing
    else listens there (another server would otherwise share the port
    silently) and picks the port when ``port`` is 0; with ``shared`` other
    processes may then listen on the same address. A serving process's
    (``join``): bound beside the server's."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if join:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise MinimlopsError(
            f"cannot listen on {host}:{port}: {exc.strerror} (another server "
            "there? choose another with --port or MINIMLOPS_PORT)"
        ) from None
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock
