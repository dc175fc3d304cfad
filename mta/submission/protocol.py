"""aiosmtpd's SMTP protocol with the behaviour an MTA needs on top.

- Connection limits (in total and per client IP), answered with 421 before the greeting.
- Enhanced status codes (RFC 2034) on every reply that lacks one, since we advertise them.
- A chunked DATA reader: it ends only at CRLF.CRLF, refuses bare CR or LF anywhere in the data
  (SMTP smuggling), enforces the size and line-length limits after reading to the end (so the
  session stays in sync), and is much cheaper per message than reading line by line.
- AUTH PLAIN / LOGIN with the (deliberately slow) password check off the event loop, offered
  only after STARTTLS except to loopback clients.
"""

from __future__ import annotations

import asyncio
import binascii
import ipaddress
import logging
import re
from base64 import b64decode
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, syntax

from mta.submission.sanitize import SYNTAX_REPLY, reply_for_exception, safe_reply

log = logging.getLogger("mta.smtpd")
logging.getLogger("mail.log").setLevel(logging.WARNING)   # aiosmtpd logs every command at INFO

END_OF_DATA = b"\r\n.\r\n"
READ_CHUNK = 65536

# Enhanced status codes for replies that aiosmtpd produces without one.
_DEFAULT_ENHANCED = {
    "250": "2.0.0", "221": "2.0.0", "251": "2.1.5", "252": "2.0.0",
    "421": "4.3.0", "450": "4.2.0", "451": "4.3.0", "452": "4.3.1", "454": "4.7.0",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4",
    "530": "5.7.0", "535": "5.7.8", "538": "5.7.11", "550": "5.0.0", "551": "5.1.6",
    "552": "5.3.4", "553": "5.1.3", "554": "5.0.0", "555": "5.5.4",
}


@dataclass
class ConnectionLimits:
    """Counts open connections across all sessions of one listener group, and keeps them from
    starving each other (issue 17: 1,050 idle connections from 11 addresses locked everyone out).

    - `reserved` of the `max_total` slots are only for clients in trusted networks: untrusted
      clients together hold at most `max_total - reserved`.
    - When the new client's share is full, the longest-idle *evictable* session (untrusted, not
      authenticated, not in DATA; those that have not sent MAIL go first) is closed with a 421
      to make room. Trusted and authenticated sessions are never evicted.
    """

    max_total: int
    max_per_ip: int
    reserved: int = 0
    is_trusted: Callable[[str], bool] = field(default=lambda _ip: False)
    total: int = 0

    def __post_init__(self) -> None:
        self.per_ip: Counter[str] = Counter()
        self.untrusted = 0
        self.sessions: set[MtaSMTP] = set()

    def admit(self, ip: str, session: MtaSMTP | None = None, trusted: bool | None = None) -> str | None:
        """None if the connection may proceed (and is now counted), else the reason it may not."""
        if trusted is None:
            trusted = self.is_trusted(ip)
        if self.per_ip[ip] >= self.max_per_ip:
            return "too many connections from your address"
        if self.total >= self.max_total or (not trusted and self.untrusted >= self.max_total - self.reserved):
            victim = self.idlest()
            if victim is None:
                return "too many connections"
            victim.evict()
        self.total += 1
        self.per_ip[ip] += 1
        if not trusted:
            self.untrusted += 1
        if session is not None:
            self.sessions.add(session)
        return None

    def release(self, ip: str, session: MtaSMTP | None = None, trusted: bool = False) -> None:
        self.total -= 1
        self.per_ip[ip] -= 1
        if self.per_ip[ip] <= 0:
            del self.per_ip[ip]
        if not trusted:
            self.untrusted -= 1
        self.sessions.discard(session)  # type: ignore[arg-type]

    def idlest(self) -> MtaSMTP | None:
        """The session to close to make room: one that is neither trusted nor authenticated nor
        in DATA, preferring sessions without a transaction, then the longest idle."""
        best: MtaSMTP | None = None
        best_key: tuple[bool, float] | None = None
        for s in self.sessions:
            if not s.evictable():
                continue
            key = (s.in_transaction(), s.last_active)
            if best_key is None or key < best_key:
                best, best_key = s, key
        return best


