"""Hearing a server's reply to a message between two steps of other work, before the event loop
polls its sockets again.

A crash between a server's 250 and our note of it sends the message twice. Under a full load the
loop runs every session's ready work before it polls its sockets again: a reply that arrives
just after a poll waits milliseconds to be read, and that wait was most of what a crash still
duplicated. `poll_now` is called between steps of other work (each SMTP reply the submission
listener sends, the most frequent step under load): one epoll_wait with no timeout on the
sockets of transactions whose message has been sent. For a ready one it peeks at the bytes
(MSG_PEEK: they stay in the socket for the transport to read as usual) and, for a complete
reply, calls the transaction's hook, which writes the delivered note. The transport's read
callback calls the same hook later (`ReplyReader.on_reply`); whichever comes first runs it, once.

Connections with TLS cannot be peeked at (the bytes are ciphertext): their replies are heard by
the read callback only. A thread doing this instead heard replies no sooner, as it waits for the
GIL and the CPU like everything else (see the README's reliability section).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from collections.abc import Callable
from typing import Any

from aiosmtplib import SMTPResponse, SMTPResponseException

from mta.delivery.replyparse import take_reply

PEEK_BYTES = 4096       # a final reply is one short line, or a few
POLL_GAP = 0.0002


class Once:
    """Runs `fn` on its first call only (both the peek and the read callback may hear a reply)."""

    __slots__ = ("_fn", "done")

    def __init__(self, fn: Callable[[SMTPResponse], Any]) -> None:
        self._fn = fn
        self.done = False

    def __call__(self, reply: SMTPResponse) -> None:
        if not self.done:
            self.done = True
            self._fn(reply)


def complete_reply(data: bytes) -> SMTPResponse | None:
    """The first reply in `data` if all its lines are there; None if not, or if it is malformed
    (the transport reads it then, and the transaction fails as it would have)."""
    try:
        return take_reply(bytearray(data))
    except SMTPResponseException:
        return None


class ReplyPeek:
    """Connections are registered once for their lifetime and armed for one readiness report
    (EPOLLONESHOT) per message, when its final reply is awaited: one system call a message, and
    `poll_now` hears only sockets that matter (level-triggered, every socket with unread bytes
    came back from each poll, which cost twice as much). `poll_now` polls at most every
    `POLL_GAP` seconds: it is called several thousand times a second under load, and a reply
    heard a fifth of a millisecond later is still heard milliseconds before the loop reads it."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        # Keyed by our own duplicate of the transport's descriptor, closed at `unwatch`: its
        # number cannot be reused for another socket while it is watched.
        self._watched: dict[int, tuple[socket.socket, Any]] = {}
        self._next_poll = 0.0

    def watch(self, transport_socket: Any, reader: Any) -> int:
        """Watches a connection whose `reader.on_reply` is a `Once` while a final reply is
        awaited (None otherwise); returns a handle for `arm` and `unwatch`, or -1 if it cannot
        be watched."""
        try:
            sock = socket.socket(fileno=os.dup(transport_socket.fileno()))
        except (OSError, AttributeError, ValueError):
            return -1
        fd = sock.fileno()
        try:
            self._epoll.register(fd, select.EPOLLONESHOT)     # not armed yet
        except OSError:
            sock.close()
            return -1
        self._watched[fd] = (sock, reader)
        return fd

    def arm(self, handle: int) -> None:
        """The connection's final reply is awaited: its next readiness is reported once."""
        if handle in self._watched:
            with contextlib.suppress(OSError):
                self._epoll.modify(handle, select.EPOLLIN | select.EPOLLONESHOT)

    @property
    def connections(self) -> int:
        return len(self._watched)

    def unwatch(self, handle: int) -> None:
        entry = self._watched.pop(handle, None)
        if entry is not None:
            with contextlib.suppress(OSError):
                self._epoll.unregister(handle)
            entry[0].close()

    def poll_now(self) -> None:
        if not self._watched:
            return
        now = time.monotonic()
        if now < self._next_poll:
            return
        self._next_poll = now + POLL_GAP
        try:
            events = self._epoll.poll(0)
        except OSError:
            return
        for fd, _mask in events:
            entry = self._watched.get(fd)
            if entry is None:
                continue
            sock, reader = entry
            hook = reader.on_reply
            if hook is None or hook.done:
                continue        # not awaiting a final reply, or heard it: the transport reads it
            try:
                data = sock.recv(PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except OSError:
                continue
            reply = complete_reply(data) if data else None
            if reply is not None:
                hook(reply)
            # One report per arming: a partial reply or a closed connection is left to the
            # transport's read callback.

    def close(self) -> None:
        for handle in list(self._watched):
            self.unwatch(handle)
        self._epoll.close()
