"""One mail transaction (MAIL, RCPT..., DATA, the message) over a session that aiosmtplib opened.

Why not aiosmtplib's `mail`, `rcpt` and `data`: `data` rewrites line endings and dot-stuffs the
whole message with regular expressions on every attempt (a fifth of the event loop's time under
load), although a spooled body is CRLF-only already (bare CR and LF are refused at submission);
and its protocol takes one reply per command and drops bytes that arrive while it expects none,
so it cannot pipeline (RFC 2920). Here a body known to need nothing goes as it is, any other is
checked for bare CR/LF and dot-stuffed with one `bytes.replace` (mta.wireform); MAIL, every RCPT
and DATA go in one write when the server offers PIPELINING; and
a `ReplyReader` takes the connection's incoming bytes while a transaction runs. aiosmtplib keeps
the rest of the session: connect, EHLO, STARTTLS, RSET, QUIT.

What the replies mean for the queue is not decided here: `Replies` holds what the server said.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiosmtplib
from aiosmtplib import SMTPResponse

from mta.delivery.replyparse import take_reply
from mta.delivery.replypeek import Once, ReplyPeek
from mta.wireform import TERMINATOR, wire_body

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Replies:
    """What the server answered so far; filled as replies arrive, so that after a lost connection
    the caller still knows whether any reply came (a stale connection has none)."""

    mail: SMTPResponse | None = None
    rcpts: list[SMTPResponse] = field(default_factory=list)    # in recipient order
    data: SMTPResponse | None = None        # the reply to DATA (354 to go on)
    final: SMTPResponse | None = None       # the reply after the message
    spent: bool = False                     # the server closes (421) or misbehaved: do not reuse

    @property
    def any(self) -> bool:
        return self.mail is not None

    def accepted(self) -> list[int]:
        """Indexes of the recipients the server took."""
        if self.mail is None or self.mail.code != 250:
            return []
        return [i for i, r in enumerate(self.rcpts) if r.code in (250, 251)]


def command(verb: bytes, address: str, options: Sequence[str], encoding: str) -> bytes:
    """One MAIL FROM / RCPT TO line. Addresses come from the spool (checked at submission), but a
    control character must never be able to start a second command."""
    if _CONTROL.search(address) or any(_CONTROL.search(o) for o in options):
        raise ValueError("Command arg contains a prohibited control character")
    parts = [verb + b"<" + address.encode(encoding) + b">"]
    parts += [o.encode("ascii") for o in options]
    return b" ".join(parts) + b"\r\n"


class ReplyReader(asyncio.Protocol):
    """Sits between an aiosmtplib connection's transport and aiosmtplib's own protocol: while a
    transaction runs (`active`) it keeps every byte the server sends and hands out replies one by
    one; otherwise it passes everything on, so aiosmtplib's RSET and QUIT work as before."""

    def __init__(self, transport: asyncio.Transport, inner: asyncio.Protocol) -> None:
        self.transport = transport
        self.inner = inner
        self.active = False
        self._buf = bytearray()
        # Called with the next reply from the transport's own callback, the moment it is whole,
        # before any task runs (see `transact`'s `on_final_reply`); that reply is `read` next.
        self.on_reply: Once | None = None
        self._early: SMTPResponse | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._error: Exception | None = None
        self._peek: ReplyPeek | None = None
        self._peek_handle = -1

    @classmethod
    def of(cls, smtp: aiosmtplib.SMTP) -> ReplyReader:
        """The reader of `smtp`'s connection, put in place on first use (after STARTTLS, which
        replaces the transport)."""
        transport = smtp.transport
        if transport is None or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        current = transport.get_protocol()
        if isinstance(current, ReplyReader):
            return current
        reader = cls(transport, current)                # type: ignore[arg-type]
        transport.set_protocol(reader)
        _reset_on_close(transport, True)
        return reader

    def watched_by(self, peek: ReplyPeek) -> None:
        """Lets `peek` hear this connection's final replies (not with TLS: its bytes are
        ciphertext), from now until the connection is lost."""
        if self._peek is None and self.transport.get_extra_info("sslcontext") is None:
            self._peek = peek
            self._peek_handle = peek.watch(self.transport.get_extra_info("socket"), self)

    def expect_final_reply(self, hook: Once) -> None:
        """`hook` hears the reply to the message about to be written, from whichever comes first:
        this protocol's read callback or the peek."""
        self.on_reply = hook
        if self._peek is not None:
            self._peek.arm(self._peek_handle)

    def _unwatch(self) -> None:
        if self._peek is not None:
            self._peek.unwatch(self._peek_handle)
            self._peek = None

    # ------------------------------------------------------------------ asyncio.Protocol
    def data_received(self, data: bytes) -> None:
        if not self.active:
            self.inner.data_received(data)
            return
        self._buf += data
        if self.on_reply is not None:
            self._take_early()
        self._wake()

    def _take_early(self) -> None:
        try:
            reply = take_reply(self._buf)
        except aiosmtplib.SMTPResponseException:
            return      # left in the buffer: `read` raises it
        if reply is not None:
            self._early, hook, self.on_reply = reply, self.on_reply, None
            assert hook is not None
            hook(reply)

    def eof_received(self) -> bool | None:
        self._fail(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._unwatch()
        self._fail(aiosmtplib.SMTPServerDisconnected(f"Connection lost: {exc}" if exc else "Connection lost"))
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # ------------------------------------------------------------------ transaction side
    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self.transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self.transport.write(data)

    async def read(self, timeout: float) -> SMTPResponse:
        """The next reply, waiting at most `timeout` seconds for it."""
        while True:
            reply, self._early = self._early, None
            if reply is None:
                reply = take_reply(self._buf)
            if reply is not None:
                return reply
            if self._error is not None:
                raise self._error
            loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()
            timer = loop.call_later(timeout, self._time_out, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _time_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"))

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        self._wake()


async def transact(smtp: aiosmtplib.SMTP, replies: Replies, *, mail: bytes, rcpts: Sequence[bytes], body: bytes,
                   before_body: Awaitable[object] | None, timeout: float, data_timeout: float,
                   on_final_reply: Callable[[SMTPResponse, list[int]], None] | None = None,
                   peek: ReplyPeek | None = None, body_as_is: bool = False) -> None:
    """Runs one transaction, filling `replies` as the server answers. `mail` and `rcpts` are
    command lines (see `command`). `before_body` is awaited after the server's 354 and before
    the message goes: nothing the server could accept leaves before it is done. `body_as_is`:
    the caller knows `body` needs no dot-stuffing or line-end repair (mta.wireform.goes_as_is).

    `on_final_reply(reply, accepted)` is called with the reply to the message and the indexes of
    the recipients it applies to, from the connection's read callback itself: the caller can note
    a 250 before the event loop turns to anything else (a crash between the server's 250 and our
    record of it sends the message twice). With `peek` and no TLS it may be called sooner,
    between steps of other work (mta.delivery.replypeek); it is called once either way.

    Raises what aiosmtplib raises for a lost connection or a timeout (and closes `smtp` then, as
    its replies can no longer be told apart); with PIPELINING offered, MAIL, the RCPTs and DATA
    are sent in one write and their replies read in order afterwards (RFC 2920)."""
    reader = ReplyReader.of(smtp)
    reader.active = True
    try:
        if smtp.supports_extension("pipelining"):
            await _pipelined(reader, replies, mail, rcpts, timeout)
        else:
            await _lockstep(reader, replies, mail, rcpts, timeout)
        if replies.spent or replies.data is None or replies.data.code != 354:
            return
        if not replies.accepted():
            # A server that says 354 with no recipient taken is broken: end the (empty) data
            # and use the connection no more.
            replies.spent = True
            reader.write(b".\r\n")
            replies.final = await reader.read(timeout)
            return
        if before_body is not None:
            await before_body
        if on_final_reply is not None:
            accepted = replies.accepted()
            if peek is not None:
                reader.watched_by(peek)
            reader.expect_final_reply(Once(lambda reply: on_final_reply(reply, accepted)))
        reader.write(body + TERMINATOR if body_as_is else wire_body(body))
        replies.final = await reader.read(data_timeout)
        if replies.final.code == 421:
            replies.spent = True
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPResponseException):
        smtp.close()
        raise
    finally:
        reader.active = False
        reader.on_reply = None
        reader._early = None


_LINGER_ABORT = struct.pack("ii", 1, 0)
_LINGER_DEFAULT = struct.pack("ii", 0, 0)


def _reset_on_close(transport: asyncio.BaseTransport, reset: bool) -> None:
    """A session's socket resets on close (SO_LINGER 0) from its first transaction until it is
    ended in order (`end_in_order`, before QUIT). A close while a message's final reply is
    awaited (this process killed included: the kernel closes its sockets) then resets the
    connection instead of ending it in order: what is still in our send queue (the end of a
    large message to a slow server) is dropped, so the server never sees the final dot, and a
    server whose reads end at the reset (asyncio streams) abandons the transaction even with
    the dot read by its transport. Bytes already in the server's receive queue it still reads
    on Linux: a server that takes the message on the dot then has it, as it would without the
    reset. RFC 5321 4.1.1.4: a transaction the client abandons before the final reply must not
    be delivered. Set once per session rather than around each message (two system calls a
    message saved); a reset between transactions costs the server nothing but a log line."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError, ValueError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ABORT if reset else _LINGER_DEFAULT)


def end_in_order(smtp: aiosmtplib.SMTP) -> None:
    """Before QUIT: the session's close is an orderly one again (see `_reset_on_close`)."""
    transport = smtp.transport
    if transport is not None and isinstance(transport.get_protocol(), ReplyReader):
        _reset_on_close(transport, False)


async def _pipelined(reader: ReplyReader, replies: Replies, mail: bytes, rcpts: Sequence[bytes],
                     timeout: float) -> None:
    reader.write(b"".join((mail, *rcpts, b"DATA\r\n")))
    replies.mail = await reader.read(timeout)
    if replies.mail.code == 421:
        replies.spent = True
        return
    for _ in rcpts:
        reply = await reader.read(timeout)
        replies.rcpts.append(reply)
        if reply.code == 421:
            replies.spent = True
            return
    replies.data = await reader.read(timeout)
    if replies.data.code == 421:
        replies.spent = True


async def _lockstep(reader: ReplyReader, replies: Replies, mail: bytes, rcpts: Sequence[bytes],
                    timeout: float) -> None:
    reader.write(mail)
    replies.mail = await reader.read(timeout)
    if replies.mail.code != 250:
        replies.spent = replies.mail.code == 421
        return
    for rcpt in rcpts:
        reader.write(rcpt)
        reply = await reader.read(timeout)
        replies.rcpts.append(reply)
        if reply.code == 421:
            replies.spent = True
            return
    if not replies.accepted():
        return
    reader.write(b"DATA\r\n")
    replies.data = await reader.read(timeout)
    if replies.data.code == 421:
        replies.spent = True