def trust_check(networks: list[str]) -> Callable[[str], bool]:
    """A predicate: is this client address in one of `networks`?"""
    nets = [ipaddress.ip_network(n, strict=False) for n in networks]

    def trusted(ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in nets)
    return trusted


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


class AddressSyntaxError(ValueError):
    """An address the parser could not make sense of (answered 501 5.5.4 by handle_exception)."""


class DataRefused(Exception):
    """The message data broke a rule; the message is discarded, the session goes on."""

    def __init__(self, reply: str, reason: str) -> None:
        super().__init__(reply)
        self.reply = reply
        self.reason = reason


class SubmissionEnvelope(Envelope):
    """aiosmtpd's envelope, and what the data reader learnt of the content on its way."""

    def __init__(self) -> None:
        super().__init__()
        # CRLF line ends only and no line starting with a period: the content goes on the wire
        # as it is (mta.wireform.goes_as_is), which the reader knows without another scan.
        self.content_as_is = False


class MtaSMTP(SMTP):
    """One SMTP session. Per-connection knobs are class-independent constructor arguments."""

    def __init__(self, handler: Any, *, limits: ConnectionLimits, max_line_length: int,
                 data_timeout: float, check_password: Callable[[str, str], Awaitable[Any]] | None,
                 on_refused: Callable[[str], None] | None = None, loopback_plain_auth: bool = True,
                 pre_mail_timeout: float = 0.0, between_steps: Callable[[], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        # Called with each reply sent: the cheap work the daemon wants done between steps of
        # sessions under load (hearing delivery replies early: mta.delivery.replypeek).
        self.between_steps = between_steps
        self.conn_limits = limits
        self.max_line_length = max_line_length
        self.data_timeout = data_timeout
        self.check_password = check_password
        self.on_refused = on_refused
        self.loopback_plain_auth = loopback_plain_auth
        self._admitted_ip: str | None = None
        self._rejected = False
        self._in_ehlo = False
        # Until its first MAIL an untrusted, unauthenticated session gets this much idle time
        # (0: the command timeout) and may be evicted to make room for others.
        self.pre_mail_timeout = pre_mail_timeout
        self._trusted = False
        self._mail_seen = False
        self._in_data = False
        self.last_active = 0.0
        self._deadline = 0.0          # the session times out at this loop time
        if check_password is None:
            self._auth_methods = {}

    def _create_envelope(self) -> SubmissionEnvelope:
        return SubmissionEnvelope()

    # ------------------------------------------------------------------ connections
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # a new connection, not the STARTTLS re-entry
            peer = transport.get_extra_info("peername")
            ip = peer[0] if isinstance(peer, tuple) else "unix"
            self._trusted = self.conn_limits.is_trusted(ip)
            self.last_active = asyncio.get_running_loop().time()
            refusal = self.conn_limits.admit(ip, self, self._trusted)
            if refusal is not None:
                self._rejected = True
                log.warning("refused connection from %s: %s", ip, refusal)
                if self.on_refused:
                    self.on_refused("connection_limit")
                transport.write(f"421 4.7.0 {self.hostname} {refusal}, try again later\r\n".encode())
                transport.close()
                return
            self._admitted_ip = ip
            # AUTH needs TLS except on loopback, where nothing crosses a network.
            self._auth_require_tls = not (self.loopback_plain_auth and is_loopback(ip))
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._rejected:
            return
        if self._admitted_ip is not None:
            self.conn_limits.release(self._admitted_ip, self, self._trusted)
            self._admitted_ip = None
        super().connection_lost(error)

    def privileged(self) -> bool:
        return self._trusted or bool(self.session is not None and self.session.authenticated)

    def in_transaction(self) -> bool:
        return bool(self.envelope is not None and self.envelope.mail_from)

    def evictable(self) -> bool:
        return (self._admitted_ip is not None and not self._in_data and not self.privileged()
                and self.transport is not None and not self.transport.is_closing())

    def evict(self) -> None:
        """Closes this idle session to make room for a new client; its slot is free at once."""
        assert self._admitted_ip is not None and self.transport is not None
        log.info("%s: closing an idle connection (%.0fs idle) to make room", self._admitted_ip,
                 self.loop.time() - self.last_active)
        self.conn_limits.release(self._admitted_ip, self, self._trusted)
        self._admitted_ip = None
        if self.on_refused:
            self.on_refused("idle_evicted")
        self.transport.write(f"421 4.7.0 {self.hostname} closing idle connection: too many connections, "
                             "try again later\r\n".encode())
        self.transport.close()

    def _reset_timeout(self, duration: float | None = None) -> None:
        # Called on connect and after each command (and each DATA chunk): the activity clock.
        # The timer is lazy: a later deadline only moves `_deadline`, and the timer, when it
        # fires, waits for the rest. Cancelling and arming a loop timer several times a message
        # cost more than the command's own handling; a shorter deadline re-arms at once.
        now = self.last_active = self.loop.time()
        if duration is None and self.pre_mail_timeout and not self._mail_seen and not self.privileged():
            duration = self.pre_mail_timeout
        if not duration:
            duration = self._timeout_duration
        deadline = self._deadline = now + duration
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or handle.when() > deadline:
            if handle is not None:
                handle.cancel()
            self._timeout_handle = self.loop.call_at(deadline, self._deadline_reached)

    def _deadline_reached(self) -> None:
        if self._deadline > self.loop.time():   # active since the timer was armed
            self._timeout_handle = self.loop.call_at(self._deadline, self._deadline_reached)
        else:
            self._timeout_cb()

    def eof_received(self) -> bool | None:
        if self._rejected:
            return False
        return super().eof_received()

    def _timeout_cb(self) -> None:
        # RFC 5321 4.5.3.2: say why before closing, instead of just hanging up.
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(f"421 4.4.2 {self.hostname} Error: timeout exceeded\r\n".encode())
            if self.on_refused:
                short = self.pre_mail_timeout and not self._mail_seen and not self.privileged()
                self.on_refused("pre_mail_timeout" if short else "timeout")
        super()._timeout_cb()

    # ------------------------------------------------------------------ replies
    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            if not self._in_ehlo:
                status = _with_enhanced_code(status)
            status = safe_reply(status)
        if self.between_steps is not None:
            self.between_steps()
        # aiosmtpd's push, less a drain() after every reply: it only waits when the transport
        # holds more than its high-water mark (a client that does not read its replies), so it
        # is asked only when something is left unsent.
        if isinstance(status, str):
            status = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
        self._writer.write(status + b"\r\n")
        if self.transport is not None and self.transport.get_write_buffer_size():
            await self._writer.drain()

    async def handle_exception(self, error: Exception) -> str:
        """A command whose handling raised: a plain reply, the detail in the log and a metric
        (aiosmtpd's default would show the client the exception's name and text)."""
        reply, reason = reply_for_exception(error)
        peer = self.session.peer if self.session is not None else None
        if reason == "internal_error":
            log.error("%r error handling a command", peer, exc_info=error)
        else:
            # Hostile or broken input: one line, no traceback (a client can send thousands).
            log.warning("%r command refused: %s: %s", peer, type(error).__name__, error)
            log.debug("%r command refused", peer, exc_info=error)
        if self.on_refused:
            self.on_refused(reason)
        return reply

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        plain = plain_path(arg)
        if plain is not None:
            if self.local_part_limit and len(plain[0].rpartition("@")[0]) > self.local_part_limit:
                return None, None
            return plain
        # The stdlib's address parser raises more than HeaderParseError on broken input
        # (IndexError for "<", AttributeError on some defects): a syntax error, whatever it raised.
        try:
            return super()._getaddr(arg)
        except Exception as exc:
            raise AddressSyntaxError(f"{type(exc).__name__}: {exc}") from exc

    @syntax("VRFY <address>")
    async def smtp_VRFY(self, arg: str) -> None:
        # aiosmtpd echoes an unparseable argument back ("502 Could not VRFY <arg>"); we never do.
        if await self.check_auth_needed("VRFY"):
            return
        if arg and any("\udc80" <= ch <= "\udcff" for ch in arg):   # bytes that were not UTF-8
            await self.push(SYNTAX_REPLY)
            return
        address = self._getaddr(arg)[0] if arg else None
        if not address:
            await self.push("501 5.5.4 Syntax: VRFY <address>")
            return
        status = await self._call_handler_hook("VRFY", address)
        await self.push("252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery"
                        if status is MISSING else status)

    async def smtp_EHLO(self, hostname: str) -> None:
        self._in_ehlo = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False

    async def smtp_MAIL(self, arg: str | None) -> None:
        await super().smtp_MAIL(arg)
        if not self._mail_seen and self.in_transaction():
            self._mail_seen = True
            self._reset_timeout()       # from here on, the full command timeout

    async def smtp_RCPT(self, arg: str | None) -> None:
        # The stdlib parser drops a source route silently; refuse it instead (RFC 5321 C).
        if arg and "<@" in arg.replace(" ", ""):
            if await self.check_helo_needed():
                return
            await self.push("553 5.1.3 Source routes are not accepted")
            return
        await super().smtp_RCPT(arg)

    # ------------------------------------------------------------------ DATA
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self._in_data = True        # not evictable until the reply (a 250 may be on its way)
        try:
            await self._data_transaction()
        finally:
            self._in_data = False

    async def _data_transaction(self) -> None:
        assert self.envelope is not None
        try:
            content, as_is = await self._read_data()
        except DataRefused as refused:
            self._set_post_data_state()
            if self.on_refused:
                self.on_refused(refused.reason)
            log.info("%r data refused: %s", self.session and self.session.peer, refused.reason)
            await self.push(refused.reply)
            return
        except (asyncio.IncompleteReadError, ConnectionError):
            # The client went away mid-DATA: nothing was queued.
            if self.on_refused:
                self.on_refused("disconnect_in_data")
            if self.transport is not None:
                self.transport.close()
            return
        self.envelope.content = content
        self.envelope.original_content = content
        self.envelope.content_as_is = as_is
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 2.0.0 OK" if not isinstance(status, str) else status)

    async def _read_data(self) -> tuple[bytes, bool]:
        """Reads up to CRLF.CRLF; returns the un-dot-stuffed content, and whether it goes on the
        wire as it is (no line of it starts with a period), or raises DataRefused."""
        reader = self._reader
        limit = self.data_size_limit or 0
        # A virtual CRLF in front lets an empty message (".\r\n" at once) end like any other.
        buf = bytearray(b"\r\n")
        scan_from = 0
        too_big = False
        discarded = 0
        while True:
            idx = buf.find(END_OF_DATA, scan_from)
            if idx >= 0:
                break
            if limit and len(buf) > limit + 8:
                # Over the limit: keep reading to the end so the session stays in sync, but
                # keep only the last few bytes in case they start the terminator.
                too_big = True
                discarded += len(buf) - 4
                del buf[:-4]
            scan_from = max(0, len(buf) - 4)
            self._reset_timeout(self.data_timeout)
            chunk = await reader.read(READ_CHUNK)
            if not chunk:
                raise asyncio.IncompleteReadError(bytes(buf), None)
            buf += chunk
        leftover = buf[idx + len(END_OF_DATA):]
        if leftover:
            # Commands pipelined after the final dot belong to the session, not to this message.
            reader._buffer[:0] = leftover  # type: ignore[attr-defined]
        self._reset_timeout()
        if too_big:
            raise DataRefused("552 5.3.4 Message size exceeds fixed maximum message size", "too_big")
        return unstuffed_content(bytes(buf[:idx + 2]), limit, self.max_line_length)

    # ------------------------------------------------------------------ AUTH
    async def auth_PLAIN(self, _server: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await self.challenge_auth("")
            if not isinstance(blob, bytes):
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await self.push("501 5.5.2 Cannot split AUTH PLAIN response")
            return AuthResult(success=False, handled=True)
        return await self._verify(parts[1], parts[2])

    async def auth_LOGIN(self, _server: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await self.challenge_auth("Username:")
            if not isinstance(login, bytes):
                return AuthResult(success=False, handled=True)
        else:
            try:
                login = b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        password = await self.challenge_auth("Password:")
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self._verify(login, password)

    async def _verify(self, login: bytes, password: bytes) -> AuthResult:
        assert self.check_password is not None
        name = login.decode("utf-8", "replace")
        user = await self.check_password(name, password.decode("utf-8", "replace"))
        if user is None:
            log.warning("%r AUTH failed for %r", self.session and self.session.peer, name)
            if self.on_refused:
                self.on_refused("auth_failed")
            return AuthResult(success=False, handled=False, message="535 5.7.8 Authentication credentials invalid")
        return AuthResult(success=True, auth_data=user)


# The path nearly every client sends: <dot-atom@domain> (or the null path <>), then parameters
# (with no "(": the stdlib would read a comment there).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"<((?:{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)?)>(?:[ \t]+([^(]*))?", re.S)


def plain_path(arg: str) -> tuple[str, str] | None:
    """(address, parameters) of a MAIL/RCPT argument in the plain form, read as aiosmtpd's
    `_getaddr` reads it ("<>" for the null path); None for any other form, which goes to the
    stdlib's RFC 5322 parser. That parser builds a token tree and a class per call: about 50 us
    of every MAIL and RCPT, for a result that is the text between the brackets."""
    m = _PLAIN_PATH.fullmatch(arg)
    if m is None:
        return None
    return m.group(1) or "<>", m.group(2) or ""


def unstuffed_content(data: bytes, limit: int, longest: int) -> tuple[bytes, bool]:
    """The message in `data` (what came before the final dot, behind a virtual CRLF, ending with
    its last line's CRLF): its content without dot-stuffing, and whether it goes on the wire as
    it is (no line starts with a period); or DataRefused for a bare CR or LF, a size over
    `limit` (0: none) or a line longer than `longest`."""
    # One split serves both checks. splitlines() ends a line at CRLF (two octets), a lone CR
    # or a lone LF (one): the lines and two octets each add up to the data only if every line
    # ends in CRLF.
    lengths = list(map(len, data.splitlines()))
    if sum(lengths) + 2 * len(lengths) != len(data):
        raise DataRefused("554 5.6.0 Message refused: bare CR or LF in message data (RFC 5321 2.3.8)",
                          "bare_newline")
    # Undo dot-stuffing: a line's leading period goes (RFC 5321 4.5.2: a client that did not
    # stuff ".x" loses the period, as with any other receiver); the leading virtual CRLF covers
    # the first line. No line started with one if nothing was removed.
    unstuffed = data.replace(b"\r\n.", b"\r\n")
    as_is = len(unstuffed) == len(data)
    content = unstuffed[2:]
    if limit and len(content) > limit:
        raise DataRefused("552 5.3.4 Message size exceeds fixed maximum message size", "too_big")
    if len(content) > longest and max(lengths) > longest and (
            # a stuffed line is one longer than the line: measure again if any was stuffed
            as_is or max(map(len, content.splitlines())) > longest):
        raise DataRefused(f"500 5.5.2 Line too long (limit {longest} octets, RFC 5321 4.5.3.1.6)",
                          "line_too_long")
    return content, as_is


def _with_enhanced_code(status: str) -> str:
    """Adds an enhanced status code to a final reply line that lacks one."""
    if len(status) < 4 or status[3] != " " or status[:3] not in _DEFAULT_ENHANCED:
        return status
    rest = status[4:]
    if rest[:1] in "245" and rest[1:2] == ".":
        return status
    return f"{status[:3]} {_DEFAULT_ENHANCED[status[:3]]} {rest}"
