"""One outbound SMTP connection (aiosmtplib): connect to a site's MX hosts in order from a bound
source address, greet with that source's EHLO name, STARTTLS when offered, then carry many
transactions. Each transaction yields one result per recipient; nothing here decides what a
result means for the queue."""

from __future__ import annotations

import ipaddress
import logging
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib import SMTPResponse

from mta.delivery.dnsroute import MxHost, Route, ordered_hosts
from mta.delivery.replypeek import ReplyPeek
from mta.delivery.transaction import Replies, command, end_in_order, transact
from mta.model import Job, Recipient

log = logging.getLogger("mta.delivery")

_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?:\s|$)")

# After a STARTTLS failure a host is tried in plain text for this long (opportunistic TLS).
NO_TLS_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    address: str        # "" = let the kernel choose
    ehlo: str


@dataclass(frozen=True, slots=True)
class ClientSettings:
    port: int = 25
    connect_timeout: float = 30.0
    command_timeout: float = 300.0
    starttls: bool = True


@dataclass(slots=True)
class RecipientResult:
    recipient: Recipient
    code: int               # SMTP reply code; 0 = no reply (network failure)
    status: str             # enhanced status code from the reply, or a local one
    text: str               # the reply as one line ("550 5.1.1 no such user")
    phase: str              # connect | mail | rcpt | data

    @property
    def temporary(self) -> bool:
        return self.code == 0 or 400 <= self.code < 500


class ConnectFailure(Exception):
    def __init__(self, text: str, code: int = 0, status: str = "4.4.1") -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.status = status


def reply_line(code: int, message: str) -> str:
    return f"{code} {' '.join(message.split())}".strip()


def enhanced_status(code: int, message: str) -> str:
    m = _ENHANCED.match(message)
    if m and m.group(1)[0] == str(code)[0]:
        return m.group(1)
    if 200 <= code < 300:
        return "2.0.0"
    if 400 <= code < 500:
        return "4.0.0"
    if code >= 500:
        return "5.0.0"
    return "4.4.2"


class _NoTlsHosts:
    """Hosts whose STARTTLS failed recently; shared by all connections of the process."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def skip(self, host: str) -> bool:
        return self._until.get(host, 0.0) > time.monotonic()

    def add(self, host: str) -> None:
        if len(self._until) > 10000:
            self._until.clear()
        self._until[host] = time.monotonic() + NO_TLS_SECONDS


NO_TLS = _NoTlsHosts()


def _client_tls_context() -> ssl.SSLContext:
    # Opportunistic TLS between MTAs: encrypt when offered, do not require a valid certificate
    # (RFC 7435), as an unverified TLS session is still better than plain text.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


_TLS_CONTEXT: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    global _TLS_CONTEXT
    if _TLS_CONTEXT is None:
        _TLS_CONTEXT = _client_tls_context()
    return _TLS_CONTEXT


def _family_matches(source_address: str, address: str) -> bool:
    if not source_address:
        return True
    return ipaddress.ip_address(source_address).version == ipaddress.ip_address(address).version


class Connection:
    """An established SMTP session to one MX host."""

    def __init__(self, smtp: aiosmtplib.SMTP, mx: MxHost, address: str, source: Source, tls: bool,
                 settings: ClientSettings) -> None:
        self.smtp = smtp
        self.mx = mx
        self.address = address
        self.source = source
        self.tls = tls
        self.settings = settings
        self.usable = True
        self.transactions = 0
        self._needs_rset = False

    @property
    def mx_name(self) -> str:
        return self.mx.name

    async def send(self, job: Job, body: bytes, sender: str,
                   before_data: Awaitable[object] | None = None,
                   on_delivered: Callable[[list[Recipient]], None] | None = None,
                   peek: ReplyPeek | None = None, body_as_is: bool = False) -> list[RecipientResult]:
        """One transaction. Sets `usable` False when the connection must not be used again.
        `body_as_is`: `body` needs no dot-stuffing or line-end repair (see `transact`).

        `before_data` is awaited after the server's 354 and before the message goes: the
        journal's durable note that this attempt started, so that a crash after the remote 250
        is counted as a possible duplicate (its sync runs while MAIL, RCPT and DATA travel).
        `on_delivered` is called with the recipients a 2xx reply to the message took, from the
        connection's read callback, before any other work of the event loop, or sooner through
        `peek` (see `transact`)."""
        smtp = self.smtp
        rcpts = job.recipients
        timeout = self.settings.command_timeout
        fresh = self.transactions == 0
        self.transactions += 1
        replies = Replies()
        try:
            if self._needs_rset:
                self._needs_rset = False
                await smtp.rset(timeout=timeout)
            options = []
            if smtp.supports_extension("size"):
                options.append(f"SIZE={len(body)}")
            if not body.isascii() and smtp.supports_extension("8bitmime"):
                options.append("BODY=8BITMIME")
            utf8 = job.message.smtputf8 or not sender.isascii() or any(not r.address.isascii() for r in rcpts)
            if utf8:
                if not smtp.supports_extension("smtputf8"):
                    return [RecipientResult(r, 550, "5.6.7", "550 5.6.7 Remote server does not support SMTPUTF8",
                                            "mail") for r in rcpts]
                options.append("SMTPUTF8")
            encoding = "utf-8" if utf8 else "ascii"
            mail = command(b"MAIL FROM:", sender, options, encoding)
            rcpt_lines = [command(b"RCPT TO:", r.address, (), encoding) for r in rcpts]
            on_final = None
            if on_delivered is not None:
                def on_final(reply: SMTPResponse, accepted: list[int]) -> None:
                    if 200 <= reply.code < 300:      # the same rule as outcomes.plan's "delivered"
                        on_delivered([rcpts[i] for i in accepted])
            await transact(smtp, replies, mail=mail, rcpts=rcpt_lines, body=body, before_body=before_data,
                           timeout=timeout, data_timeout=max(timeout, 600.0), on_final_reply=on_final, peek=peek,
                           body_as_is=body_as_is)
            return self._results(rcpts, replies)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, ConnectionError, OSError) as exc:
            self.usable = False
            if fresh or replies.any or not isinstance(exc, aiosmtplib.SMTPServerDisconnected):
                text = f"lost connection with {self.mx.name}[{self.address}]: {exc}"
                return [RecipientResult(r, 0, "4.4.2", text, "data") for r in rcpts]
            raise StaleConnection(str(exc)) from exc
        except aiosmtplib.SMTPResponseException as exc:
            # An unexpected reply to RSET or similar: treat the connection as spent.
            self.usable = False
            return [self._result(r, exc.code, exc.message, "mail") for r in rcpts]

    def _results(self, rcpts: list[Recipient], replies: Replies) -> list[RecipientResult]:
        """Each recipient's result from what the server answered."""
        if replies.spent:
            self.usable = False
        mail = replies.mail
        assert mail is not None
        if mail.code != 250:
            self._after_refusal(mail.code)
            return [self._result(r, mail.code, mail.message, "mail") for r in rcpts]
        closing = any(reply.code == 421 for reply in replies.rcpts)
        results: list[RecipientResult | None] = []
        for r, reply in zip(rcpts, replies.rcpts, strict=False):
            results.append(None if reply.code in (250, 251) else self._result(r, reply.code, reply.message, "rcpt"))
        if closing:      # the server hung up during RCPT: whoever it had not refused gets its 421
            results += [None] * (len(rcpts) - len(results))
            return [res or self._result(r, 421, "Service closing transmission channel", "rcpt")
                    for r, res in zip(rcpts, results, strict=True)]
        if all(res is not None for res in results):
            self._needs_rset = True
            return results      # type: ignore[return-value]
        last = replies.final if replies.final is not None else replies.data
        assert last is not None
        if last.code != 250:
            self._after_refusal(last.code)
        return [res or self._result(r, last.code, last.message, "data") for r, res in zip(rcpts, results, strict=True)]

    def _after_refusal(self, code: int) -> None:
        if code == 421:
            self.usable = False
        else:
            self._needs_rset = True

    @staticmethod
    def _result(r: Recipient, code: int, message: str, phase: str) -> RecipientResult:
        return RecipientResult(r, code, enhanced_status(code, message), reply_line(code, message), phase)

    async def close(self) -> None:
        try:
            if self.usable and self.smtp.is_connected:
                end_in_order(self.smtp)
                await self.smtp.quit(timeout=5)
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            pass
        finally:
            self.smtp.close()


