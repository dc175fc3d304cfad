"""systemd's notify protocol (sd_notify(3)): one datagram to $NOTIFY_SOCKET per state change."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("sdnotify")


def notify(message: str) -> bool:
    """Sends e.g. "READY=1"; False when not run by systemd (no NOTIFY_SOCKET) or sending failed."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    if path.startswith("@"):          # abstract namespace
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(path)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("systemd notify %r failed: %s", message, exc)
        return False
    return True