class StaleConnection(Exception):
    """A reused connection turned out to be closed before the transaction got any reply:
    the job goes back to its queue without counting an attempt."""


async def connect(route: Route, source: Source, settings: ClientSettings, rng: random.Random) -> Connection:
    """The first MX host (preference order) that greets with 220 and takes EHLO/HELO."""
    errors: list[str] = []
    last_code = 0
    for host in ordered_hosts(route, rng):
        for address in host.addresses:
            if not _family_matches(source.address, address):
                continue
            try:
                return await _open(host, address, source, settings)
            except ConnectFailure as exc:
                errors.append(exc.text)
                last_code = exc.code or last_code
    if not errors:
        raise ConnectFailure(f"no MX host of {route.domain} has an address usable from {source.address or 'any'}",
                             0, "4.4.4")
    raise ConnectFailure("; ".join(errors[-3:]), last_code, "4.4.1")


async def _open(host: MxHost, address: str, source: Source, settings: ClientSettings,
                allow_tls: bool = True) -> Connection:
    smtp = aiosmtplib.SMTP(hostname=address, port=settings.port, local_hostname=source.ehlo,
                           source_address=(source.address, 0) if source.address else None,
                           timeout=settings.connect_timeout, start_tls=False, validate_certs=False,
                           tls_context=tls_context())
    where = f"{host.name}[{address}]:{settings.port}"
    try:
        await smtp.connect()
    except aiosmtplib.SMTPConnectResponseError as exc:
        smtp.close()
        raise ConnectFailure(f"{where} greeted with {reply_line(exc.code, exc.message)}", exc.code) from None
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
        smtp.close()
        raise ConnectFailure(f"connect to {where} from {source.address or 'default'}: {exc}") from None
    try:
        try:
            await smtp.ehlo(timeout=settings.command_timeout)
        except aiosmtplib.SMTPHeloError:
            await smtp.helo(timeout=settings.command_timeout)
        tls = False
        if allow_tls and settings.starttls and smtp.supports_extension("starttls") and not NO_TLS.skip(host.name):
            try:
                await smtp.starttls(timeout=settings.command_timeout)
                # RFC 3207 4.2: what EHLO said before TLS is void; ask again now, before the first
                # transaction decides on SIZE, 8BITMIME and SMTPUTF8 from it.
                await smtp.ehlo(timeout=settings.command_timeout)
                tls = True
            except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
                log.info("STARTTLS with %s failed (%s); retrying in plain text", where, exc)
                NO_TLS.add(host.name)
                smtp.close()
                return await _open(host, address, source, settings, allow_tls=False)
    except aiosmtplib.SMTPResponseException as exc:
        smtp.close()
        raise ConnectFailure(f"{where} refused the greeting: {reply_line(exc.code, exc.message)}", exc.code) from None
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
        smtp.close()
        raise ConnectFailure(f"{where}: {exc}") from None
    return Connection(smtp, host, address, source, tls, settings)
